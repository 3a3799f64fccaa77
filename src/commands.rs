//! Each command is a view of the plan and the executor: it opens the one session, builds
//! the plan for its event, and runs the jobs it stands for (`deploy` is the plan's
//! `deploy-<env>` job, `image build` its `build` job, `promote` its `promote` job,
//! `image prune` its `prune` job). None of them assembles steps of its own.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::cli::flags::RegistryFlags;
use crate::cli::requests::{check_digest_components, settings};
use crate::cli::{
    BuildArgs, Cli, Command, DeployArgs, ImageCommand, OutputFormat, PlanArgs, PromoteArgs,
    PruneArgs, RestoreArgs, RetagArgs, RollbackArgs, RunArgs, StatusArgs, TagsArgs,
};
use crate::config::context::{ContextSources, RunContext};
use crate::error::{InputError, RunFailed};
use crate::execute::report::RunReport;
use crate::execute::{Executor, Settings};
use crate::github::actions::Runner;
use crate::images::credentials::{RegistryAccess, retag_images};
use crate::images::tags;
use crate::oci::RetagOptions;
use crate::output;
use crate::plan::render::{self, View};
use crate::plan::{self, Plan};
use crate::report::summary;
use crate::session::Session;

/// Runs `cli`, printing results to stdout; errors carry what the exit code needs.
pub fn run(cli: &Cli, runner: Runner) -> Result<()> {
    let kubeconfig = match &cli.command {
        Command::Run(args) => args.cluster.kubeconfig.as_deref(),
        Command::Deploy(args) => args.cluster.kubeconfig.as_deref(),
        Command::Rollback(args) | Command::Switch(args) | Command::Cleanup(args) => {
            args.cluster.kubeconfig.as_deref()
        }
        Command::Status(args) => args.cluster.kubeconfig.as_deref(),
        Command::Image(ImageCommand::Prune(args)) => args.cluster.kubeconfig.as_deref(),
        _ => None,
    };
    let session = Session::open(cli.session_request(kubeconfig), runner)?;
    match &cli.command {
        Command::Plan(args) => plan_command(&session, args),
        Command::Run(args) => run_command(&session, args),
        Command::Deploy(args) => deploy(&session, args),
        Command::Promote(args) => promote(&session, args),
        Command::Rollback(args) => dispatch_operation(&session, "rollback", args),
        Command::Switch(args) => dispatch_operation(&session, "switch", args),
        Command::Cleanup(args) => cleanup(&session, args),
        Command::Status(args) => status(&session, args),
        Command::Backup => backup(&session),
        Command::Restore(args) => restore(&session, args),
        Command::Image(ImageCommand::Tags(args)) => image_tags(&session, args),
        Command::Image(ImageCommand::Retag(args)) => image_retag(&session, args),
        Command::Image(ImageCommand::Build(args)) => image_build(&session, args),
        Command::Image(ImageCommand::Prune(args)) => image_prune(&session, args),
    }
}

/// The plan for a run context, with the session's pipeline and dry-run setting.
fn plan_for(session: &Session, sources: &ContextSources) -> Result<Plan, InputError> {
    let pipeline = session.pipeline()?;
    let context = RunContext::resolve(sources)?;
    plan::build(
        pipeline,
        &context,
        session.dry_run,
        &session.config_source(),
    )
}

/// A context the command makes up (deploy, promote, prune), from runner variables where
/// they help.
fn synthetic(session: &Session, event: &str, git_ref: String) -> ContextSources {
    ContextSources {
        event_name: Some(event.to_owned()),
        git_ref: Some(git_ref),
        repository: session.env("GITHUB_REPOSITORY"),
        ..ContextSources::default()
    }
}

fn plan_command(session: &Session, args: &PlanArgs) -> Result<()> {
    let plan = plan_for(session, &args.event.sources()?)?;
    let runner = &session.runner;
    // In Actions the plan folds into one log group titled by its headline.
    runner.group(&format!(
        "jisu-deploy plan: {}",
        render::headline(&plan, View::Plan)
    ));
    match args.output {
        OutputFormat::Text => output::out(&render::text(&plan, View::Plan)),
        OutputFormat::Json => output::out(&render::json(&plan)),
    }
    runner.end_group();
    plan_outputs(session, &plan)?;
    runner.append_summary(&summary::plan_markdown(&plan, View::Plan))?;
    Ok(())
}

fn plan_outputs(session: &Session, plan: &Plan) -> Result<()> {
    let running: Vec<&str> = plan
        .jobs
        .iter()
        .filter(|j| j.decision.runs)
        .map(|j| j.id.as_str())
        .collect();
    let environment = plan
        .jobs
        .iter()
        .filter(|j| j.decision.runs)
        .find_map(|j| j.environment.clone())
        .unwrap_or_default();
    let matrix = crate::plan::matrix::by_kind(plan, session.pipeline()?);
    session.runner.set_outputs(&[
        ("jobs", running.join(",")),
        ("matrix", serde_json::to_string(&matrix)?),
        ("environment", environment),
        ("dry-run", plan.dry_run.to_string()),
        ("plan", render::json(plan)),
    ])
}

fn run_command(session: &Session, args: &RunArgs) -> Result<()> {
    let plan = plan_for(session, &args.event.sources()?)?;
    let given = args.digests.parse()?;
    check_digest_components(session.pipeline()?, &given)?;
    let jobs: Vec<String> = args
        .jobs
        .iter()
        .filter(|j| !j.is_empty())
        .cloned()
        .collect();
    if session.dry_run {
        // A dry run prints the very plan a real run would carry out (only the jobs --job
        // names, which must be jobs of the plan), and contacts nothing.
        let plan = crate::execute::only_jobs(&plan, &jobs)?;
        session.runner.group(&format!(
            "jisu-deploy run (dry run): {}",
            render::headline(&plan, View::DryRun)
        ));
        output::out(&render::text(&plan, View::DryRun));
        session.runner.end_group();
        plan_outputs(session, &plan)?;
        // Nothing was pushed, so there is nothing for a later job to pin.
        session
            .runner
            .set_outputs(&[("digests", "{}".to_owned())])?;
        session
            .runner
            .append_summary(&summary::plan_markdown(&plan, View::DryRun))?;
        return Ok(());
    }
    let settings = settings(
        &args.registry,
        Some(&args.cluster),
        Some(&args.build),
        Some(&args.deploy),
        Some(&args.prune),
    );
    let (report, _) = execute(session, &plan, &jobs, settings, given, false)?;
    finish(session, &plan, &report)
}

/// Prepares and runs `jobs` of `plan` on the session's runtime.
fn execute<'s>(
    session: &'s Session,
    plan: &Plan,
    jobs: &[String],
    settings: Settings,
    given: BTreeMap<String, String>,
    preview: bool,
) -> Result<(RunReport, Executor<'s>)> {
    let mut executor = Executor::new(session, settings, preview);
    executor.given_digests(given);
    let report = session.block_on(executor.execute(plan, jobs))?;
    Ok((report, executor))
}

/// Prints the report, writes the outputs and the job summary, and fails the process when
/// the run failed.
fn finish(session: &Session, plan: &Plan, report: &RunReport) -> Result<()> {
    output::out(&summary::run_text(report));
    let url = report.environment_url.clone().unwrap_or_default();
    let result = if report.succeeded() {
        "success"
    } else {
        "failure"
    };
    session.runner.set_outputs(&[
        ("report", report.json()),
        ("digests", serde_json::to_string(&report.digests)?),
        ("environment-url", url),
        ("result", result.to_owned()),
    ])?;
    session
        .runner
        .append_summary(&summary::run_markdown(report, Some(plan)))?;
    failed(report)
}

/// `Err` when the run failed: exit 2 when its first failure was bad input and nothing had
/// been changed before it, else exit 1.
fn failed(report: &RunReport) -> Result<()> {
    if report.succeeded() {
        return Ok(());
    }
    Err(RunFailed {
        message: report
            .first_failure()
            .unwrap_or_else(|| "a job was not reached".to_owned()),
        bad_input: report.failed_on_input_before_changes(),
    }
    .into())
}

/// The one job of `plan` a view stands for; a job the plan skips is bad input with the
/// plan's reason.
fn the_job(plan: &Plan, id: &str, what: &str) -> Result<(), InputError> {
    match plan.jobs.iter().find(|j| j.id == id) {
        Some(job) if job.decision.runs => Ok(()),
        Some(job) => Err(InputError::new(
            what,
            None,
            format!("nothing to do: {}", job.decision.reason),
        )),
        None => Err(InputError::new(
            what,
            None,
            format!("this event's plan has no `{id}` job"),
        )),
    }
}

/// The environment `name` of the pipeline file; an unknown one is named with the known.
fn environment<'s>(
    session: &'s Session,
    name: &str,
) -> Result<&'s crate::config::pipeline::Environment, InputError> {
    let pipeline = session.pipeline()?;
    pipeline.environments.get(name).ok_or_else(|| {
        let known: Vec<&str> = pipeline.environments.keys().map(String::as_str).collect();
        InputError::new(
            "--environment",
            None,
            format!(
                "no environment `{name}` in {}; it defines: {}",
                session.config_source(),
                known.join(", ")
            ),
        )
    })
}

fn deploy(session: &Session, args: &DeployArgs) -> Result<()> {
    let pipeline = session.pipeline()?;
    let env = environment(session, &args.environment)?;
    let sha = args
        .sha
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| session.env("GITHUB_SHA"))
        .ok_or_else(|| {
            InputError::new(
                "--sha",
                None,
                "the commit to deploy is needed for the version label and to find its images: pass --sha (GITHUB_SHA in Actions)",
            )
        })?;
    // A deploy of E is what a push of the commit to E's branch deploys.
    let mut sources = synthetic(session, "push", format!("refs/heads/{}", env.branch));
    sources.sha_flag = Some(sha.trim().to_owned());
    let plan = plan_for(session, &sources)?;
    let job = format!("deploy-{}", args.environment);
    the_job(&plan, &job, "--environment")?;
    let given = args.digests.parse()?;
    check_digest_components(pipeline, &given)?;
    let settings = settings(
        &args.registry,
        Some(&args.cluster),
        None,
        Some(&args.deploy),
        None,
    );
    let (report, executor) = execute(session, &plan, &[job], settings, given, session.dry_run)?;
    if session.dry_run {
        for (objects, applied) in executor.applied() {
            output::out_line(&format!(
                "dry run: server-side dry run of {} object(s) in namespace {}; nothing was changed",
                objects.len(),
                env.namespace
            ));
            for outcome in &applied.objects {
                output::out_line(&outcome.to_string());
            }
            for pruned in &applied.pruned {
                output::out_line(&format!("- {pruned} (would be pruned)"));
            }
        }
    }
    session
        .runner
        .set_outputs(&[("environment", args.environment.clone())])?;
    finish(session, &plan, &report)
}

fn promote(session: &Session, args: &PromoteArgs) -> Result<()> {
    let sources = dispatch(
        session,
        &[
            ("operation", "promote"),
            ("environment", args.environment.as_str()),
            ("sha", args.sha.as_str()),
        ],
    )?;
    let settings = settings(&args.registry, None, None, None, None);
    let (plan, report, executor) =
        one_job(session, &sources, "promote", "--environment", settings)?;
    if let Some(outcome) = &executor.images.promoted {
        output::out(&outcome.to_string());
    }
    session.runner.set_outputs(&[("report", report.json())])?;
    session
        .runner
        .set_outputs(&[("digests", serde_json::to_string(&report.digests)?)])?;
    session
        .runner
        .append_summary(&summary::run_markdown(&report, Some(&plan)))?;
    failed(&report)
}

/// `rollback` and `switch`: the `<operation>-<env>` job of a workflow_dispatch asking
/// for that operation.
fn dispatch_operation(session: &Session, operation: &str, args: &RollbackArgs) -> Result<()> {
    environment(session, &args.environment)?;
    let sources = dispatch(
        session,
        &[
            ("operation", operation),
            ("environment", args.environment.as_str()),
        ],
    )?;
    environment_job(session, &sources, operation, args)
}

/// A `workflow_dispatch` on the default branch with `inputs`, as the promote, rollback and
/// switch commands make it up.
fn dispatch(session: &Session, inputs: &[(&str, &str)]) -> Result<ContextSources> {
    let pipeline = session.pipeline()?;
    let mut sources = synthetic(
        session,
        "workflow_dispatch",
        format!("refs/heads/{}", pipeline.default_branch),
    );
    sources.inputs = inputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Ok(sources)
}

/// `cleanup`: the `cleanup-<env>` job of a scheduled run.
fn cleanup(session: &Session, args: &RollbackArgs) -> Result<()> {
    environment(session, &args.environment)?;
    let sources = synthetic(session, "schedule", String::new());
    environment_job(session, &sources, "cleanup", args)
}

/// Runs the `<kind>-<env>` job of the plan for `sources`.
fn environment_job(
    session: &Session,
    sources: &ContextSources,
    kind: &str,
    args: &RollbackArgs,
) -> Result<()> {
    let job = format!("{kind}-{}", args.environment);
    let settings = settings(
        &RegistryFlags::default(),
        Some(&args.cluster),
        None,
        Some(&args.deploy),
        None,
    );
    let (plan, report, _) = one_job(session, sources, &job, "--environment", settings)?;
    session
        .runner
        .set_outputs(&[("environment", args.environment.clone())])?;
    finish(session, &plan, &report)
}

/// `backup`: the plan's `backup` job, as a scheduled run has it.
fn backup(session: &Session) -> Result<()> {
    let sources = synthetic(session, "schedule", String::new());
    let settings = settings(&RegistryFlags::default(), None, None, None, None);
    let (plan, report, _) = one_job(session, &sources, "backup", "backup", settings)?;
    finish(session, &plan, &report)
}

/// `restore`: the drill, outside any plan.
fn restore(session: &Session, args: &RestoreArgs) -> Result<()> {
    use crate::backup::restore;
    use crate::execute::backup::{database, open_store};
    if let Some(id) = &args.backup
        && !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(InputError::new(
            "--backup",
            None,
            format!("`{id}` is not a backup id (letters, digits, `-`, `_`)"),
        )
        .into());
    }
    if let Some(into) = &args.into
        && (into.is_empty()
            || into.len() > 63
            || !into
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    {
        return Err(InputError::new(
            "--into",
            None,
            format!("`{into}` is not a database name this drill creates: 1-63 lowercase letters, digits or `_`"),
        )
        .into());
    }
    let (backup, store) = open_store(session)?;
    let db = database(session, backup);
    let work = match &args.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Work::Kept(dir.clone())
        }
        None => Work::Temporary(tempfile::tempdir()?),
    };
    let restored = session.block_on(async {
        let id = restore::choose(&store, args.backup.as_deref()).await?;
        let into = args.into.clone().unwrap_or_else(|| {
            let name = db.as_ref().map_or("restore", |db| db.name.as_str());
            format!("{name}_restore_{}", id.to_lowercase())
        });
        restore::drill(
            &store,
            &id,
            db.as_ref(),
            &into,
            work.path(),
            backup.timeout.0,
        )
        .await
    })?;
    output::out(&format!("restored backup {} from {store}", restored.id));
    if let Some((name, rows)) = &restored.database {
        let total: u64 = rows.values().sum();
        output::out(&format!(
            "postgres: database {name}: {} tables, {total} rows, every count equal to the manifest",
            rows.len()
        ));
    }
    if let Some(file) = &restored.redis_file {
        output::out(&format!("redis: {} passes redis-check-rdb", file.display()));
    }
    session
        .runner
        .set_outputs(&[("backup", restored.id.clone())])?;
    Ok(())
}

/// Where a restore's files go.
enum Work {
    Kept(std::path::PathBuf),
    Temporary(tempfile::TempDir),
}

impl Work {
    fn path(&self) -> &std::path::Path {
        match self {
            Work::Kept(dir) => dir,
            Work::Temporary(dir) => dir.path(),
        }
    }
}

/// Plans `sources` and runs its job `id` alone; `what` names the flag or command that
/// chose it, in errors.
fn one_job<'s>(
    session: &'s Session,
    sources: &ContextSources,
    id: &str,
    what: &str,
    settings: Settings,
) -> Result<(Plan, RunReport, Executor<'s>)> {
    let plan = plan_for(session, sources)?;
    the_job(&plan, id, what)?;
    let (report, executor) = execute(
        session,
        &plan,
        &[id.to_owned()],
        settings,
        BTreeMap::new(),
        session.dry_run,
    )?;
    Ok((plan, report, executor))
}

fn status(session: &Session, args: &StatusArgs) -> Result<()> {
    let pipeline = session.pipeline()?;
    let env = environment(session, &args.environment)?;
    let request = crate::kube::status::StatusRequest {
        environment: args.environment.clone(),
        namespace: env.namespace.clone(),
        blue_green: env.strategy == crate::config::pipeline::Strategy::BlueGreen,
        workloads: pipeline
            .components
            .iter()
            .map(|(name, c)| c.workload_name(name).to_owned())
            .collect(),
        lease: plan::lease(&args.environment),
    };
    let access = crate::kube::client::ClusterAccess::from(&args.cluster);
    let status = session.block_on(async {
        let (client, _) = access.connect().await?;
        let mut status = crate::kube::status::read(&client, &request).await?;
        // Built inside the runtime: octocrab's client needs one.
        let github = crate::github::deployments::from_env(|name| session.env(name))?;
        if let Some(github) = &github {
            status.record = github.last(&args.environment).await?;
        }
        anyhow::Ok(status)
    })?;
    match args.output {
        OutputFormat::Text => output::out(&crate::kube::status::text(&status)),
        OutputFormat::Json => output::out_line(&serde_json::to_string_pretty(&status)?),
    }
    session
        .runner
        .set_outputs(&[("status", serde_json::to_string(&status)?)])?;
    Ok(())
}

fn image_tags(session: &Session, args: &TagsArgs) -> Result<()> {
    let pipeline = session.pipeline()?;
    let context = RunContext::resolve(&args.event.sources()?)?;
    let images: Vec<tags::ImageTags> = pipeline
        .components
        .keys()
        .filter_map(|component| tags::compute(pipeline, &context, component))
        .collect();
    match args.output {
        OutputFormat::Json => output::out_line(&serde_json::to_string_pretty(&images)?),
        OutputFormat::Text if images.is_empty() => output::out_line("this event builds no images"),
        OutputFormat::Text => {
            for image in &images {
                let verb = if image.push { "push" } else { "build only" };
                output::out_line(&format!("{} ({verb}):", image.component));
                for reference in image.references() {
                    output::out_line(&format!("  {reference}"));
                }
            }
        }
    }
    Ok(())
}

fn image_retag(session: &Session, args: &RetagArgs) -> Result<()> {
    let access = RegistryAccess::from(&args.registry);
    let options = RetagOptions {
        allow_blob_copy: args.allow_blob_copy,
    };
    let outcome = session.block_on(retag_images(&args.src, &args.dst, &access, &options))?;
    output::out_line(&outcome.to_string());
    session
        .runner
        .set_outputs(&[("digest", outcome.digest.to_string())])?;
    Ok(())
}

fn image_build(session: &Session, args: &BuildArgs) -> Result<()> {
    let plan = plan_for(session, &args.event.sources()?)?;
    // Unknown components are bad input, named with the ones this event builds.
    crate::images::build_command::build_specs(&plan, &args.components, args.push, "")?;
    if !plan.jobs.iter().any(|j| j.id == "build" && j.decision.runs) {
        output::out_line("this event builds no images");
        return Ok(());
    }
    let mut settings = settings(&args.registry, None, Some(&args.build), None, None);
    settings.push = args.push;
    settings.components = args.components.clone();
    let jobs = ["build".to_owned()];
    let (report, executor) = execute(
        session,
        &plan,
        &jobs,
        settings,
        BTreeMap::new(),
        session.dry_run,
    )?;
    for line in &executor.images.built {
        output::out_line(line);
    }
    session
        .runner
        .set_outputs(&[("digests", serde_json::to_string(&report.digests)?)])?;
    session.runner.set_outputs(&[("report", report.json())])?;
    failed(&report)
}

fn image_prune(session: &Session, args: &PruneArgs) -> Result<()> {
    let plan = plan_for(session, &synthetic(session, "schedule", String::new()))?;
    the_job(&plan, "prune", "pipeline file")?;
    let settings = settings(
        &args.registry,
        Some(&args.cluster),
        None,
        None,
        Some(&args.prune),
    );
    let jobs = ["prune".to_owned()];
    let (report, executor) = execute(
        session,
        &plan,
        &jobs,
        settings,
        BTreeMap::new(),
        session.dry_run,
    )?;
    let mut deleted = Vec::new();
    for repository in &executor.images.pruned {
        output::out_line(&format!("{}:", repository.repository));
        for verdict in &repository.verdicts {
            let verdict = verdict.to_string();
            match verdict.strip_prefix("delete ") {
                Some(rest) if session.dry_run => {
                    output::out_line(&format!("  would delete {rest}"))
                }
                _ => output::out_line(&format!("  {verdict}")),
            }
        }
        deleted.extend(
            repository
                .deleted
                .iter()
                .map(|d| format!("{}@{d}", repository.repository)),
        );
    }
    session
        .runner
        .set_outputs(&[("deleted", serde_json::to_string(&deleted)?)])?;
    failed(&report)
}
