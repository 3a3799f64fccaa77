//! Runs the deploy actions of a plan (`plan::Action`): `Apply`, `WaitRollout`,
//! `HttpChecks` and `RunCommand`, each with everything it needs in the action itself.
//!
//! Two passes, as the plan is meant to be used: [`Executor::prepare`] does every check
//! that needs no cluster for *all* steps (image digests, manifest files, rendering), so bad
//! input fails before the first write; [`Executor::run`] then executes step by step.
//! Actions of later issues (locks, blue-green colors, deployment records) are refused
//! rather than half-done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tracing::{error, info};

use super::apply::{self, ApplyOptions, Report};
use super::checks::{self, CheckResult};
use super::render::{self, ComponentImage, ManifestFile, RenderInput, Rendered};
use super::watch;
use crate::config::duration::HumanDuration;
use crate::config::pipeline::{Command, Pipeline};
use crate::error::{InputError, InputProblem};
use crate::images::credentials::client_from_env;
use crate::images::tags;
use crate::oci::{Reference, RegistryClient, RegistryError};
use crate::plan::{Action, ImageSource, Step};

/// What every action shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The pipeline (component repositories and workload names).
    pub pipeline: Pipeline,
    /// The commit deployed: the version label.
    pub version: String,
    /// Fallback `part-of` label value.
    pub part_of: String,
    /// The checkout manifest folders and command workdirs are relative to.
    pub workspace: PathBuf,
    /// Plain HTTP to the registry (test registries).
    pub registry_allow_http: bool,
    /// Registry user for resolving tags.
    pub registry_username: Option<String>,
    /// How to apply.
    pub apply: ApplyOptions,
    /// Pause between HTTP check attempts.
    pub check_interval: Duration,
    /// Limit for a command.
    pub command_timeout: Duration,
}

/// Executes steps; keeps what was applied for the report.
pub struct Executor {
    settings: Settings,
    /// Rendered objects per step index, from [`Executor::prepare`].
    rendered: BTreeMap<usize, (String, Vec<Rendered>)>,
    /// Every apply done so far: its objects and what happened to them.
    pub applied: Vec<(Vec<Rendered>, Report)>,
}

impl Executor {
    /// An executor with nothing prepared.
    pub fn new(settings: Settings) -> Self {
        Executor {
            settings,
            rendered: BTreeMap::new(),
            applied: Vec::new(),
        }
    }

    /// Checks every step that can be checked without the cluster: resolves image
    /// references to digests and renders each `Apply`'s manifests. Bad input for any step
    /// fails here, for all of them at once where possible.
    pub async fn prepare(&mut self, steps: &[Step]) -> anyhow::Result<()> {
        for (index, step) in steps.iter().enumerate() {
            match &step.action {
                Action::Apply { color: Some(_), .. } => {
                    return Err(unsupported(&step.id, "applying a blue-green color").into());
                }
                Action::Apply {
                    namespace,
                    manifests,
                    images,
                    replicas,
                    color: None,
                } => {
                    let pinned = self.resolve_images(images).await?;
                    let files = read_manifests(&self.settings.workspace, manifests)
                        .map_err(|p| InputError { problems: vec![p] })?;
                    let objects = self.render(namespace, &files, &pinned, replicas)?;
                    self.rendered.insert(index, (namespace.clone(), objects));
                }
                Action::WaitRollout { color: Some(_), .. } => {
                    return Err(unsupported(&step.id, "waiting for a blue-green color").into());
                }
                Action::WaitRollout { timeout, .. } => {
                    HumanDuration::parse(timeout).map_err(|e| {
                        InputError::new(format!("step `{}`", step.id), Some("timeout"), e)
                    })?;
                }
                Action::HttpChecks { .. } | Action::RunCommand { .. } => {}
                other => {
                    let kind = serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                        .unwrap_or_default();
                    return Err(unsupported(&step.id, &kind).into());
                }
            }
        }
        Ok(())
    }

    /// Runs step `index` (prepared before). `dry_run` stops at the server-side dry run.
    pub async fn run(
        &mut self,
        kube: &kube::Client,
        index: usize,
        step: &Step,
    ) -> anyhow::Result<()> {
        if !step.decision.runs {
            info!("step `{}` skipped: {}", step.id, step.decision.reason);
            return Ok(());
        }
        match &step.action {
            Action::Apply { .. } => {
                let (namespace, objects) = self
                    .rendered
                    .get(&index)
                    .with_context(|| format!("step `{}` was not prepared", step.id))?;
                let report = apply::apply(kube, namespace, objects, self.settings.apply).await?;
                self.applied.push((objects.clone(), report));
            }
            Action::WaitRollout {
                namespace,
                workloads,
                timeout,
                ..
            } => {
                let timeout = HumanDuration::parse(timeout).map_err(anyhow::Error::msg)?;
                watch::wait_for_rollouts(kube, namespace, workloads, timeout.0).await?;
            }
            Action::HttpChecks { base_url, checks } => {
                let results =
                    checks::run_http_checks(base_url, checks, self.settings.check_interval).await?;
                let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.passed).collect();
                if !failed.is_empty() {
                    let list: Vec<String> = failed
                        .iter()
                        .map(|r| format!("`{}` ({}: {})", r.name, r.url, r.detail))
                        .collect();
                    anyhow::bail!(
                        "{} of {} HTTP check(s) failed: {}",
                        failed.len(),
                        results.len(),
                        list.join("; ")
                    );
                }
            }
            Action::RunCommand { command } => {
                run_command(
                    command,
                    self.settings.command_timeout,
                    &self.settings.workspace,
                )
                .await?;
            }
            _ => anyhow::bail!("step `{}` was not prepared", step.id),
        }
        Ok(())
    }

    /// Every component's pinned image: a reference with a digest as it is, a tag
    /// resolved on its registry. Missing tags are bad input, all reported together.
    async fn resolve_images(
        &self,
        sources: &[ImageSource],
    ) -> anyhow::Result<BTreeMap<String, Reference>> {
        let mut images = BTreeMap::new();
        let mut clients: BTreeMap<String, RegistryClient> = BTreeMap::new();
        let mut missing = Vec::new();
        for source in sources {
            let (ImageSource::Build {
                component,
                reference,
            }
            | ImageSource::Promotion {
                component,
                reference,
            }) = source;
            let reference = Reference::parse(reference)
                .with_context(|| format!("the image reference of {component}"))?;
            if reference.digest().is_some() {
                images.insert(component.clone(), reference);
                continue;
            }
            let registry = reference.registry().to_owned();
            if !clients.contains_key(&registry) {
                let client = client_from_env(
                    &registry,
                    self.settings.registry_username.as_deref(),
                    self.settings.registry_allow_http,
                )?;
                clients.insert(registry.clone(), client);
            }
            match clients[&registry].get_manifest(&reference).await {
                Ok(manifest) => {
                    info!("{component}: {reference} is {}", manifest.digest);
                    images.insert(component.clone(), reference.with_digest(manifest.digest));
                }
                Err(RegistryError::ManifestNotFound { .. }) => missing.push(InputProblem::new(
                    "--sha",
                    format!(
                        "{component}: no image {reference} on the registry; was commit {} built and pushed?",
                        self.settings.version
                    ),
                )),
                Err(error) => {
                    return Err(anyhow::Error::from(error)
                        .context(format!("resolving {reference} to a digest")));
                }
            }
        }
        if !missing.is_empty() {
            return Err(InputError { problems: missing }.into());
        }
        Ok(images)
    }

    fn render(
        &self,
        namespace: &str,
        files: &[ManifestFile],
        images: &BTreeMap<String, Reference>,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<Vec<Rendered>, InputError> {
        let pipeline = &self.settings.pipeline;
        let components = images
            .iter()
            .map(|(component, pinned)| {
                let workload = pipeline
                    .components
                    .get(component)
                    .map_or(component.as_str(), |c| c.workload_name(component))
                    .to_owned();
                // The placeholder the manifests name (k8s/README.md): repository:component.
                let placeholder = format!("{}:{component}", tags::repository(pipeline, component));
                let image = ComponentImage {
                    placeholder,
                    pinned: pinned.clone(),
                    workload,
                };
                (component.clone(), image)
            })
            .collect();
        let input = RenderInput {
            namespace: namespace.to_owned(),
            version: self.settings.version.clone(),
            part_of: self.settings.part_of.clone(),
            images: components,
            replicas: replicas.clone(),
        };
        render::render(files, &input).map_err(|problems| InputError {
            problems: problems
                .into_iter()
                .map(|p| InputProblem {
                    source: p.source,
                    position: None,
                    field: p.object,
                    message: p.message,
                })
                .collect(),
        })
    }
}

fn unsupported(step: &str, what: &str) -> InputError {
    InputError::new(
        format!("step `{step}`"),
        None,
        format!("{what} is not supported by this version of jisu-deploy; nothing was applied"),
    )
}

/// The `.yaml`/`.yml` files of a manifest folder, in name order (as `kubectl apply -f
/// DIR/` reads them), named relative to the workspace.
fn read_manifests(workspace: &Path, folder: &str) -> Result<Vec<ManifestFile>, InputProblem> {
    let dir = workspace.join(folder);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        InputProblem::new(
            folder,
            format!("cannot read the manifest folder {}: {e}", dir.display()),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let source = format!("{}/{name}", folder.trim_end_matches('/'));
            std::fs::read_to_string(&path)
                .map(|text| ManifestFile {
                    source: source.clone(),
                    text,
                })
                .map_err(|e| InputProblem::new(&source, format!("cannot read: {e}")))
        })
        .collect()
}

/// Runs a command (e.g. integration tests) without a shell, its output on our stderr so
/// stdout stays the report, under a deadline; killed if the deadline passes.
async fn run_command(command: &Command, timeout: Duration, workspace: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    let Some((program, arguments)) = command.run.split_first() else {
        anyhow::bail!("command `{}` has an empty `run`", command.name);
    };
    let stdout = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .current_dir(workspace.join(&command.workdir))
        .envs(&command.env)
        .stdout(std::process::Stdio::from(stdout))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting command `{}` ({program})", command.name))?;
    info!("running `{}`", command.name);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            let status = status.with_context(|| format!("waiting for `{}`", command.name))?;
            if status.success() {
                info!("command `{}` passed", command.name);
                Ok(())
            } else {
                error!("command `{}` failed: {status}", command.name);
                anyhow::bail!("command `{}` failed: {status}", command.name)
            }
        }
        Err(_) => {
            child.kill().await.ok();
            anyhow::bail!(
                "command `{}` did not finish within {}",
                command.name,
                HumanDuration(timeout)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::Workspace;
    use crate::plan::{ColorRole, Decision};

    struct Anything;
    impl Workspace for Anything {
        fn is_dir(&self, _: &str) -> bool {
            true
        }
        fn is_file(&self, _: &str) -> bool {
            true
        }
    }

    fn executor() -> Executor {
        let pipeline = crate::config::parse(
            "version: 1\nimages: {scheme: per-component, owner: jisu}\ncomponents:\n  web: {context: ., dockerfile: Dockerfile, port: 80}\nenvironments:\n  staging: {branch: develop, namespace: s, url: 'https://s.example', strategy: rolling, manifests: k8s}\n",
            "pipeline.yml",
            &Anything,
        )
        .unwrap();
        Executor::new(Settings {
            pipeline,
            version: "a".repeat(40),
            part_of: "p".into(),
            workspace: PathBuf::from("/nonexistent"),
            registry_allow_http: false,
            registry_username: None,
            apply: ApplyOptions::default(),
            check_interval: Duration::ZERO,
            command_timeout: Duration::from_secs(1),
        })
    }

    fn step(action: Action) -> Step {
        Step {
            id: "s".into(),
            decision: Decision {
                runs: true,
                reason: "test".into(),
            },
            action,
        }
    }

    fn bad_input(error: &anyhow::Error) -> String {
        error
            .downcast_ref::<InputError>()
            .unwrap_or_else(|| panic!("not an input error: {error:#}"))
            .to_string()
    }

    #[tokio::test]
    async fn actions_of_later_issues_are_refused_before_anything_runs() {
        let lock = step(Action::AcquireLock {
            namespace: "s".into(),
            lease: "deploy-staging".into(),
        });
        let error = executor().prepare(&[lock]).await.unwrap_err();
        assert!(
            bad_input(&error).contains("acquire_lock is not supported"),
            "{error:#}"
        );
        let colored = step(Action::WaitRollout {
            namespace: "s".into(),
            workloads: vec!["web".into()],
            color: Some(ColorRole::Idle),
            timeout: "5m".into(),
        });
        let error = executor().prepare(&[colored]).await.unwrap_err();
        assert!(bad_input(&error).contains("blue-green color"), "{error:#}");
    }

    #[tokio::test]
    async fn an_invalid_image_reference_or_a_missing_folder_is_bad_input() {
        let apply = |reference: &str| {
            step(Action::Apply {
                namespace: "s".into(),
                manifests: "k8s".into(),
                images: vec![ImageSource::Build {
                    component: "web".into(),
                    reference: reference.into(),
                }],
                replicas: BTreeMap::new(),
                color: None,
            })
        };
        // A digest needs no registry; the folder is then what fails.
        let digest = format!("ghcr.io/jisu/web@sha256:{}", "a".repeat(64));
        let error = executor().prepare(&[apply(&digest)]).await.unwrap_err();
        assert!(
            bad_input(&error).contains("cannot read the manifest folder"),
            "{error:#}"
        );
        let error = executor()
            .prepare(&[apply("not a reference!")])
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("the image reference of web"),
            "{error:#}"
        );
    }
}
