//! The deploy steps of a plan: `Apply` (server-side apply with images pinned to digests),
//! `WaitRollout` (kubectl's completeness rules, with a deadline) and `HttpChecks`.
//!
//! Preparing renders every apply step's manifests (with a stand-in digest for images an
//! earlier step of the run will produce) and resolves the images that must already exist,
//! so a broken manifest or a missing image stops the run before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::info;

use super::bluegreen::BlueGreen;
use super::{Done, Settings};
use crate::config::duration::HumanDuration;
use crate::error::{InputError, InputProblem};
use crate::images::credentials::client_from_env;
use crate::images::tags;
use crate::kube::apply::{self, ApplyOptions, Report};
use crate::kube::color::{self, Color};
use crate::kube::render::{self, ComponentImage, ManifestFile, RenderInput, Rendered};
use crate::kube::{checks, ingress, undo, watch};
use crate::oci::{Digest, Reference, RegistryClient, RegistryError};
use crate::plan::{Action, ColorRole, ImageSource, Step};
use crate::session::Session;

/// Whether `action` is one of the deploy steps [`DeployState`] prepares and runs.
pub fn handles(action: &Action) -> bool {
    matches!(
        action,
        Action::Apply { .. }
            | Action::WaitRollout { .. }
            | Action::HttpChecks { .. }
            | Action::ReadLiveColor { .. }
            | Action::SwitchTraffic { .. }
            | Action::VerifyAfterSwitch { .. }
            | Action::KeepPreviousColor { .. }
            | Action::CleanupColors { .. }
            | Action::RedeployPrevious { .. }
    )
}

/// A step's place: job id and step index.
pub type StepKey = (String, usize);

/// What preparing needs to know about the run.
pub struct PrepareContext<'a> {
    /// The session.
    pub session: &'a Session,
    /// How steps run.
    pub settings: &'a Settings,
    /// The commit deployed (the `version` label).
    pub version: &'a str,
    /// The `part-of` label where a manifest sets none.
    pub part_of: &'a str,
    /// Digests given before the run.
    pub given: &'a BTreeMap<String, String>,
    /// Components whose image an earlier step of this run produces.
    pub produced: &'a BTreeSet<String>,
}

/// What running needs to know about the run.
pub struct RunContext<'a> {
    /// The session.
    pub session: &'a Session,
    /// How steps run.
    pub settings: &'a Settings,
    /// Digests known now (given, built, promoted).
    pub digests: &'a BTreeMap<String, String>,
    /// Read-only: a server-side dry run instead of an apply; no waiting, no checks.
    pub preview: bool,
}

/// One apply step, prepared.
struct PreparedApply {
    namespace: String,
    /// For blue-green: the objects are the idle color's.
    color: Option<ColorRole>,
    files: Vec<ManifestFile>,
    input: RenderInput,
    /// Components whose digest is only known once an earlier step has run.
    deferred: BTreeMap<String, Reference>,
}

/// The deploy steps' state across a run.
#[derive(Default)]
pub struct DeployState {
    applies: BTreeMap<StepKey, PreparedApply>,
    kube: Option<kube::Client>,
    /// The API server's URL as it may be shown (credentials redacted).
    server: String,
    /// What the blue-green steps have learned (live color, layout, the switch).
    pub blue_green: BlueGreen,
    /// Objects applied by each apply step, with what changed.
    pub applied: Vec<(Vec<Rendered>, Report)>,
}

impl DeployState {
    /// Checks a deploy step without touching the cluster.
    pub async fn prepare(
        &mut self,
        context: &PrepareContext<'_>,
        key: StepKey,
        step: &Step,
    ) -> anyhow::Result<()> {
        match &step.action {
            Action::Apply {
                namespace,
                manifests,
                images,
                replicas,
                color,
                url,
                preview_url,
            } => {
                let (pinned, deferred) = resolve_images(context, images).await?;
                let files = read_manifests(&context.session.workspace, manifests)
                    .map_err(|p| InputError { problems: vec![p] })?;
                let pipeline = context.session.pipeline()?;
                // Deferred images render with a stand-in digest now, to check the manifests.
                let mut all = pinned;
                for (component, reference) in &deferred {
                    all.insert(component.clone(), reference.with_digest(Digest::of(b"")));
                }
                let urls = ingress::Urls {
                    public: url.clone(),
                    preview: preview_url.clone(),
                };
                let input = render_input(pipeline, namespace, context, &all, replicas, urls);
                let objects = render::render(&files, &input).map_err(render_problems)?;
                if color.is_some() {
                    // Both colors render the same way; checking one now finds every problem.
                    let colored = color::colorize(&objects, Color::Blue, Some(Color::Green))
                        .map_err(render_problems)?;
                    self.blue_green.layout = colored.layout;
                }
                self.applies.insert(
                    key,
                    PreparedApply {
                        namespace: namespace.clone(),
                        color: *color,
                        files,
                        input,
                        deferred,
                    },
                );
            }
            Action::WaitRollout { timeout, .. } => {
                duration(step, "timeout", timeout)?;
            }
            Action::VerifyAfterSwitch { watch_for, .. } => {
                duration(step, "watch_for", watch_for)?;
            }
            Action::KeepPreviousColor {
                scale_down_after, ..
            } => {
                duration(step, "scale_down_after", scale_down_after)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs a prepared deploy step.
    pub async fn run(
        &mut self,
        context: &RunContext<'_>,
        key: StepKey,
        step: &Step,
    ) -> anyhow::Result<Done> {
        let options = &context.settings.deploy;
        match &step.action {
            Action::Apply { .. } => {
                let prepared = self
                    .applies
                    .get_mut(&key)
                    .with_context(|| format!("step `{}` was not prepared", step.id))?;
                for (component, reference) in &prepared.deferred {
                    let pinned = context.digests.get(component).with_context(|| {
                        format!("no digest for {component} ({reference}): the step that produces it did not run")
                    })?;
                    let pinned = Reference::parse(pinned)
                        .with_context(|| format!("the digest handed on for {component}"))?;
                    if let Some(image) = prepared.input.images.get_mut(component) {
                        image.pinned = pinned;
                    }
                }
                let mut objects =
                    render::render(&prepared.files, &prepared.input).map_err(render_problems)?;
                let namespace = prepared.namespace.clone();
                let colored = prepared.color.is_some();
                let kube = self.client(context).await?;
                if colored {
                    let (idle, live) = (self.blue_green.idle()?, self.blue_green.live()?);
                    objects = color::colorize(&objects, idle, live)
                        .map_err(render_problems)?
                        .objects;
                    self.blue_green
                        .size(&kube, &namespace, &mut objects)
                        .await?;
                }
                let apply_options = ApplyOptions {
                    force_conflicts: options.force_conflicts,
                    dry_run: context.preview,
                    // The live color's objects are not in the idle color's set: pruning
                    // would delete them.
                    prune: options.prune && !colored,
                };
                let report = apply::apply(&kube, &namespace, &objects, apply_options).await?;
                let outputs = BTreeMap::from([
                    ("objects".to_owned(), objects.len().to_string()),
                    ("namespace".to_owned(), namespace),
                ]);
                if colored && !context.preview {
                    self.blue_green.applied_idle = true;
                }
                self.applied.push((objects, report));
                Ok(Done::Ran(outputs))
            }
            Action::WaitRollout {
                namespace,
                workloads,
                timeout,
                color,
            } => {
                if context.preview {
                    return Ok(Done::Skipped("dry run: nothing to wait for".to_owned()));
                }
                let workloads: Vec<String> = match color {
                    Some(_) => {
                        let idle = self.blue_green.idle()?;
                        workloads.iter().map(|w| idle.name(w)).collect()
                    }
                    None => workloads.clone(),
                };
                let workloads = &workloads;
                let timeout = match options.rollout_timeout {
                    Some(timeout) => timeout,
                    None => HumanDuration::parse(timeout).map_err(anyhow::Error::msg)?.0,
                };
                let kube = self.client(context).await?;
                watch::wait_for_rollouts(&kube, &self.server, namespace, workloads, timeout)
                    .await?;
                Ok(Done::ran_with("workloads", workloads.join(",")))
            }
            Action::HttpChecks { base_url, checks } => {
                if context.preview {
                    return Ok(Done::Skipped("dry run: no checks".to_owned()));
                }
                checks::require_http_checks(base_url, checks, options.check_interval).await?;
                Ok(Done::ran_with("environment_url", base_url.clone()))
            }
            Action::ReadLiveColor {
                namespace,
                services,
            } => {
                if self.blue_green.layout.routed.is_empty() {
                    // A job that applies nothing (a rollback) takes the plan's names.
                    self.blue_green.layout.routed = services.clone();
                    self.blue_green.layout.workloads = services.clone();
                }
                let kube = self.client(context).await?;
                self.blue_green.read_live(&kube, namespace).await
            }
            Action::SwitchTraffic { namespace, .. } if options.no_switch => {
                Ok(Done::Skipped(format!(
                    "--no-switch: the idle color {} stays beside the live one in {namespace}; `jisu-deploy switch` moves traffic to it",
                    self.blue_green.idle()?
                )))
            }
            Action::VerifyAfterSwitch { .. } | Action::KeepPreviousColor { .. }
                if options.no_switch && !self.blue_green.has_switched() =>
            {
                Ok(Done::Skipped(
                    "--no-switch: nothing was switched".to_owned(),
                ))
            }
            Action::SwitchTraffic { namespace, .. } => {
                if context.preview {
                    return Ok(Done::Skipped(format!(
                        "dry run: would switch {} to {}",
                        self.blue_green.layout.routed.join(", "),
                        self.blue_green.idle()?
                    )));
                }
                let kube = self.client(context).await?;
                let timeout = options.rollout_timeout.unwrap_or(DEFAULT_WARM_UP);
                self.blue_green
                    .switch(&kube, &self.server, namespace, timeout)
                    .await
            }
            Action::VerifyAfterSwitch {
                base_url,
                checks,
                watch_for,
            } => {
                if context.preview {
                    return Ok(Done::Skipped("dry run: nothing was switched".to_owned()));
                }
                let watch_for = HumanDuration::parse(watch_for).map_err(anyhow::Error::msg)?;
                let kube = self.client(context).await?;
                self.blue_green
                    .verify(&kube, base_url, checks, watch_for.0, options.check_interval)
                    .await
            }
            Action::CleanupColors { namespace, .. } => {
                if context.preview {
                    return Ok(Done::Skipped("dry run: nothing was scaled down".to_owned()));
                }
                let kube = self.client(context).await?;
                self.blue_green.cleanup(&kube, namespace).await
            }
            Action::KeepPreviousColor {
                namespace,
                scale_down_after,
            } => {
                if context.preview {
                    return Ok(Done::Skipped("dry run: nothing was switched".to_owned()));
                }
                let keep = HumanDuration::parse(scale_down_after).map_err(anyhow::Error::msg)?;
                let kube = self.client(context).await?;
                self.blue_green
                    .keep_previous(&kube, namespace, keep.0)
                    .await
            }
            Action::RedeployPrevious {
                namespace,
                workloads,
            } => {
                let kube = self.client(context).await?;
                // Every Deployment is checked before the first is changed.
                let undos = undo::prepare(&kube, namespace, workloads).await?;
                let mut outputs = BTreeMap::from([("namespace".to_owned(), namespace.clone())]);
                for planned in &undos {
                    let shown = crate::output::escape(&planned.deployment).into_owned();
                    if context.preview {
                        info!(
                            "dry run: Deployment {shown} would go back from revision {} to revision {}",
                            planned.from, planned.to
                        );
                    } else {
                        undo::undo(&kube, namespace, planned).await?;
                        info!(
                            "Deployment {shown} went back from revision {} to revision {}",
                            planned.from, planned.to
                        );
                    }
                    outputs.insert(format!("revision.{shown}"), planned.to.to_string());
                }
                if context.preview {
                    let said: Vec<String> = undos
                        .iter()
                        .map(|u| {
                            let shown = crate::output::escape(&u.deployment);
                            format!("{shown} to revision {}", u.to)
                        })
                        .collect();
                    return Ok(Done::Skipped(format!(
                        "dry run: would roll back {}",
                        said.join(", ")
                    )));
                }
                Ok(Done::Ran(outputs))
            }
            _ => anyhow::bail!("step `{}` is not a deploy step", step.id),
        }
    }

    /// The cluster client, connected on first use so runs without deploy steps need none.
    pub(crate) async fn client(
        &mut self,
        context: &RunContext<'_>,
    ) -> anyhow::Result<kube::Client> {
        if let Some(client) = &self.kube {
            return Ok(client.clone());
        }
        let (connected, server) = context.settings.cluster.connect().await?;
        self.server = server;
        self.kube = Some(connected.clone());
        Ok(connected)
    }
}

/// How long a rollback waits for a scaled-down previous color to be ready again, unless
/// `--timeout` says otherwise.
const DEFAULT_WARM_UP: std::time::Duration = std::time::Duration::from_secs(600);

/// A duration the plan carries, checked before anything runs.
fn duration(step: &Step, field: &str, text: &str) -> Result<HumanDuration, InputError> {
    HumanDuration::parse(text)
        .map_err(|e| InputError::new(format!("step `{}`", step.id), Some(field), e))
}

impl Done {
    fn ran_with(key: &str, value: String) -> Self {
        Done::Ran(BTreeMap::from([(key.to_owned(), value)]))
    }
}

/// Every component's image: a digest given or already in the reference as it is; one an
/// earlier step produces deferred; any other sha tag resolved on its registry now.
/// Missing images are bad input, all reported together.
async fn resolve_images(
    context: &PrepareContext<'_>,
    sources: &[ImageSource],
) -> anyhow::Result<(BTreeMap<String, Reference>, BTreeMap<String, Reference>)> {
    let mut pinned = BTreeMap::new();
    let mut deferred = BTreeMap::new();
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
        if let Some(given) = context.given.get(component) {
            pinned.insert(component.clone(), Reference::parse(given)?);
            continue;
        }
        if reference.digest().is_some() {
            pinned.insert(component.clone(), reference);
            continue;
        }
        if context.produced.contains(component) {
            deferred.insert(component.clone(), reference);
            continue;
        }
        let registry = reference.registry().to_owned();
        if !clients.contains_key(&registry) {
            let client = client_from_env(&registry, &context.settings.registry)?;
            clients.insert(registry.clone(), client);
        }
        match clients[&registry].get_manifest(&reference).await {
            Ok(manifest) => {
                info!("{component}: {reference} is {}", manifest.digest);
                pinned.insert(component.clone(), reference.with_digest(manifest.digest));
            }
            Err(RegistryError::ManifestNotFound { .. }) => missing.push(InputProblem::new(
                "--sha",
                format!(
                    "{component}: no image {reference} on the registry; was commit {} built and pushed? (or pass its digest with --digests)",
                    context.version
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
    Ok((pinned, deferred))
}

fn render_input(
    pipeline: &crate::config::Pipeline,
    namespace: &str,
    context: &PrepareContext<'_>,
    images: &BTreeMap<String, Reference>,
    replicas: &BTreeMap<String, u32>,
    urls: ingress::Urls,
) -> RenderInput {
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
    RenderInput {
        namespace: namespace.to_owned(),
        version: context.version.to_owned(),
        part_of: context.part_of.to_owned(),
        images: components,
        replicas: replicas.clone(),
        urls,
    }
}

fn render_problems(problems: Vec<render::RenderProblem>) -> InputError {
    InputError {
        problems: problems
            .into_iter()
            .map(|p| InputProblem {
                source: p.source,
                position: None,
                field: p.object,
                message: p.message,
            })
            .collect(),
    }
}

/// The `.yaml`/`.yml` files of a manifest folder, in name order (as `kubectl apply -f
/// DIR/` reads them), named relative to the workspace.
fn read_manifests(workspace: &Path, folder: &str) -> Result<Vec<ManifestFile>, InputProblem> {
    let dir = crate::process::inside(workspace, folder).ok_or_else(|| {
        InputProblem::new(
            folder,
            format!(
                "the manifest folder `{folder}` is not a folder inside the checkout {}",
                workspace.display()
            ),
        )
    })?;
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
            // A link in the folder may point anywhere; only files in the checkout are applied.
            if crate::process::inside(workspace, &source).is_none() {
                return Err(InputProblem::new(
                    &source,
                    "is a symbolic link to a file outside the checkout; refusing to read it"
                        .to_owned(),
                ));
            }
            crate::config::read_input(&path, "the manifest")
                .map(|text| ManifestFile {
                    source: source.clone(),
                    text,
                })
                .map_err(|e| InputProblem::new(&source, e.problems[0].message.clone()))
        })
        .collect()
}
