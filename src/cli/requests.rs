//! Flags -> the plain request structs the session and the executor take. The only place
//! clap types are read; nothing below `cli` imports them.

use std::collections::BTreeMap;
use std::path::Path;

use super::Cli;
use super::flags::{
    BuildFlags, BuilderFlag, ClusterFlags, DeployFlags, DigestsFlag, EventArgs, OwnerKindFlag,
    PruneBackendFlag, PruneFlags, RegistryFlags,
};
use crate::config::context::ContextSources;
use crate::error::{InputError, InputProblem};
use crate::execute::{DeployOptions, Settings};
use crate::images::build::{BuildOptions, Builder};
use crate::images::credentials::RegistryAccess;
use crate::images::prune_command::{OwnerKind, PruneBackend, PruneOptions};
use crate::kube::client::ClusterAccess;
use crate::oci::Reference;
use crate::session::SessionRequest;

impl Cli {
    /// The session settings; `kubeconfig` is the command's `--kubeconfig`, if it has one.
    pub fn session_request(&self, kubeconfig: Option<&Path>) -> SessionRequest {
        SessionRequest {
            workspace: self.workspace.clone(),
            config: self.config.clone(),
            dry_run: self.dry_run(),
            kubeconfig: kubeconfig.map(Path::to_owned),
            reads_checkout: !matches!(
                self.command,
                super::Command::Backup | super::Command::Restore(_)
            ),
        }
    }
}

impl EventArgs {
    /// Flags and runner variables; reading the payload is the only I/O.
    pub fn sources(&self) -> Result<ContextSources, InputError> {
        let event_payload = match &self.event_path {
            Some(path) => Some(crate::config::read_input(path, "the event payload")?),
            None => None,
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(ContextSources {
            event_name: self.event_name.clone(),
            event_path: self.event_path.as_ref().map(|p| p.display().to_string()),
            event_payload,
            git_ref: self.git_ref.clone(),
            sha_flag: self.sha.clone(),
            sha_env: env("GITHUB_SHA"),
            inputs: self.inputs.iter().cloned().collect(),
            repository: env("GITHUB_REPOSITORY"),
        })
    }
}

impl From<&RegistryFlags> for RegistryAccess {
    fn from(flags: &RegistryFlags) -> Self {
        RegistryAccess {
            username: flags.registry_username.clone().filter(|u| !u.is_empty()),
            allow_http: flags.registry_allow_http,
            token_realms: flags.registry_token_realm.clone(),
        }
    }
}

impl From<&ClusterFlags> for ClusterAccess {
    fn from(flags: &ClusterFlags) -> Self {
        ClusterAccess {
            kubeconfig: flags.kubeconfig.clone(),
            context: flags.context.clone().filter(|c| !c.is_empty()),
        }
    }
}

impl BuildFlags {
    /// Build options with the run's registry access.
    pub fn options(&self, registry: &RegistryAccess) -> BuildOptions {
        BuildOptions {
            builder: match self.builder {
                BuilderFlag::Auto => Builder::Auto,
                BuilderFlag::Buildah => Builder::Buildah,
                BuilderFlag::Docker => Builder::Docker,
            },
            cache_repository: self.cache_repository.clone(),
            storage_root: self.storage_root.clone(),
            registry: registry.clone(),
        }
    }
}

impl From<&DeployFlags> for DeployOptions {
    fn from(flags: &DeployFlags) -> Self {
        DeployOptions {
            force_conflicts: flags.force_conflicts,
            prune: flags.prune,
            rollout_timeout: flags.timeout.map(|t| t.0),
            check_interval: flags.check_interval.0,
            lock_timeout: Some(flags.lock_timeout.0),
            lock_lease: Some(flags.lock_lease.0),
            no_switch: flags.no_switch,
        }
    }
}

impl PruneFlags {
    /// Prune options with the run's registry access.
    pub fn options(&self, registry: &RegistryAccess) -> PruneOptions {
        PruneOptions {
            keep_digests: self.keep_digests.clone(),
            keep_digests_file: self.keep_digests_file.clone(),
            backend: match self.backend {
                PruneBackendFlag::Auto => PruneBackend::Auto,
                PruneBackendFlag::GithubPackages => PruneBackend::GithubPackages,
                PruneBackendFlag::Oci => PruneBackend::Oci,
            },
            github_api_url: self.github_api_url.clone(),
            owner_kind: match self.owner_kind {
                OwnerKindFlag::Org => OwnerKind::Org,
                OwnerKindFlag::User => OwnerKind::User,
            },
            no_cluster: self.no_cluster,
            registry: registry.clone(),
        }
    }
}

/// Executor settings from the flag groups a command has; groups it lacks keep defaults.
pub fn settings(
    registry: &RegistryFlags,
    cluster: Option<&ClusterFlags>,
    build: Option<&BuildFlags>,
    deploy: Option<&DeployFlags>,
    prune: Option<&PruneFlags>,
) -> Settings {
    let access = RegistryAccess::from(registry);
    Settings {
        cluster: cluster.map(ClusterAccess::from).unwrap_or_default(),
        build: build
            .map(|b| b.options(&access))
            .unwrap_or_else(|| BuildOptions {
                registry: access.clone(),
                ..BuildOptions::default()
            }),
        push: true,
        components: Vec::new(),
        deploy: deploy
            .map(DeployOptions::from)
            .unwrap_or_else(|| DeployOptions {
                check_interval: std::time::Duration::from_secs(2),
                ..DeployOptions::default()
            }),
        prune: prune
            .map(|p| p.options(&access))
            .unwrap_or_else(|| PruneOptions {
                registry: access.clone(),
                ..PruneOptions::default()
            }),
        registry: access,
    }
}

impl DigestsFlag {
    /// The digests given, each value a reference with a digest. Components are checked
    /// against the pipeline by [`check_digest_components`].
    pub fn parse(&self) -> Result<BTreeMap<String, String>, InputError> {
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        for value in self
            .digests
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            let entries: Vec<(String, String, String)> = if value.starts_with('{') {
                json_entries(value, "--digests")?
            } else if let Some((component, reference)) = value.split_once('=')
                && !component.contains('/')
            {
                let source = format!("--digests {value}");
                vec![(
                    component.trim().to_owned(),
                    reference.trim().to_owned(),
                    source,
                )]
            } else {
                let path = Path::new(value);
                let text = crate::config::read_input(path, "the digests file")?;
                json_entries(&text, &path.display().to_string())?
            };
            for (component, reference, source) in entries {
                match Reference::parse(&reference) {
                    Ok(parsed) if parsed.digest().is_some() => {
                        if map.insert(component.clone(), reference).is_some() {
                            problems.push(InputProblem::new(
                                &source,
                                format!("`{component}` is given twice"),
                            ));
                        }
                    }
                    Ok(parsed) => problems.push(InputProblem::new(
                        &source,
                        format!(
                            "`{component}`: `{}` is a mutable tag; give the digest (`{}@sha256:...`)",
                            parsed.tag().unwrap_or("latest"),
                            parsed.name()
                        ),
                    )),
                    Err(err) => problems.push(InputProblem::new(
                        &source,
                        format!("`{component}`: {reference}: {err}"),
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(map)
        } else {
            Err(InputError { problems })
        }
    }
}

fn json_entries(text: &str, source: &str) -> Result<Vec<(String, String, String)>, InputError> {
    let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        InputError::new(
            source,
            None,
            format!(
                "not a JSON object of component to image digest (`{{\"backend\": \"ghcr.io/o/r@sha256:...\"}}`, the build job's `digests` output): {e}"
            ),
        )
    })?;
    Ok(map
        .into_iter()
        .map(|(c, r)| (c, r, source.to_owned()))
        .collect())
}

/// Every component given a digest must be a component of the pipeline.
pub fn check_digest_components(
    pipeline: &crate::config::Pipeline,
    given: &BTreeMap<String, String>,
) -> Result<(), InputError> {
    let known: Vec<&str> = pipeline.components.keys().map(String::as_str).collect();
    let problems: Vec<InputProblem> = given
        .keys()
        .filter(|c| !pipeline.components.contains_key(*c))
        .map(|c| {
            InputProblem::new(
                "--digests",
                format!(
                    "`{c}` is not a component of the pipeline; it has: {}",
                    known.join(", ")
                ),
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InputError { problems })
    }
}
