//! GitHub event payloads: the few fields the pipeline needs, read from the real webhook
//! shapes (`GITHUB_EVENT_PATH`), with errors that name the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{InputError, InputProblem};

/// The events the pipeline runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    /// A branch or tag was pushed.
    Push,
    /// A pull request was opened or updated.
    PullRequest,
    /// Someone started the workflow by hand (promote, rollback).
    WorkflowDispatch,
    /// A cron schedule fired (pruning, backups).
    Schedule,
}

impl EventName {
    /// Every accepted name, as GitHub spells them.
    pub const ALL: [&str; 4] = ["push", "pull_request", "workflow_dispatch", "schedule"];

    /// Parses GitHub's event name.
    pub fn parse(name: &str, source: &str) -> Result<Self, InputError> {
        match name {
            "push" => Ok(EventName::Push),
            "pull_request" | "pull_request_target" => Ok(EventName::PullRequest),
            "workflow_dispatch" => Ok(EventName::WorkflowDispatch),
            "schedule" => Ok(EventName::Schedule),
            other => Err(InputError::new(
                source,
                None,
                format!(
                    "event `{other}` is not one jisu-deploy runs on; use one of {}",
                    EventName::ALL.join(", ")
                ),
            )),
        }
    }

    /// Guesses the event from a payload's shape, for `--event FILE` without `--event-name`.
    pub fn infer(payload: &Value) -> Option<Self> {
        let has = |key: &str| payload.get(key).is_some();
        if has("pull_request") {
            Some(EventName::PullRequest)
        } else if has("schedule") {
            Some(EventName::Schedule)
        } else if has("inputs") {
            Some(EventName::WorkflowDispatch)
        } else if has("ref") && (has("after") || has("commits")) {
            Some(EventName::Push)
        } else {
            None
        }
    }
}

/// The repository part of a payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepositoryPayload {
    /// `owner/name`.
    pub full_name: Option<String>,
    /// The repository's default branch.
    pub default_branch: Option<String>,
}

/// A `push` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct PushPayload {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The pushed commit (all zeros when the ref was deleted).
    pub after: String,
    /// Whether the push deleted the ref.
    #[serde(default)]
    pub deleted: bool,
    /// The repository.
    #[serde(default)]
    pub repository: Option<RepositoryPayload>,
}

/// One side (head or base) of a pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestSide {
    /// Branch name.
    #[serde(rename = "ref")]
    pub branch: String,
    /// Commit sha: for the head, the commit to build (not the merge commit).
    pub sha: String,
    /// The repository the branch lives in (a fork for outside contributions).
    #[serde(default)]
    pub repo: Option<RepositoryPayload>,
}

/// The `pull_request` object of a pull_request payload.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestObject {
    /// Where the change comes from.
    pub head: PullRequestSide,
    /// Where it would merge.
    pub base: PullRequestSide,
}

/// A `pull_request` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestPayload {
    /// `opened`, `synchronize`, `closed`, ...
    pub action: String,
    /// The pull request number.
    pub number: u64,
    /// The pull request itself.
    pub pull_request: PullRequestObject,
    /// The base repository.
    #[serde(default)]
    pub repository: Option<RepositoryPayload>,
}

/// A `workflow_dispatch` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct DispatchPayload {
    /// The ref the workflow ran on.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The inputs the person filled in; GitHub sends booleans as JSON booleans.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// The repository.
    #[serde(default)]
    pub repository: Option<RepositoryPayload>,
}

/// A `schedule` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulePayload {
    /// The cron expression that fired.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The repository.
    #[serde(default)]
    pub repository: Option<RepositoryPayload>,
}

/// Deserializes a payload into `T`, naming the field and position on error.
pub fn decode<T: for<'de> Deserialize<'de>>(
    text: &str,
    source: &str,
    what: &str,
) -> Result<T, InputError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.inner();
        let position = (inner.line() > 0).then(|| (inner.line(), inner.column()));
        let message = inner.to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.clone(), |cut| message[..cut].to_owned());
        InputError {
            problems: vec![InputProblem {
                source: source.to_owned(),
                position,
                field: (field != ".").then_some(field),
                message: format!("not a valid {what} payload: {message}"),
            }],
        }
    })
}
