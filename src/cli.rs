//! Command-line flags (clap definitions only). Each flag that an action input can set reads
//! `INPUT_<NAME>` as its fallback, so `action.yml` inputs and terminal flags are one thing.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs a repository's delivery pipeline: lint, test, build and push images, deploy to
/// staging, blue-green to production, promote and roll back, reported back to GitHub.
///
/// Exit codes: 0 success, 1 the pipeline failed, 2 bad usage or bad input (nothing changed).
#[derive(Debug, Parser)]
#[command(name = "jisu-deploy", version, max_term_width = 100)]
pub struct Cli {
    /// Pipeline file [default: .github/jisu-deploy.yml in the workspace].
    #[arg(long, global = true, env = "INPUT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Repository checkout that paths in the pipeline file are relative to.
    #[arg(
        long,
        global = true,
        env = "GITHUB_WORKSPACE",
        value_name = "DIR",
        default_value = "."
    )]
    pub workspace: PathBuf,

    /// Only print what would be done. Defaults to true under `act` (ACT=true), else false.
    #[arg(long, global = true, env = "INPUT_DRY-RUN", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = parse_dry_run)]
    pub dry_run: Option<DryRun>,

    /// Log detail: error, warn, info, debug or trace.
    #[arg(
        long,
        global = true,
        env = "JISU_LOG",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the jobs and steps the pipeline would run for an event, each with why it runs or
    /// is skipped. Touches nothing: no token, registry or cluster is needed.
    Plan(PlanArgs),
    /// Image operations.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Move an environment's tag onto the images built for a commit, all or none, and print
    /// the digests `deploy` pins (what `workflow_dispatch` promotion calls).
    Promote(crate::images::promote::PromoteArgs),
    /// Deploy an environment (rolling): server-side apply of its manifests with images
    /// pinned to digests, wait for every rollout, run its checks. Exit 1 if any fails.
    Deploy(crate::kube::deploy::DeployArgs),
}

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Print the tags each component's image gets for an event.
    Tags(TagsArgs),
    /// Point DST at the image SRC names, on the same registry: one manifest read and one
    /// write of the identical bytes (blobs mounted across repositories, never re-uploaded).
    /// Running it again changes nothing. Prints the digest; in Actions also the output `digest`.
    Retag(crate::images::credentials::RetagArgs),
    /// Build each component's image with the event's tags and labels; with --push, push it
    /// and print the pushed digest (output `digests`: component -> repository@digest).
    Build(crate::images::build::BuildArgs),
    /// Delete image versions the pipeline's `retention:` no longer keeps. Keeps environment
    /// tags, `latest`, other non-commit tags, the newest N commit tags per component, every
    /// deployed digest, attestations and children of kept indexes; fails closed. With
    /// --dry-run lists every version with keep/delete and why.
    Prune(crate::images::prune_command::PruneArgs),
}

/// Where the event comes from. Inside GitHub Actions the runner's variables fill these in.
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// Webhook payload of the event (JSON), e.g. a file from examples/jisu/events/.
    #[arg(long = "event", env = "GITHUB_EVENT_PATH", value_name = "FILE")]
    pub event_path: Option<PathBuf>,

    /// Event name: push, pull_request, workflow_dispatch or schedule. Guessed from the
    /// payload's shape when only --event is given.
    #[arg(long, env = "GITHUB_EVENT_NAME", value_name = "NAME")]
    pub event_name: Option<String>,

    /// Git ref, e.g. refs/heads/main, refs/tags/v1.2.3, refs/pull/12/merge.
    #[arg(long = "ref", env = "GITHUB_REF", value_name = "REF")]
    pub git_ref: Option<String>,

    /// Commit sha (40 hex characters). Wins over the payload; GITHUB_SHA is used only when
    /// the payload names no commit (for pull requests it is the merge commit).
    #[arg(long, value_name = "SHA")]
    pub sha: Option<String>,

    /// A workflow_dispatch input, e.g. --input operation=promote --input environment=production
    /// --input sha=SHA. Repeatable; wins over the payload's inputs.
    #[arg(long = "input", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable tree.
    Text,
    /// Stable JSON (schema documented in README.md).
    Json,
}

/// `plan` flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The event to plan for.
    #[command(flatten)]
    pub event: EventArgs,

    /// Output format.
    #[arg(long, short, env = "INPUT_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `image tags` flags.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The event to compute tags for.
    #[command(flatten)]
    pub event: EventArgs,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The `--dry-run` setting; `None` inside means "not set" (an empty action input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRun(pub Option<bool>);

impl Cli {
    /// The dry-run flag or input, if one was given with a value.
    pub fn dry_run(&self) -> Option<bool> {
        self.dry_run.and_then(|DryRun(value)| value)
    }
}

/// Accepts true/false (and yes/no, on/off, 1/0); an empty value, which is what an action
/// input left at its empty default looks like, means "not set".
fn parse_dry_run(text: &str) -> Result<DryRun, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(DryRun(None)),
        "true" | "yes" | "on" | "1" => Ok(DryRun(Some(true))),
        "false" | "no" | "off" | "0" => Ok(DryRun(Some(false))),
        other => Err(format!("`{other}` is not true or false")),
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}
