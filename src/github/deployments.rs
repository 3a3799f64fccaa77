//! GitHub deployment records through octocrab: one deployment per deploy, switch,
//! promotion or rollback, for the deployed commit, and its statuses (`in_progress`, then
//! `success`, `failure` or `error`). With `auto_inactive`, GitHub marks the environment's
//! earlier deployments `inactive` when a new one succeeds.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use super::permissions::{Permission, refused};
use super::rest;
use crate::oci::auth::Secret;

/// What a deployment record says.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewDeployment {
    /// The deployed commit (full sha).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Environment name.
    pub environment: String,
    /// Set explicitly: GitHub guesses from the name otherwise.
    pub production_environment: bool,
    /// For previews that go away.
    pub transient_environment: bool,
    /// What was done, for people.
    pub description: String,
    /// Image digests, color and operation, for tools.
    pub payload: Value,
    /// Never merge the default branch into the ref first.
    pub auto_merge: bool,
    /// No commit-status contexts are required: the pipeline ran its own gates.
    pub required_contexts: Vec<String>,
    /// `deploy`, `rollback`, `switch`, `promote`.
    pub task: String,
}

/// A deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Started.
    InProgress,
    /// Done and healthy.
    Success,
    /// The deploy failed (traffic was not moved, or moved back).
    Failure,
    /// The tool could not finish (an API or infrastructure error).
    Error,
}

#[derive(Debug, Serialize)]
struct NewStatus<'a> {
    state: DeploymentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_url: Option<&'a str>,
    description: String,
    auto_inactive: bool,
}

/// The deployments API of the run's repository, when the runner's variables allow it
/// ([`super::RepositoryApi::from_env`]).
pub fn from_env(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<DeploymentsClient>> {
    super::RepositoryApi::from_env(env)
        .map(|api| DeploymentsClient::new(&api.base, &api.token, &api.repository))
        .transpose()
}

/// Deployments of one repository.
pub struct DeploymentsClient {
    crab: rest::Client,
    repository: String,
}

impl DeploymentsClient {
    /// A client for `repository` (`owner/name`) at `api_base` (`GITHUB_API_URL`).
    pub fn new(api_base: &str, token: &Secret, repository: &str) -> anyhow::Result<Self> {
        let crab = rest::Client::new(api_base, token)?;
        Ok(DeploymentsClient {
            crab,
            repository: repository.to_owned(),
        })
    }

    /// Creates the record; its id.
    pub async fn create(&self, deployment: &NewDeployment) -> anyhow::Result<u64> {
        let route = format!("/repos/{}/deployments", self.repository);
        let created: Value = self
            .crab
            .post(route, Some(deployment))
            .await
            .map_err(|e| refused(e, "to create a deployment", Permission::DeploymentsWrite))
            .with_context(|| format!("creating a deployment of {}", deployment.environment))?;
        created["id"]
            .as_u64()
            .context("GitHub answered a deployment without an id")
    }

    /// Adds a status to deployment `id`.
    pub async fn set_status(
        &self,
        id: u64,
        state: DeploymentState,
        environment_url: Option<&str>,
        log_url: Option<&str>,
        description: &str,
    ) -> anyhow::Result<()> {
        let route = format!("/repos/{}/deployments/{id}/statuses", self.repository);
        let status = NewStatus {
            state,
            environment_url,
            log_url,
            description: super::statuses::description(description),
            auto_inactive: true,
        };
        let _: Value = self
            .crab
            .post(route, Some(&status))
            .await
            .map_err(|e| {
                refused(
                    e,
                    "to set a deployment status",
                    Permission::DeploymentsWrite,
                )
            })
            .with_context(|| format!("setting deployment {id} to {state:?}"))?;
        Ok(())
    }
}

/// The newest record of an environment and its latest status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRecord {
    /// Deployment id.
    pub id: u64,
    /// The commit it deployed.
    pub sha: String,
    /// When it was created.
    pub created_at: String,
    /// Its latest status (`in_progress`, `success`, `failure`, `error`, `inactive`, ...),
    /// if it has one.
    pub state: Option<String>,
    /// That status's description.
    pub description: Option<String>,
}

impl DeploymentsClient {
    /// The newest deployment of `environment` and its latest status, if there is one.
    pub async fn last(&self, environment: &str) -> anyhow::Result<Option<LastRecord>> {
        #[derive(Serialize)]
        struct Query<'a> {
            environment: &'a str,
            per_page: u8,
        }
        let route = format!("/repos/{}/deployments", self.repository);
        let list: Vec<Value> = self
            .crab
            .get(
                route,
                Some(&Query {
                    environment,
                    per_page: 1,
                }),
            )
            .await
            .map_err(|e| refused(e, "to list deployments", Permission::DeploymentsRead))
            .context("listing deployments")?;
        let Some(newest) = list.first() else {
            return Ok(None);
        };
        let id = newest["id"]
            .as_u64()
            .context("a deployment without an id")?;
        let route = format!("/repos/{}/deployments/{id}/statuses", self.repository);
        #[derive(Serialize)]
        struct Page {
            per_page: u8,
        }
        let statuses: Vec<Value> = self
            .crab
            .get(route, Some(&Page { per_page: 1 }))
            .await
            .map_err(|e| {
                refused(
                    e,
                    "to list deployment statuses",
                    Permission::DeploymentsRead,
                )
            })
            .context("listing deployment statuses")?;
        let text = |v: &Value, key: &str| v[key].as_str().map(str::to_owned);
        Ok(Some(LastRecord {
            id,
            sha: text(newest, "sha").unwrap_or_default(),
            created_at: text(newest, "created_at").unwrap_or_default(),
            state: statuses.first().and_then(|s| text(s, "state")),
            description: statuses.first().and_then(|s| text(s, "description")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_to_githubs_limit() {
        let cut = super::super::statuses::description;
        assert_eq!(cut("short"), "short");
        let long = "x".repeat(200);
        let cut = cut(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_deployment_serializes_as_the_api_expects() {
        let deployment = NewDeployment {
            git_ref: "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e".into(),
            environment: "production".into(),
            production_environment: true,
            transient_environment: false,
            description: "deploy".into(),
            payload: serde_json::json!({"color": "green"}),
            auto_merge: false,
            required_contexts: Vec::new(),
            task: "deploy".into(),
        };
        let json = serde_json::to_value(&deployment).unwrap();
        assert_eq!(json["ref"], "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
        assert_eq!(json["required_contexts"], serde_json::json!([]));
        assert_eq!(json["auto_merge"], false);
    }
}
