//! Event + pipeline file -> [`Plan`]: every job and step the pipeline will run, each with
//! why it runs or is skipped. Pure: nothing here touches the network, the cluster or disk.
//!
//! The plan is computed whole before anything runs (a dry run prints it and stops), and it
//! carries everything a step needs, so the same object can drive the real run.

pub mod matrix;
pub mod render;
mod steps;

pub use steps::lease;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::context::{DispatchRequest, Event, GitRef, RunContext};
use crate::config::pipeline::{BackupTarget, Command, Gate, HttpCheck, Pipeline};
use crate::error::InputError;
use crate::github::permissions::Permission;
use crate::images::tags;

/// Version of the plan's JSON form; bumped on any incompatible change.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// Everything the run will do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// [`PLAN_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The run context the plan was made for.
    pub context: RunContext,
    /// Whether the run would only print (dry run) or act.
    pub dry_run: bool,
    /// Notes about the run as a whole, e.g. why nothing runs.
    pub notes: Vec<String>,
    /// Jobs in the order they run; `needs` gives the dependencies.
    pub jobs: Vec<Job>,
}

/// Whether something runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// True when it runs.
    pub runs: bool,
    /// Why it runs or is skipped, in words a person reads in a log.
    pub reason: String,
}

impl Decision {
    fn run(reason: impl Into<String>) -> Self {
        Decision {
            runs: true,
            reason: reason.into(),
        }
    }
    fn skip(reason: impl Into<String>) -> Self {
        Decision {
            runs: false,
            reason: reason.into(),
        }
    }
}

/// A job: a group of steps that runs after the jobs it needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Stable id: `lint`, `build`, `deploy-production`, ...
    pub id: String,
    /// What the job does; workflows pick the runner job that carries it out by this.
    pub kind: JobKind,
    /// Jobs that must succeed first.
    pub needs: Vec<String>,
    /// The environment it deploys to, if any.
    pub environment: Option<String>,
    /// Whether it runs.
    pub decision: Decision,
    /// Steps in order; empty for a skipped job.
    pub steps: Vec<Step>,
}

/// What a job does. Every job of one kind needs the same tools and token permissions, so a
/// workflow runs each kind in a job of its own (see `jisu-deploy plan`'s `matrix` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `lint`, `security`, `test`: commands that must pass before images are pushed.
    Gate,
    /// `build`: build and push the images.
    Build,
    /// `deploy-<env>`: deploy an environment.
    Deploy,
    /// `promote`: move an environment's tag onto a commit's images.
    Promote,
    /// `rollback-<env>`: put an environment's previous release back.
    Rollback,
    /// `switch-<env>`: move blue-green traffic to the idle color.
    Switch,
    /// `cleanup-<env>`: scale down a previous color past its keep time.
    Cleanup,
    /// `prune`: delete old images by the retention rules.
    Prune,
    /// `backup`: dump and upload the environment's data.
    Backup,
}

impl JobKind {
    /// Every kind, in the order a plan lists them.
    pub const ALL: [JobKind; 9] = [
        JobKind::Gate,
        JobKind::Build,
        JobKind::Deploy,
        JobKind::Promote,
        JobKind::Rollback,
        JobKind::Switch,
        JobKind::Cleanup,
        JobKind::Prune,
        JobKind::Backup,
    ];

    /// What the workflow token needs for a job of this kind, beyond reading the repository
    /// (`contents: read`, for the checkout): the `permissions:` of the runner job that
    /// carries it out, and no more.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            // The check run, and the commit status it falls back to.
            JobKind::Gate => &[Permission::ChecksWrite, Permission::StatusesWrite],
            JobKind::Build | JobKind::Promote | JobKind::Prune => &[Permission::PackagesWrite],
            // The deployment record; sha tags are read from ghcr.io when no digest is given.
            JobKind::Deploy => &[Permission::DeploymentsWrite, Permission::PackagesRead],
            JobKind::Rollback | JobKind::Switch => &[Permission::DeploymentsWrite],
            JobKind::Cleanup | JobKind::Backup => &[],
        }
    }

    /// As written in the plan JSON and the `matrix` output (`gate`, `deploy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Gate => "gate",
            JobKind::Build => "build",
            JobKind::Deploy => "deploy",
            JobKind::Promote => "promote",
            JobKind::Rollback => "rollback",
            JobKind::Switch => "switch",
            JobKind::Cleanup => "cleanup",
            JobKind::Prune => "prune",
            JobKind::Backup => "backup",
        }
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Stable id within the job.
    pub id: String,
    /// Whether it runs.
    pub decision: Decision,
    /// Whether it still runs after an earlier step of its job failed.
    pub when: When,
    /// What it does, with everything needed to do it.
    pub action: Action,
}

/// When a step runs relative to the steps before it in its job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Only when every earlier step of the job succeeded.
    #[default]
    OnSuccess,
    /// Also after an earlier step failed (releasing a lock, recording the result).
    Always,
}

/// Where a deploy gets each component's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ImageSource {
    /// The digest the build job pushed under this reference.
    Build {
        /// The component.
        component: String,
        /// The sha-tagged reference the build pushed.
        reference: String,
    },
    /// The digest promotion found under this reference.
    Promotion {
        /// The component.
        component: String,
        /// The sha-tagged reference promotion resolved.
        reference: String,
    },
}

/// Which color a blue-green step acts on; the real color is read from the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorRole {
    /// The color the Services route to now.
    Live,
    /// The other color.
    Idle,
}

/// What a step does. Each variant carries all its inputs, so the plan can drive the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Run an environment's command without a shell.
    RunCommand {
        /// The command.
        command: Command,
    },
    /// Run a gate: its command (if any), then its reports read into findings and held
    /// against its thresholds.
    RunGate {
        /// The gate.
        gate: Gate,
    },
    /// Build one component's image, and push it when `push`.
    BuildImage {
        /// The component.
        component: String,
        /// Build context.
        context: String,
        /// Dockerfile.
        dockerfile: String,
        /// Build arguments.
        build_args: BTreeMap<String, String>,
        /// Full references it is tagged with.
        tags: Vec<String>,
        /// OCI labels (source, revision, title, version).
        labels: BTreeMap<String, String>,
        /// Whether the tags are pushed.
        push: bool,
    },
    /// Take the environment's deploy lock (a Lease), or wait for it.
    AcquireLock {
        /// Namespace of the Lease.
        namespace: String,
        /// Lease name.
        lease: String,
    },
    /// Give the lock back, whatever happened before.
    ReleaseLock {
        /// Namespace of the Lease.
        namespace: String,
        /// Lease name.
        lease: String,
    },
    /// Server-side apply the manifests with images pinned to digests.
    Apply {
        /// Target namespace.
        namespace: String,
        /// Manifest folder.
        manifests: String,
        /// Image per component.
        images: Vec<ImageSource>,
        /// Replica overrides per component.
        replicas: BTreeMap<String, u32>,
        /// For blue-green: the color the objects are created as.
        color: Option<ColorRole>,
        /// The environment's public URL: its host replaces an Ingress's public host
        /// placeholder.
        url: String,
        /// The blue-green preview URL: its host replaces the preview placeholder; without
        /// one, an Ingress for the preview is left out.
        #[serde(skip_serializing_if = "Option::is_none")]
        preview_url: Option<String>,
    },
    /// Wait until the Deployments are complete by kubectl's rules.
    WaitRollout {
        /// Namespace.
        namespace: String,
        /// Deployment names (colored ones for blue-green).
        workloads: Vec<String>,
        /// For blue-green: which color's Deployments.
        color: Option<ColorRole>,
        /// Wall-clock deadline.
        timeout: String,
    },
    /// Run HTTP checks against a base URL.
    HttpChecks {
        /// Base for relative check URLs.
        base_url: String,
        /// The checks.
        checks: Vec<HttpCheck>,
    },
    /// Read which color the routed Services select; Services that disagree fail the step.
    ReadLiveColor {
        /// Namespace.
        namespace: String,
        /// Routed Services.
        services: Vec<String>,
    },
    /// Patch only the color key of every routed Service, refusing a color with no ready pods.
    SwitchTraffic {
        /// Namespace.
        namespace: String,
        /// Routed Services.
        services: Vec<String>,
        /// The color traffic goes to.
        to: ColorRole,
    },
    /// Watch endpoints and health after the switch; switch back on failure.
    VerifyAfterSwitch {
        /// Base URL of the environment.
        base_url: String,
        /// The checks.
        checks: Vec<HttpCheck>,
        /// How long to watch.
        watch_for: String,
    },
    /// Leave the previous color running for a fast rollback; scale it down after the delay.
    KeepPreviousColor {
        /// Namespace.
        namespace: String,
        /// Delay before scale-down.
        scale_down_after: String,
    },
    /// Scale down the previous color once its `scale-down-after` time has passed (its HPA
    /// lowered first), and delete adopted un-colored Deployments past theirs.
    CleanupColors {
        /// Namespace.
        namespace: String,
        /// Base Deployment names.
        workloads: Vec<String>,
    },
    /// Re-apply the revision recorded before the last deploy (rolling environments).
    RedeployPrevious {
        /// Namespace.
        namespace: String,
        /// Deployment names.
        workloads: Vec<String>,
    },
    /// Create the GitHub deployment record and its statuses.
    RecordDeployment {
        /// Environment name.
        environment: String,
        /// Environment URL.
        url: String,
        /// Whether GitHub marks it a production environment.
        production: bool,
    },
    /// Resolve the images built for `sha` and move the environment tag onto them, all or none.
    PromoteImages {
        /// Commit whose images are promoted.
        sha: String,
        /// Environment whose tag is moved.
        environment: String,
        /// Per component: the sha-tagged source and the environment tag it receives.
        images: Vec<Promotion>,
    },
    /// Delete registry images the retention policy no longer keeps.
    PruneImages {
        /// Repositories pruned.
        repositories: Vec<String>,
        /// Sha tags kept per component.
        keep_sha_tags: u32,
        /// Age after which untagged versions go.
        delete_untagged_after: String,
        /// What is always kept.
        always_keep: Vec<String>,
    },
    /// Back up an environment's data and expire old archives.
    Backup {
        /// Environment.
        environment: String,
        /// Namespace.
        namespace: String,
        /// What is backed up.
        targets: Vec<BackupTarget>,
        /// Where archives go.
        destination: String,
        /// Archives older than this are expired.
        retain_for: String,
    },
}

/// One image promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    /// The component.
    pub component: String,
    /// The sha-tagged reference that must exist.
    pub source: String,
    /// The environment tag it receives.
    pub target: String,
}

/// Builds the plan. `source` names the pipeline file in errors.
pub fn build(
    pipeline: &Pipeline,
    ctx: &RunContext,
    dry_run: bool,
    source: &str,
) -> Result<Plan, InputError> {
    let mut plan = Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        context: ctx.clone(),
        dry_run,
        notes: Vec::new(),
        jobs: Vec::new(),
    };
    match &ctx.event {
        Event::Push {
            git_ref,
            deleted: true,
        } => {
            plan.notes.push(format!(
                "the push deleted {}: nothing to build or deploy",
                describe_ref(git_ref)
            ));
        }
        Event::Push {
            git_ref: GitRef::Other(other),
            ..
        } => {
            plan.notes.push(format!(
                "`{other}` is neither a branch nor a tag: nothing to build or deploy"
            ));
        }
        Event::PullRequest {
            action: Some(action),
            number,
            ..
        } if action == "closed" => {
            plan.notes.push(format!(
                "pull request #{number} was closed: nothing to build"
            ));
        }
        Event::Push { git_ref, .. } => {
            // A branch no environment deploys from is everyday CI: gates and a build that
            // proves the images build, nothing pushed, nothing deployed.
            let deploys = match git_ref {
                GitRef::Branch(branch) => pipeline
                    .environments
                    .values()
                    .any(|env| &env.branch == branch),
                _ => true,
            };
            if let GitRef::Branch(branch) = git_ref
                && !deploys
            {
                plan.notes
                    .push(branch_without_environment(pipeline, branch));
            }
            plan.jobs.extend(steps::gate_jobs(pipeline));
            plan.jobs.push(steps::build_job(pipeline, ctx, deploys));
            for (name, env) in &pipeline.environments {
                let decision = match git_ref {
                    GitRef::Branch(branch) if *branch == env.branch => {
                        Decision::run(format!("pushes to `{branch}` deploy to {name}"))
                    }
                    GitRef::Branch(_) => {
                        Decision::skip(format!("{name} deploys from `{}`", env.branch))
                    }
                    _ => Decision::skip(
                        "tags release images; deploy them with workflow_dispatch `operation: promote`",
                    ),
                };
                let images = built_images(pipeline, ctx);
                plan.jobs.push(steps::deploy_job(
                    pipeline, name, env, decision, images, "build",
                ));
            }
        }
        Event::PullRequest { .. } => {
            plan.jobs.extend(steps::gate_jobs(pipeline));
            plan.jobs.push(steps::build_job(pipeline, ctx, false));
            for (name, env) in &pipeline.environments {
                let decision = Decision::skip("pull requests never deploy");
                plan.jobs.push(steps::deploy_job(
                    pipeline,
                    name,
                    env,
                    decision,
                    Vec::new(),
                    "build",
                ));
            }
        }
        Event::WorkflowDispatch {
            request,
            confirmation,
            ..
        } => {
            let environment = match request {
                DispatchRequest::Promote { environment, .. }
                | DispatchRequest::Rollback { environment }
                | DispatchRequest::Switch { environment } => environment,
            };
            let Some(env) = pipeline.environments.get(environment) else {
                let known: Vec<&str> = pipeline.environments.keys().map(String::as_str).collect();
                return Err(InputError::new(
                    "workflow_dispatch inputs",
                    Some("environment"),
                    format!(
                        "`{environment}` is not an environment in {source}; known: {}",
                        known.join(", ")
                    ),
                ));
            };
            if let Some(typed) = confirmation
                && env.production()
                && typed != environment
            {
                return Err(InputError::new(
                    "workflow_dispatch inputs",
                    Some("confirm"),
                    format!(
                        "`{environment}` is a production environment: type its name, `{environment}`, in input `confirm` to go on"
                    ),
                ));
            }
            match request {
                DispatchRequest::Promote { sha, .. } => {
                    let (job, images) = steps::promote_job(pipeline, environment, sha);
                    plan.jobs.push(job);
                    let decision = Decision::run(format!(
                        "promotion of {} to {environment} was requested",
                        short(sha)
                    ));
                    plan.jobs.push(steps::deploy_job(
                        pipeline,
                        environment,
                        env,
                        decision,
                        images,
                        "promote",
                    ));
                }
                DispatchRequest::Rollback { .. } => {
                    plan.jobs
                        .push(steps::rollback_job(pipeline, environment, env))
                }
                DispatchRequest::Switch { .. } => {
                    plan.jobs
                        .push(steps::switch_job(pipeline, environment, env))
                }
            }
        }
        Event::Schedule { cron } => {
            let jobs = steps::scheduled_jobs(pipeline, cron.as_deref());
            if let Some(cron) = cron
                && !jobs.iter().any(|job| job.decision.runs)
            {
                return Err(InputError::new(
                    source,
                    None,
                    format!(
                        "the schedule `{cron}` that fired matches neither `retention.schedule` nor `backup.schedule`; make the workflow's `on.schedule` use the same cron expressions"
                    ),
                ));
            }
            plan.jobs.extend(jobs);
        }
    }
    Ok(plan)
}

fn built_images(pipeline: &Pipeline, ctx: &RunContext) -> Vec<ImageSource> {
    pipeline
        .components
        .keys()
        .filter_map(|component| {
            let built = tags::compute(pipeline, ctx, component)?;
            Some(ImageSource::Build {
                component: component.clone(),
                reference: built.references().into_iter().next()?,
            })
        })
        .collect()
}

fn branch_without_environment(pipeline: &Pipeline, branch: &str) -> String {
    let known: Vec<String> = pipeline
        .environments
        .iter()
        .map(|(name, env)| format!("`{}` ({name})", env.branch))
        .collect();
    format!(
        "no environment deploys from branch `{branch}` (environments deploy from {}): the gates run and the images are built to prove they build, but nothing is pushed or deployed",
        known.join(", ")
    )
}

fn describe_ref(git_ref: &GitRef) -> String {
    match git_ref {
        GitRef::Branch(name) => format!("branch `{name}`"),
        GitRef::Tag(name) => format!("tag `{name}`"),
        GitRef::Other(name) => format!("`{name}`"),
    }
}

/// The first 7 characters of a sha, for prose.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
