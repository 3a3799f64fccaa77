//! `jisu-deploy deploy --environment NAME`: a rolling deploy of one environment.
//!
//! It builds the steps of the plan's rolling `deploy-<env>` job (apply, wait, checks,
//! command) as `plan::Action`s and hands them to the executor (`execute.rs`): everything
//! that can be checked without touching the cluster (pipeline file, environment, image
//! flags, kubeconfig, image digests, manifests) is checked first and fails as bad input
//! (exit 2) with nothing applied; then the steps run in order and the result is reported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::info;

use super::apply::{ApplyOptions, Report};
use super::client;
use super::diff::Change;
use super::execute::{Executor, Settings};
use super::render::Rendered;
use crate::cli::Cli;
use crate::config::duration::HumanDuration;
use crate::config::pipeline::{Environment, Strategy};
use crate::config::{self, Checkout, DEFAULT_PIPELINE_PATH, Pipeline};
use crate::error::{InputError, InputProblem};
use crate::github::actions::Runner;
use crate::images::tags;
use crate::oci::Reference;
use crate::plan::{self, Action, ImageSource, Step};

/// `deploy` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The environment of the pipeline file to deploy (e.g. staging).
    #[arg(long, env = "INPUT_ENVIRONMENT", value_name = "NAME")]
    pub environment: String,

    /// A component's image, pinned by digest: COMPONENT=REGISTRY/REPO@sha256:DIGEST.
    /// Repeatable; components without one are resolved from --sha.
    #[arg(long = "image", value_name = "COMPONENT=REF@sha256:DIGEST", value_parser = parse_image_flag)]
    pub images: Vec<(String, String)>,

    /// The commit to deploy: labels every object (app.kubernetes.io/version) and, for
    /// components without --image, names the sha tag resolved to a digest on the registry.
    #[arg(long, env = "GITHUB_SHA", value_name = "SHA")]
    pub sha: Option<String>,

    /// Kubeconfig file. Otherwise the action input `kubeconfig` (its content, YAML or
    /// base64), KUBECONFIG, the in-cluster service account, or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context [default: its current-context].
    #[arg(long, env = "INPUT_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// Take over fields another field manager owns instead of failing on the conflict.
    #[arg(long)]
    pub force_conflicts: bool,

    /// Delete objects jisu-deploy applied earlier in the namespace that the manifests no
    /// longer contain.
    #[arg(long)]
    pub prune: bool,

    /// Wall-clock limit for the rollout [default: the environment's rollout_timeout].
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse)]
    pub timeout: Option<HumanDuration>,

    /// Limit for the environment's command (e.g. integration tests).
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse, default_value = "30m")]
    pub command_timeout: HumanDuration,

    /// Pause between attempts of an HTTP check.
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse, default_value = "2s")]
    pub check_interval: HumanDuration,

    /// Speak plain HTTP to the registry when resolving --sha (a local test registry).
    #[arg(long)]
    pub registry_allow_http: bool,

    /// Registry user for resolving --sha; the password is read from REGISTRY_PASSWORD, else
    /// GITHUB_TOKEN. Without it, ~/.docker/config.json, else anonymous.
    #[arg(long, env = "REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,
}

fn parse_image_flag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((component, reference))
            if !component.trim().is_empty() && !reference.trim().is_empty() =>
        {
            Ok((component.trim().to_owned(), reference.trim().to_owned()))
        }
        _ => Err(format!("`{text}` is not COMPONENT=REF@sha256:DIGEST")),
    }
}

/// Everything checked before the cluster is touched.
struct Prepared {
    env_name: String,
    env: Environment,
    pipeline: Pipeline,
    sha: String,
    flagged: BTreeMap<String, Reference>,
}

/// Runs `deploy`.
pub fn run(cli: &Cli, args: &DeployArgs, runner: &Runner) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cli, args, runner))
}

async fn run_async(cli: &Cli, args: &DeployArgs, runner: &Runner) -> anyhow::Result<()> {
    let prepared = prepare(cli, args)?;
    let env_lookup = |name: &str| std::env::var(name).ok();
    let cluster = client::resolve(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        &env_lookup,
        runner,
    )
    .await?;
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let steps = rolling_steps(&prepared, args);
    let mut executor = Executor::new(Settings {
        pipeline: prepared.pipeline.clone(),
        version: prepared.sha.clone(),
        part_of: part_of(&prepared.env_name),
        workspace: cli.workspace.clone(),
        registry_allow_http: args.registry_allow_http,
        registry_username: args.registry_username.clone(),
        apply: ApplyOptions {
            force_conflicts: args.force_conflicts,
            dry_run,
            prune: args.prune,
        },
        check_interval: args.check_interval.0,
        command_timeout: args.command_timeout.0,
    });
    executor.prepare(&steps).await?;
    let kube = client::connect(cluster).await?;

    if dry_run {
        // Only the apply runs, as a server-side dry run; the rest needs the real objects.
        for (index, step) in steps.iter().enumerate() {
            if matches!(step.action, Action::Apply { .. }) {
                executor.run(&kube, index, step).await?;
            }
        }
        for (objects, report) in &executor.applied {
            println!(
                "dry run: server-side dry run of {} object(s) in namespace {}; nothing was changed",
                objects.len(),
                prepared.env.namespace
            );
            for outcome in &report.objects {
                println!("{outcome}");
            }
            for pruned in &report.pruned {
                println!("- {pruned} (would be pruned)");
            }
        }
        return Ok(());
    }

    let mut outcome = Ok(());
    for (index, step) in steps.iter().enumerate() {
        info!("step `{}`: {}", step.id, step.decision.reason);
        outcome = executor.run(&kube, index, step).await;
        if outcome.is_err() {
            break;
        }
    }
    let (result, failure) = match &outcome {
        Ok(()) => ("success", None),
        Err(error) => ("failure", Some(format!("{error:#}"))),
    };
    println!(
        "deploy of {} to {}: {result}",
        short(&prepared.sha),
        prepared.env_name
    );
    runner.set_outputs(&[
        ("environment", prepared.env_name.clone()),
        ("environment-url", prepared.env.url.clone()),
        ("result", result.to_owned()),
    ])?;
    runner.append_summary(&summary(&prepared, &executor.applied, failure.as_deref()))?;
    outcome
}

/// The steps of the plan's rolling `deploy-<env>` job that this command runs: apply,
/// wait, checks, command. (The plan's lock and deployment-record steps belong to the
/// workflow run and later issues.)
fn rolling_steps(prepared: &Prepared, args: &DeployArgs) -> Vec<Step> {
    let env = &prepared.env;
    let pipeline = &prepared.pipeline;
    let images = pipeline
        .components
        .keys()
        .map(|component| {
            let reference = match prepared.flagged.get(component) {
                Some(pinned) => pinned.to_string(),
                None => format!(
                    "{}:{}",
                    tags::repository(pipeline, component),
                    tags::sha_tag(pipeline, component, &prepared.sha)
                ),
            };
            ImageSource::Build {
                component: component.clone(),
                reference,
            }
        })
        .collect();
    let timeout = args.timeout.unwrap_or(env.rollout_timeout);
    let mut steps = plan::rolling_steps(pipeline, &prepared.env_name, env, images, timeout);
    if let Some(command) = &env.command {
        steps.push(plan::command_step(command, env));
    }
    steps
}

/// The `part-of` label where a manifest sets none: the repository's name in Actions.
fn part_of(env_name: &str) -> String {
    std::env::var("GITHUB_REPOSITORY")
        .ok()
        .and_then(|r| r.rsplit('/').next().map(str::to_owned))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| env_name.to_owned())
}

fn prepare(cli: &Cli, args: &DeployArgs) -> Result<Prepared, InputError> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| cli.workspace.join(DEFAULT_PIPELINE_PATH));
    let pipeline = config::load(&path, &Checkout::new(&cli.workspace))?;
    let Some(env) = pipeline.environments.get(&args.environment).cloned() else {
        let known: Vec<&str> = pipeline.environments.keys().map(String::as_str).collect();
        return Err(InputError::new(
            "--environment",
            None,
            format!(
                "no environment `{}` in {}; it defines: {}",
                args.environment,
                path.display(),
                known.join(", ")
            ),
        ));
    };
    if env.strategy == Strategy::BlueGreen {
        return Err(InputError::new(
            path.display().to_string(),
            Some(&format!("environments.{}.strategy", args.environment)),
            "blue-green deploys are not supported by `deploy` yet (only `rolling`); nothing was applied. Deploy this environment with the blue-green pipeline once it exists, or use `strategy: rolling`",
        ));
    }
    let mut problems = Vec::new();
    let sha = match args.sha.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(sha) if is_commit_sha(sha) => sha.to_ascii_lowercase(),
        Some(sha) => {
            problems.push(InputProblem::new(
                "--sha",
                format!("`{sha}` is not a commit sha (7 to 40 hex characters)"),
            ));
            String::new()
        }
        None => {
            // Also what components without --image are resolved from, so it is always needed.
            problems.push(InputProblem::new("--sha", "the commit being deployed is needed for the version label and for components without --image: pass --sha (GITHUB_SHA in Actions)".to_owned()));
            String::new()
        }
    };
    let mut flagged = BTreeMap::new();
    for (component, text) in &args.images {
        if !pipeline.components.contains_key(component) {
            let known: Vec<&str> = pipeline.components.keys().map(String::as_str).collect();
            problems.push(InputProblem::new(
                "--image",
                format!(
                    "`{component}` is not a component of the pipeline; it has: {}",
                    known.join(", ")
                ),
            ));
            continue;
        }
        match Reference::parse(text) {
            Ok(reference) if reference.digest().is_some() => {
                if flagged.insert(component.clone(), reference).is_some() {
                    problems.push(InputProblem::new(
                        "--image",
                        format!("`{component}` is given twice"),
                    ));
                }
            }
            Ok(reference) => problems.push(InputProblem::new(
                "--image",
                format!(
                    "{component}={text}: `{}` is a mutable tag; give the digest (`{}@sha256:...`)",
                    reference.tag().unwrap_or("latest"),
                    reference.name()
                ),
            )),
            Err(err) => problems.push(InputProblem::new(
                "--image",
                format!("{component}={text}: {err}"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    Ok(Prepared {
        env_name: args.environment.clone(),
        env,
        pipeline,
        sha,
        flagged,
    })
}

fn is_commit_sha(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn summary(
    prepared: &Prepared,
    applied: &[(Vec<Rendered>, Report)],
    failure: Option<&str>,
) -> String {
    let mut text = format!(
        "## Deploy to {} ({})\n\n**{}** of `{}` to namespace `{}`\n\n",
        prepared.env_name,
        prepared.env.url,
        if failure.is_some() {
            "Failed"
        } else {
            "Succeeded"
        },
        prepared.sha,
        prepared.env.namespace
    );
    text.push_str("| object | change |\n|---|---|\n");
    for (objects, report) in applied {
        for (object, outcome) in objects.iter().zip(&report.objects) {
            let change = match &outcome.change {
                Change::Create => "created".to_owned(),
                Change::Unchanged => "unchanged".to_owned(),
                Change::Update(lines) => format!("{} field(s) changed", lines.len()),
            };
            text.push_str(&format!("| `{}` | {change} |\n", object.display_name()));
        }
        for pruned in &report.pruned {
            text.push_str(&format!("| `{pruned}` | pruned |\n"));
        }
    }
    if let Some(failure) = failure {
        text.push_str(&format!("\n```\n{failure}\n```\n"));
    }
    text
}
