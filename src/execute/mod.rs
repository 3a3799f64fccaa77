//! The executor: the only place steps run. It walks the plan's jobs in order (a job whose
//! `needs` failed is not reached), hands each step's [`Action`] to the runner for its kind,
//! and records a [`RunReport`].
//!
//! Two passes, as the plan is meant to be used: [`Executor::execute`] first prepares every
//! step of every selected job (paths inside the checkout, manifests rendered, images that
//! must already exist resolved, actions this version cannot do refused), so bad input
//! fails with nothing touched; then it runs them. A failed step stops its job; steps
//! marked `when: always` (unlock, record) still run.

pub mod backup;
pub mod bluegreen;
pub mod checks;
pub mod deploy;
pub mod gates;
pub mod images;
pub mod locks;
pub mod records;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::context::{DispatchRequest, Event};
use crate::error::InputError;
use crate::images::build::BuildOptions;
use crate::images::credentials::RegistryAccess;
use crate::images::prune_command::PruneOptions;
use crate::kube::client::ClusterAccess;
use crate::plan::{Action, Job, Plan, Step, When, render};
use crate::session::Session;
use report::{FailureKind, JobReport, REPORT_SCHEMA_VERSION, RunReport, Status, StepReport};

/// How deploys run (plain values the command line fills in).
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Take over fields another field manager owns.
    pub force_conflicts: bool,
    /// Delete objects this tool applied earlier that the manifests no longer contain.
    pub prune: bool,
    /// Overrides every rollout wait's deadline.
    pub rollout_timeout: Option<Duration>,
    /// Pause between attempts of an HTTP check.
    pub check_interval: Duration,
    /// How long a `lock` step waits for another run's deploy lock (default: 10 minutes).
    pub lock_timeout: Option<Duration>,
    /// How long the lock stays claimed without renewal [default: 60 s].
    pub lock_lease: Option<Duration>,
    /// Blue-green: deploy and check the idle color, but leave traffic where it is.
    pub no_switch: bool,
}

/// How long a `lock` step waits for another run's lock when `--lock-timeout` is not given.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything about how steps run that the plan does not say.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Registry user and plain-HTTP permission.
    pub registry: RegistryAccess,
    /// Kubeconfig and context.
    pub cluster: ClusterAccess,
    /// Builder, cache, storage.
    pub build: BuildOptions,
    /// Whether builds may push (the plan decides which may; this can only forbid).
    pub push: bool,
    /// Build only these components (all when empty).
    pub components: Vec<String>,
    /// Deploy options.
    pub deploy: DeployOptions,
    /// Prune options.
    pub prune: PruneOptions,
}

/// What a step's runner says when it did not fail.
pub enum Done {
    /// It ran; these are its outputs.
    Ran(BTreeMap<String, String>),
    /// It did nothing, for this reason (narrowed away, a dry run, not in this version).
    Skipped(String),
}

impl Done {
    fn ran() -> Self {
        Done::Ran(BTreeMap::new())
    }
}

/// Runs plans. One per invocation; it keeps what steps hand on (digests, cluster client).
pub struct Executor<'s> {
    session: &'s Session,
    settings: Settings,
    /// Read-only run: every runner shows what it would change and writes nothing.
    preview: bool,
    /// Component -> `repo@sha256:...`: given, built or promoted in this run.
    digests: BTreeMap<String, String>,
    /// State of the deploy steps (rendered objects, the cluster client).
    deploy: deploy::DeployState,
    /// What the image steps did, for the commands that print it.
    pub images: images::ImageResults,
    /// The deployment record of the running job.
    records: records::Records,
    /// The deploy locks held.
    locks: locks::Locks,
    /// The check run of the running gate job.
    checks: checks::Checks,
    /// What the gate step that just ran found.
    gate_run: Option<gates::GateRun>,
}

impl<'s> Executor<'s> {
    /// An executor for `session`. `preview` makes every step read-only.
    pub fn new(session: &'s Session, settings: Settings, preview: bool) -> Self {
        Executor {
            session,
            settings,
            preview,
            digests: BTreeMap::new(),
            deploy: deploy::DeployState::default(),
            images: images::ImageResults::default(),
            records: records::Records::default(),
            locks: locks::Locks::default(),
            checks: checks::Checks::default(),
            gate_run: None,
        }
    }

    /// Images pinned before the run (`--digests`): component -> `repo@sha256:...`.
    pub fn given_digests(&mut self, digests: BTreeMap<String, String>) {
        self.digests.extend(digests);
    }

    /// The objects each apply step applied (or would apply), with what changed.
    pub fn applied(
        &self,
    ) -> &[(
        Vec<crate::kube::render::Rendered>,
        crate::kube::apply::Report,
    )] {
        &self.deploy.applied
    }

    /// Prepares, then runs, the jobs of `plan` that run and are in `only` (all when empty).
    /// An `Err` is bad input found before anything was touched; step failures are in the
    /// report.
    pub async fn execute(&mut self, plan: &Plan, only: &[String]) -> anyhow::Result<RunReport> {
        let selected = select(plan, only)?;
        let started = Instant::now();
        self.prepare(plan, &selected).await?;
        let mut jobs = Vec::new();
        let mut broken: BTreeSet<&str> = BTreeSet::new();
        for job in &plan.jobs {
            if !selected.contains(job.id.as_str()) {
                continue;
            }
            let report = if !job.decision.runs {
                skipped_job(job, Status::Skipped, &job.decision.reason)
            } else if let Some(need) = job.needs.iter().find(|n| broken.contains(n.as_str())) {
                skipped_job(
                    job,
                    Status::NotReached,
                    &format!("`{need}` did not succeed"),
                )
            } else {
                self.run_job(plan, job).await
            };
            if matches!(report.status, Status::Failed | Status::NotReached) {
                broken.insert(job.id.as_str());
            }
            jobs.push(report);
        }
        let result = if broken.is_empty() {
            Status::Succeeded
        } else {
            Status::Failed
        };
        let environment_url = jobs
            .iter()
            .filter(|j| j.status == Status::Succeeded)
            .flat_map(|j| &j.steps)
            .find_map(|s| s.outputs.get("environment_url").cloned());
        Ok(RunReport {
            schema_version: REPORT_SCHEMA_VERSION,
            event: render::headline_event(plan),
            sha: plan.context.sha.clone(),
            result,
            digests: self.digests.clone(),
            environment_url,
            jobs,
            duration_ms: millis(started.elapsed()),
        })
    }

    /// Every check that needs no write, for every step that will run.
    async fn prepare(&mut self, plan: &Plan, selected: &BTreeSet<&str>) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        // Components whose image an earlier selected job of this run produces.
        let mut produced: BTreeSet<String> = BTreeSet::new();
        let version = deployed_version(plan);
        for job in plan
            .jobs
            .iter()
            .filter(|j| j.decision.runs && selected.contains(j.id.as_str()))
        {
            let mut unsupported: Vec<&str> = Vec::new();
            for (index, step) in job.steps.iter().enumerate() {
                if !step.decision.runs {
                    continue;
                }
                let at = format!("step `{}/{}`", job.id, step.id);
                match &step.action {
                    Action::RunCommand { command } => {
                        self.check_workdir(&at, &command.name, &command.workdir, &mut problems);
                    }
                    Action::RunGate { gate } => {
                        self.check_workdir(&at, &gate.name, &gate.workdir, &mut problems);
                    }
                    Action::BuildImage {
                        component, push, ..
                    } => {
                        if *push && self.settings.push {
                            produced.insert(component.clone());
                        }
                    }
                    Action::PromoteImages { images, .. } => {
                        produced.extend(images.iter().map(|p| p.component.clone()));
                    }
                    action if deploy::handles(action) => {
                        let key = (job.id.clone(), index);
                        let context = deploy::PrepareContext {
                            session: self.session,
                            settings: &self.settings,
                            version: &version,
                            part_of: &part_of(plan, self.session.pipeline()?),
                            given: &self.digests,
                            produced: &produced,
                        };
                        self.deploy.prepare(&context, key, step).await?;
                    }
                    Action::Backup { .. }
                    | Action::PruneImages { .. }
                    | Action::AcquireLock { .. }
                    | Action::ReleaseLock { .. }
                    | Action::RecordDeployment { .. } => {}
                    _ => unsupported.push(step.id.as_str()),
                }
            }
            if !unsupported.is_empty() {
                problems.push(unsupported_job(job, &unsupported));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InputError { problems }.into())
        }
    }

    fn check_workdir(
        &self,
        at: &str,
        name: &str,
        workdir: &str,
        problems: &mut Vec<crate::error::InputProblem>,
    ) {
        if crate::process::inside(&self.session.workspace, workdir).is_none() {
            problems.push(crate::error::InputProblem::new(
                at,
                format!(
                    "working directory `{workdir}` of `{name}` is not a folder inside the checkout"
                ),
            ));
        }
    }

    async fn run_job(&mut self, plan: &Plan, job: &Job) -> JobReport {
        let started = Instant::now();
        let started_at = now();
        info!("job `{}`: {}", job.id, job.decision.reason);
        self.records
            .start(self.session, plan, job, &self.digests, self.preview)
            .await;
        self.checks
            .start(self.session, plan, job, self.preview)
            .await;
        let mut failed = false;
        let mut steps = Vec::new();
        for (index, step) in job.steps.iter().enumerate() {
            let mut report = StepReport {
                id: step.id.clone(),
                kind: kind(&step.action),
                status: Status::Skipped,
                reason: None,
                started: None,
                duration_ms: None,
                outputs: BTreeMap::new(),
                error: None,
                failure: None,
                findings: None,
            };
            if !step.decision.runs {
                report.reason = Some(step.decision.reason.clone());
                steps.push(report);
                continue;
            }
            if failed && step.when == When::OnSuccess {
                report.status = Status::NotReached;
                report.reason = Some("an earlier step of the job failed".to_owned());
                steps.push(report);
                continue;
            }
            let runner = &self.session.runner;
            runner.group(&format!("{}/{}: {}", job.id, step.id, step.decision.reason));
            info!("step `{}/{}`: {}", job.id, step.id, step.decision.reason);
            report.started = Some(now());
            let step_started = Instant::now();
            let outcome = if let Action::RecordDeployment { .. } = step.action {
                let summary = self.deploy.blue_green.summary();
                self.records.finish(failed, &summary).await
            } else if step.when == When::OnSuccess && !self.locks.is_empty() {
                // A lost lock fails the step running when it is lost, and every later one.
                match self.locks.lost_now() {
                    Some(lost) => Err(lost.into()),
                    None => {
                        let lost = self.locks.lost();
                        tokio::select! {
                            outcome = self.run_step(plan, job, index, step) => outcome,
                            lost = lost => Err(lost.into()),
                        }
                    }
                }
            } else {
                self.run_step(plan, job, index, step).await
            };
            let elapsed = step_started.elapsed();
            report.duration_ms = Some(millis(elapsed));
            if let Some(gate) = self.gate_run.take() {
                if let Some(found) = &gate.report {
                    self.checks
                        .add(&step.id, outcome.is_ok(), gate.findings, &found.verdicts);
                }
                report.findings = gate.report;
            }
            let took = report::human_millis(millis(elapsed));
            match outcome {
                Ok(Done::Ran(outputs)) => {
                    info!("step `{}/{}` succeeded in {took}", job.id, step.id);
                    report.status = Status::Succeeded;
                    report.outputs = outputs;
                }
                Ok(Done::Skipped(reason)) => {
                    warn!("step `{}/{}` skipped: {reason}", job.id, step.id);
                    report.reason = Some(reason);
                }
                Err(err) => {
                    error!("step `{}/{}` failed after {took}: {err:#}", job.id, step.id);
                    report.status = Status::Failed;
                    report.failure = Some(FailureKind::of(&err));
                    report.error = Some(format!("{err:#}"));
                    failed = true;
                }
            }
            self.session.runner.end_group();
            steps.push(report);
        }
        // A lock the job's own `unlock` did not give back (it did not run) goes back now.
        self.locks.release_all().await;
        self.checks.finish(self.session, job, failed).await;
        JobReport {
            id: job.id.clone(),
            environment: job.environment.clone(),
            status: if failed {
                Status::Failed
            } else {
                Status::Succeeded
            },
            reason: None,
            started: Some(started_at),
            duration_ms: Some(millis(started.elapsed())),
            steps,
        }
    }

    async fn run_step(
        &mut self,
        plan: &Plan,
        job: &Job,
        index: usize,
        step: &Step,
    ) -> anyhow::Result<Done> {
        match &step.action {
            Action::RunCommand { command } => {
                if self.preview {
                    return Ok(Done::Skipped(format!(
                        "dry run: would run `{}` in {}",
                        command.run.join(" "),
                        command.workdir
                    )));
                }
                crate::process::run(&crate::process::Child {
                    name: &command.name,
                    argv: &command.run,
                    workdir: &command.workdir,
                    checkout: &self.session.workspace,
                    env: &command.env,
                    timeout: command.timeout.0,
                })
                .await?;
                Ok(Done::ran())
            }
            Action::RunGate { gate } => {
                if self.preview {
                    return Ok(Done::Skipped(format!(
                        "dry run: would run gate `{}`",
                        gate.name
                    )));
                }
                let (outcome, found) = gates::run(&self.session.workspace, gate).await;
                self.gate_run = Some(found);
                outcome
            }
            Action::BuildImage { .. } => {
                let done =
                    images::build(self.session, &self.settings, &step.action, self.preview).await?;
                if let Done::Ran(outputs) = &done
                    && let Some(pinned) = outputs.get("digest")
                    && let Action::BuildImage { component, .. } = &step.action
                {
                    self.digests.insert(component.clone(), pinned.clone());
                }
                if let Done::Ran(outputs) = &done {
                    self.images.built.extend(outputs.get("built").cloned());
                }
                Ok(done)
            }
            Action::PromoteImages {
                sha,
                environment,
                images,
            } => {
                let outcome = crate::images::promote::promote(
                    images,
                    environment,
                    sha,
                    &self.settings.registry,
                    self.preview,
                )
                .await?;
                let digests = outcome.digests();
                self.digests.extend(digests.clone());
                self.images.promoted = Some(outcome);
                Ok(Done::Ran(BTreeMap::from([(
                    "digests".to_owned(),
                    serde_json::to_string(&digests)?,
                )])))
            }
            Action::Backup { .. } => {
                backup::run(self.session, &self.settings.cluster, self.preview).await
            }
            Action::PruneImages { .. } => {
                let results =
                    images::prune(self.session, &self.settings, &step.action, self.preview).await?;
                let deleted: usize = results.iter().map(|r| r.deleted.len()).sum();
                self.images.pruned = results;
                Ok(Done::Ran(BTreeMap::from([(
                    "deleted".to_owned(),
                    deleted.to_string(),
                )])))
            }
            action if deploy::handles(action) => {
                let context = deploy::RunContext {
                    session: self.session,
                    settings: &self.settings,
                    digests: &self.digests,
                    preview: self.preview,
                };
                self.deploy
                    .run(&context, (job.id.clone(), index), step)
                    .await
            }
            Action::AcquireLock { namespace, lease } => {
                let context = deploy::RunContext {
                    session: self.session,
                    settings: &self.settings,
                    digests: &self.digests,
                    preview: self.preview,
                };
                let client = self.deploy.client(&context).await?;
                let defaults = crate::kube::lock::LockSettings::default();
                let claim = self
                    .settings
                    .deploy
                    .lock_lease
                    .unwrap_or(defaults.lease_duration);
                let settings = crate::kube::lock::LockSettings {
                    wait: self
                        .settings
                        .deploy
                        .lock_timeout
                        .unwrap_or(DEFAULT_LOCK_TIMEOUT),
                    lease_duration: claim,
                    renew_every: claim / 3,
                    poll: defaults.poll.min(claim / 4),
                };
                let identity =
                    crate::kube::lock::Identity::of_this_process(&|name| self.session.env(name));
                self.locks
                    .acquire(
                        &client,
                        (namespace, lease),
                        identity,
                        &settings,
                        self.preview,
                    )
                    .await
            }
            Action::ReleaseLock { namespace, lease } => {
                self.locks.release((namespace, lease), self.preview).await
            }

            other => {
                let _ = plan;
                anyhow::bail!("{} was not prepared", kind(other))
            }
        }
    }
}

/// A job with steps this version cannot carry out: named with the steps and what to do.
fn unsupported_job(job: &Job, steps: &[&str]) -> crate::error::InputProblem {
    let what = if job.steps.iter().any(|s| {
        matches!(
            s.action,
            Action::SwitchTraffic { .. } | Action::ReadLiveColor { .. }
        )
    }) {
        "blue-green deploys and rollbacks are"
    } else {
        "these steps are"
    };
    crate::error::InputProblem::new(
        &format!("job `{}`", job.id),
        format!(
            "{what} not supported by this version of jisu-deploy (steps {}); nothing was changed. Run the other jobs with --job, or deploy this environment with `strategy: rolling`",
            steps.join(", ")
        ),
    )
}

/// `plan` narrowed to the jobs `only` names (all of them when it names none), as a dry run
/// of `run --job` shows it; unknown ids are bad input, as in a real run.
pub fn only_jobs(plan: &Plan, only: &[String]) -> Result<Plan, InputError> {
    let selected = select(plan, only)?;
    let mut narrowed = plan.clone();
    narrowed
        .jobs
        .retain(|job| selected.contains(job.id.as_str()));
    Ok(narrowed)
}

/// The jobs a run considers: all, or those `only` names (unknown ids are bad input).
fn select<'p>(plan: &'p Plan, only: &[String]) -> Result<BTreeSet<&'p str>, InputError> {
    let all: BTreeSet<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
    if only.is_empty() {
        return Ok(all);
    }
    let unknown: Vec<&String> = only
        .iter()
        .filter(|id| !all.contains(id.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(InputError::new(
            "--job",
            None,
            format!(
                "{} not a job of this event's plan; it has: {}",
                unknown
                    .iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                all.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(all
        .into_iter()
        .filter(|id| only.iter().any(|o| o == id))
        .collect())
}

fn skipped_job(job: &Job, status: Status, reason: &str) -> JobReport {
    JobReport {
        id: job.id.clone(),
        environment: job.environment.clone(),
        status,
        reason: Some(reason.to_owned()),
        started: None,
        duration_ms: None,
        steps: job
            .steps
            .iter()
            .map(|s| StepReport {
                id: s.id.clone(),
                kind: kind(&s.action),
                status,
                reason: Some(reason.to_owned()),
                started: None,
                duration_ms: None,
                outputs: BTreeMap::new(),
                error: None,
                failure: None,
                findings: None,
            })
            .collect(),
    }
}

/// The action's kind as the plan's JSON names it (`run_command`, `apply`, ...).
pub fn kind(action: &Action) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// The commit a deploy in this plan ships: the promoted one, else the event's.
fn deployed_version(plan: &Plan) -> String {
    match &plan.context.event {
        Event::WorkflowDispatch {
            request: DispatchRequest::Promote { sha, .. },
            ..
        } => sha.clone(),
        _ => plan.context.sha.clone().unwrap_or_default(),
    }
}

/// The `app.kubernetes.io/part-of` label where a manifest sets none: the application, i.e.
/// the repository's name, else the image repository's (or owner's) last path segment.
fn part_of(plan: &Plan, pipeline: &crate::config::Pipeline) -> String {
    let images = &pipeline.images;
    let from_images = images
        .repository
        .as_deref()
        .or(images.owner.as_deref())
        .unwrap_or_default();
    plan.context
        .repository
        .as_deref()
        .unwrap_or(from_images)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
