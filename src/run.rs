//! Runs a parsed command line: loads inputs once, validates them, then does the work.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{Cli, Command, EventArgs, ImageCommand, OutputFormat, PlanArgs, TagsArgs};
use crate::config::context::{ContextSources, RunContext};
use crate::config::{self, Checkout, DEFAULT_PIPELINE_PATH, Pipeline};
use crate::error::InputError;
use crate::github::actions::Runner;
use crate::images::tags;
use crate::plan::{self, render};
use crate::report::summary;

/// Runs `cli`, printing to stdout; errors carry what the exit code needs.
pub fn run(cli: &Cli, runner: &Runner) -> Result<()> {
    match &cli.command {
        Command::Plan(args) => plan(cli, args, runner),
        Command::Image(ImageCommand::Tags(args)) => image_tags(cli, args),
        Command::Image(ImageCommand::Retag(args)) => image_retag(args, runner),
        Command::Image(ImageCommand::Build(args)) => image_build(cli, args, runner),
        Command::Image(ImageCommand::Prune(args)) => image_prune(cli, args, runner),
        Command::Promote(args) => promote(cli, args, runner),
        Command::Deploy(args) => crate::kube::deploy::run(cli, args, runner),
    }
}

/// The async runtime for one command: a single thread is enough for its sequential I/O.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The pipeline file's path: `--config`, else the default inside the workspace.
fn pipeline_path(cli: &Cli) -> PathBuf {
    match &cli.config {
        Some(path) => path.clone(),
        None => cli.workspace.join(DEFAULT_PIPELINE_PATH),
    }
}

fn load_inputs(cli: &Cli, event: &EventArgs) -> Result<(Pipeline, RunContext, String), InputError> {
    let path = pipeline_path(cli);
    let pipeline = config::load(&path, &Checkout::new(&cli.workspace))?;
    let context = RunContext::resolve(&context_sources(event)?)?;
    Ok((pipeline, context, path.display().to_string()))
}

/// Gathers flags and runner variables; reading the payload is the only I/O.
fn context_sources(args: &EventArgs) -> Result<ContextSources, InputError> {
    let event_payload = match &args.event_path {
        Some(path) => Some(read_input(path, "the event payload")?),
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok(ContextSources {
        event_name: args.event_name.clone(),
        event_path: args.event_path.as_ref().map(|p| p.display().to_string()),
        event_payload,
        git_ref: args.git_ref.clone(),
        sha_flag: args.sha.clone(),
        sha_env: env("GITHUB_SHA"),
        inputs: args.inputs.iter().cloned().collect(),
        repository: env("GITHUB_REPOSITORY"),
    })
}

/// Reads an input file named by a flag; failing is bad input that names `what` it held.
fn read_input(path: &Path, what: &str) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|err| {
        InputError::new(
            path.display().to_string(),
            None,
            format!("cannot read {what}: {err}"),
        )
    })
}

fn plan(cli: &Cli, args: &PlanArgs, runner: &Runner) -> Result<()> {
    let (pipeline, context, source) = load_inputs(cli, &args.event)?;
    // ACT=true is a local act run: dry run unless the flag or input says otherwise.
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let plan = plan::build(&pipeline, &context, dry_run, &source)?;
    // In Actions the plan folds into one log group titled by its headline.
    runner.group(&format!("jisu-deploy plan: {}", render::headline(&plan)));
    match args.output {
        OutputFormat::Text => print!("{}", render::text(&plan)),
        OutputFormat::Json => print!("{}", render::json(&plan)),
    }
    runner.end_group();
    let running: Vec<&str> = plan
        .jobs
        .iter()
        .filter(|j| j.decision.runs)
        .map(|j| j.id.as_str())
        .collect();
    let environments: Vec<&str> = plan
        .jobs
        .iter()
        .filter(|j| j.decision.runs)
        .filter_map(|j| j.environment.as_deref())
        .collect();
    runner.set_outputs(&[
        ("jobs", running.join(",")),
        (
            "environment",
            environments.first().copied().unwrap_or_default().to_owned(),
        ),
        ("dry-run", dry_run.to_string()),
        ("plan", render::json(&plan)),
    ])?;
    runner.append_summary(&summary::plan_markdown(&plan))?;
    Ok(())
}

fn image_retag(args: &crate::images::credentials::RetagArgs, runner: &Runner) -> Result<()> {
    // A password handed over in a variable may not be a registered secret (a step output,
    // say): mask it before anything could print it.
    for var in crate::images::credentials::PASSWORD_ENV {
        if let Ok(secret) = std::env::var(var) {
            runner.mask(&secret);
        }
    }
    let runtime = runtime()?;
    let outcome = runtime.block_on(crate::images::credentials::run_retag(args))?;
    println!("{outcome}");
    runner.set_outputs(&[("digest", outcome.digest.to_string())])?;
    Ok(())
}

fn image_tags(cli: &Cli, args: &TagsArgs) -> Result<()> {
    let (pipeline, context, _) = load_inputs(cli, &args.event)?;
    let images: Vec<tags::ImageTags> = pipeline
        .components
        .keys()
        .filter_map(|component| tags::compute(&pipeline, &context, component))
        .collect();
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&images)?),
        OutputFormat::Text if images.is_empty() => println!("this event builds no images"),
        OutputFormat::Text => {
            for image in &images {
                let verb = if image.push { "push" } else { "build only" };
                println!("{} ({verb}):", image.component);
                for reference in image.references() {
                    println!("  {reference}");
                }
            }
        }
    }
    Ok(())
}

fn image_build(cli: &Cli, args: &crate::images::build::BuildArgs, runner: &Runner) -> Result<()> {
    use crate::images::build_command::{build_specs, digests_output, run_build};
    let (pipeline, context, source) = load_inputs(cli, &args.event)?;
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let plan = plan::build(&pipeline, &context, dry_run, &source)?;
    let created = jiff::Timestamp::now()
        .round(jiff::Unit::Second)?
        .to_string();
    let specs = build_specs(&plan, &args.components, args.push, &created)?;
    if specs.is_empty() {
        println!("this event builds no images");
        return Ok(());
    }
    let runtime = runtime()?;
    // The flag wins over the pipeline file's cache repository.
    let mut args = args.clone();
    args.cache_repository = args
        .cache_repository
        .or_else(|| pipeline.images.cache_reference());
    let built = runtime.block_on(run_build(&specs, &cli.workspace, &args, dry_run))?;
    for image in &built {
        match image.pinned() {
            Some(pinned) => println!("{}: {pinned}", image.component),
            None => println!(
                "{}: built {} (not pushed)",
                image.component, image.reference
            ),
        }
    }
    let digests = digests_output(&built);
    runner.set_outputs(&[("digests", serde_json::to_string(&digests)?)])?;
    Ok(())
}

fn promote(cli: &Cli, args: &crate::images::promote::PromoteArgs, runner: &Runner) -> Result<()> {
    let path = pipeline_path(cli);
    let pipeline = config::load(&path, &Checkout::new(&cli.workspace))?;
    let sources = ContextSources {
        event_name: Some("workflow_dispatch".to_owned()),
        event_path: None,
        event_payload: None,
        git_ref: Some(format!("refs/heads/{}", pipeline.default_branch)),
        sha_flag: None,
        sha_env: None,
        inputs: [
            ("operation", "promote"),
            ("environment", args.environment.as_str()),
            ("sha", args.sha.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        repository: std::env::var("GITHUB_REPOSITORY")
            .ok()
            .filter(|v| !v.is_empty()),
    };
    let context = RunContext::resolve(&sources)?;
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let plan = plan::build(&pipeline, &context, dry_run, &path.display().to_string())?;
    let runtime = runtime()?;
    let outcome = runtime.block_on(crate::images::promote::run_promote(&plan, args, dry_run))?;
    print!("{outcome}");
    runner.set_outputs(&[("digests", serde_json::to_string(&outcome.digests())?)])?;
    Ok(())
}

fn image_prune(
    cli: &Cli,
    args: &crate::images::prune_command::PruneArgs,
    runner: &Runner,
) -> Result<()> {
    use crate::images::prune_command::{GivenDigests, PruneInputs, run_prune};
    let path = pipeline_path(cli);
    let pipeline = config::load(&path, &Checkout::new(&cli.workspace))?;
    let file = match &args.keep_digests_file {
        Some(file) => Some((
            file.display().to_string(),
            read_input(file, "the deployed digests")?,
        )),
        None => None,
    };
    let mut deployed = GivenDigests::parse(
        &args.keep_digests,
        file.as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    )?;
    let github_token = std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(crate::oci::Secret::new);
    if let Some(token) = &github_token {
        runner.mask(token.expose());
    }
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let runtime = runtime()?;
    if !args.no_cluster {
        // Fail closed: pruning without knowing what runs could delete a live image.
        let namespaces: Vec<String> = pipeline
            .environments
            .values()
            .map(|e| e.namespace.clone())
            .collect();
        let in_cluster = runtime.block_on(async {
            let env = |name: &str| std::env::var(name).ok();
            let cluster = crate::kube::client::resolve(
                args.kubeconfig.as_deref(),
                args.context.as_deref(),
                &env,
                runner,
            )
            .await?;
            let client = crate::kube::client::connect(cluster).await?;
            crate::kube::deployed::read(&client, &namespaces).await
        })?;
        tracing::info!(
            "{} digest(s) deployed in {}",
            in_cluster.len(),
            namespaces.join(", ")
        );
        deployed.0.extend(in_cluster);
    }
    let inputs = PruneInputs {
        args,
        deployed: &deployed,
        github_token,
        dry_run,
        now: jiff::Timestamp::now(),
    };
    let results = runtime.block_on(run_prune(&pipeline, inputs))?;
    let mut deleted = Vec::new();
    for repository in &results {
        println!("{}:", repository.repository);
        for verdict in &repository.verdicts {
            let verdict = verdict.to_string();
            match verdict.strip_prefix("delete ") {
                Some(rest) if dry_run => println!("  would delete {rest}"),
                _ => println!("  {verdict}"),
            }
        }
        deleted.extend(
            repository
                .deleted
                .iter()
                .map(|d| format!("{}@{d}", repository.repository)),
        );
    }
    runner.set_outputs(&[("deleted", serde_json::to_string(&deleted)?)])?;
    Ok(())
}
