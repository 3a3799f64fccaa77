//! `jisu-deploy deploy --environment NAME`: a rolling deploy of one environment.
//!
//! The same stages as the plan's `deploy-<env>` job (apply, wait, checks, command), in
//! two halves: everything that can be checked without touching the cluster (pipeline file,
//! environment, image flags, kubeconfig, manifests, image digests) is checked first and
//! fails as bad input (exit 2) with nothing applied; then apply, wait, check, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tracing::{error, info};

use super::apply::{self, ApplyOptions};
use super::checks::{self, CheckResult};
use super::client;
use super::render::{self, ComponentImage, ManifestFile, RenderInput, Rendered};
use super::watch;
use crate::cli::Cli;
use crate::config::duration::HumanDuration;
use crate::config::pipeline::{Command, Environment, Strategy};
use crate::config::{self, Checkout, DEFAULT_PIPELINE_PATH, Pipeline};
use crate::error::{InputError, InputProblem};
use crate::github::actions::Runner;
use crate::registry::command::resolve_credentials;
use crate::registry::{ClientOptions, Reference, RegistryClient, RegistryError, tags};

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
    files: Vec<ManifestFile>,
    flagged: BTreeMap<String, Reference>,
    workspace: PathBuf,
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
    let images = resolve_images(&prepared, args).await?;
    let objects = render_all(&prepared, &images)?;
    let dry_run = cli.dry_run().unwrap_or(runner.in_act);
    let kube = client::connect(cluster).await?;

    let env = &prepared.env;
    let options = ApplyOptions {
        force_conflicts: args.force_conflicts,
        dry_run,
        prune: args.prune,
    };
    let report = apply::apply(&kube, &env.namespace, &objects, options).await?;
    if dry_run {
        println!(
            "dry run: server-side dry run of {} object(s) in namespace {}; nothing was changed",
            objects.len(),
            env.namespace
        );
        for outcome in &report.objects {
            println!("{outcome}");
        }
        for pruned in &report.pruned {
            println!("- {pruned} (would be pruned)");
        }
        return Ok(());
    }

    let outcome = execute(&kube, &prepared, &objects, args).await;
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
        ("environment-url", env.url.clone()),
        ("result", result.to_owned()),
    ])?;
    runner.append_summary(&summary(&prepared, &objects, &report, failure.as_deref()))?;
    outcome
}

/// Wait, checks, command: the part that can fail after objects were applied.
async fn execute(
    kube: &::kube::Client,
    prepared: &Prepared,
    objects: &[Rendered],
    args: &DeployArgs,
) -> anyhow::Result<()> {
    let env = &prepared.env;
    let workloads: Vec<String> = objects
        .iter()
        .filter(|o| o.kind == "Deployment")
        .map(|o| o.name.clone())
        .collect();
    let timeout = args.timeout.unwrap_or(env.rollout_timeout).0;
    watch::wait_for_rollouts(kube, &env.namespace, &workloads, timeout).await?;
    if !env.checks.is_empty() {
        let results = checks::run_http_checks(&env.url, &env.checks, args.check_interval.0).await?;
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
    if let Some(command) = &env.command {
        run_command(
            command,
            &env.url,
            args.command_timeout.0,
            &prepared.workspace,
        )
        .await?;
    }
    Ok(())
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
            problems.push(problem(
                "--sha",
                format!("`{sha}` is not a commit sha (7 to 40 hex characters)"),
            ));
            String::new()
        }
        None => {
            problems.push(problem("--sha", "the commit being deployed is needed for the version label: pass --sha (GITHUB_SHA in Actions)".to_owned()));
            String::new()
        }
    };
    let mut flagged = BTreeMap::new();
    for (component, text) in &args.images {
        if !pipeline.components.contains_key(component) {
            let known: Vec<&str> = pipeline.components.keys().map(String::as_str).collect();
            problems.push(problem(
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
                    problems.push(problem("--image", format!("`{component}` is given twice")));
                }
            }
            Ok(reference) => problems.push(problem(
                "--image",
                format!(
                    "{component}={text}: `{}` is a mutable tag; give the digest (`{}@sha256:...`)",
                    reference.tag().unwrap_or("latest"),
                    reference.name()
                ),
            )),
            Err(err) => problems.push(problem("--image", format!("{component}={text}: {err}"))),
        }
    }
    if sha.is_empty() && flagged.len() < pipeline.components.len() && problems.is_empty() {
        problems.push(problem("--image", "every component needs an image pinned by digest: pass --image COMPONENT=REF@sha256:DIGEST or --sha".to_owned()));
    }
    let files = match read_manifests(&cli.workspace, &env.manifests) {
        Ok(files) => files,
        Err(problem) => {
            problems.push(problem);
            Vec::new()
        }
    };
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    Ok(Prepared {
        env_name: args.environment.clone(),
        env,
        pipeline,
        sha,
        files,
        flagged,
        workspace: cli.workspace.clone(),
    })
}

fn problem(source: &str, message: String) -> InputProblem {
    InputProblem {
        source: source.to_owned(),
        position: None,
        field: None,
        message,
    }
}

fn is_commit_sha(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// The `.yaml`/`.yml` files of the environment's manifest folder, in name order (as
/// `kubectl apply -f DIR/` reads them).
fn read_manifests(workspace: &Path, folder: &str) -> Result<Vec<ManifestFile>, InputProblem> {
    let dir = workspace.join(folder);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        problem(
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
                .map_err(|e| problem(&source, format!("cannot read: {e}")))
        })
        .collect()
}

/// Every component's pinned image: from --image, else its sha tag resolved on the
/// registry. A sha tag that does not exist is bad input (wrong sha, or the build did not
/// push), reported for all components at once.
async fn resolve_images(
    prepared: &Prepared,
    args: &DeployArgs,
) -> anyhow::Result<BTreeMap<String, Reference>> {
    let mut images = prepared.flagged.clone();
    let mut clients: BTreeMap<String, RegistryClient> = BTreeMap::new();
    let mut missing = Vec::new();
    for component in prepared.pipeline.components.keys() {
        if images.contains_key(component) {
            continue;
        }
        let text = format!(
            "{}:{}",
            tags::repository(&prepared.pipeline, component),
            tags::sha_tag(&prepared.pipeline, component, &prepared.sha)
        );
        let reference =
            Reference::parse(&text).with_context(|| format!("the sha tag of {component}"))?;
        let registry = reference.registry().to_owned();
        if !clients.contains_key(&registry) {
            let (credentials, _) =
                resolve_credentials(args.registry_username.as_deref(), &registry, |k| {
                    std::env::var(k).ok()
                })
                .with_context(|| format!("credentials for {registry}"))?;
            let options = ClientOptions {
                allow_http: args.registry_allow_http,
                credentials,
                ..ClientOptions::default()
            };
            clients.insert(registry.clone(), RegistryClient::new(&registry, options)?);
        }
        let client = &clients[&registry];
        match client.get_manifest(&reference).await {
            Ok(manifest) => {
                info!("{component}: {reference} is {}", manifest.digest);
                images.insert(component.clone(), reference.with_digest(manifest.digest));
            }
            Err(RegistryError::ManifestNotFound { .. }) => missing.push(problem(
                "--sha",
                format!("{component}: no image {reference} on the registry; was commit {} built and pushed?", prepared.sha),
            )),
            Err(error) => return Err(anyhow::Error::from(error).context(format!("resolving {reference} to a digest"))),
        }
    }
    if !missing.is_empty() {
        return Err(InputError { problems: missing }.into());
    }
    Ok(images)
}

fn render_all(
    prepared: &Prepared,
    images: &BTreeMap<String, Reference>,
) -> Result<Vec<Rendered>, InputError> {
    let pipeline = &prepared.pipeline;
    let components = images
        .iter()
        .map(|(component, pinned)| {
            let workload = pipeline.components[component]
                .workload_name(component)
                .to_owned();
            // The placeholder the manifests name (k8s/README.md): repository:component.
            let placeholder = format!("{}:{component}", tags::repository(pipeline, component));
            (
                component.clone(),
                ComponentImage {
                    placeholder,
                    pinned: pinned.clone(),
                    workload,
                },
            )
        })
        .collect();
    let part_of = std::env::var("GITHUB_REPOSITORY")
        .ok()
        .and_then(|r| r.rsplit('/').next().map(str::to_owned))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| prepared.env_name.clone());
    let input = RenderInput {
        namespace: prepared.env.namespace.clone(),
        version: prepared.sha.clone(),
        part_of,
        images: components,
        replicas: prepared.env.replicas.clone(),
    };
    render::render(&prepared.files, &input).map_err(|problems| InputError {
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

/// Runs the environment's command (e.g. integration tests) with `JISU_ENV_URL`, its
/// output on our stderr so stdout stays the report, under a deadline.
async fn run_command(
    command: &Command,
    url: &str,
    timeout: Duration,
    workspace: &Path,
) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    let Some((program, arguments)) = command.run.split_first() else {
        anyhow::bail!("command `{}` has an empty `run`", command.name);
    };
    let stdout = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .current_dir(workspace.join(&command.workdir))
        .envs(&command.env)
        .env("JISU_ENV_URL", url)
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

fn summary(
    prepared: &Prepared,
    objects: &[Rendered],
    report: &apply::Report,
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
    for (object, outcome) in objects.iter().zip(&report.objects) {
        let change = match &outcome.change {
            super::diff::Change::Create => "created".to_owned(),
            super::diff::Change::Unchanged => "unchanged".to_owned(),
            super::diff::Change::Update(lines) => format!("{} field(s) changed", lines.len()),
        };
        text.push_str(&format!("| `{}` | {change} |\n", object.display_name()));
    }
    for pruned in &report.pruned {
        text.push_str(&format!("| `{pruned}` | pruned |\n"));
    }
    if let Some(failure) = failure {
        text.push_str(&format!("\n```\n{failure}\n```\n"));
    }
    text
}
