//! Command-line flags (clap definitions only). Each flag that an action input can set reads
//! `INPUT_<NAME>` as its fallback, so `action.yml` inputs and terminal flags are one thing.
//! Flag groups shared by several commands ([`flags`]) are defined once and flattened, so
//! every command spells them the same; each command's flags become plain request structs
//! ([`requests`]) before anything runs, and nothing below this module sees a clap type.

pub mod flags;
pub mod requests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use flags::{
    BuildFlags, ClusterFlags, DeployFlags, DigestsFlag, EventArgs, PruneFlags, RegistryFlags,
};

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

    /// Only show what would be done. `run` prints its plan and contacts nothing; the other
    /// commands also read (registry, cluster) to show exactly what would change, and write
    /// nothing. Defaults to true under `act` (ACT=true), else false.
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
    /// Carry out the plan for an event: every job that runs, in `needs` order (or only the
    /// jobs named by --job), each step logged in a group with its duration. Writes the run
    /// report (output `report`) and the job summary. Exit 1 when a step that had to
    /// succeed failed.
    Run(Box<RunArgs>),
    /// Deploy an environment: the plan's `deploy-<env>` job for a push of --sha to the
    /// environment's branch (rolling: server-side apply of its manifests with images
    /// pinned to digests, wait for every rollout, run its checks and command).
    Deploy(DeployArgs),
    /// Move an environment's tag onto the images built for a commit, all or none, and print
    /// the digests `deploy` pins (the `promote` job of a workflow_dispatch promotion).
    Promote(PromoteArgs),
    /// Roll an environment back (the `rollback-<env>` job of a workflow_dispatch
    /// `operation: rollback`): blue-green routes back to the previous color, which was kept
    /// running, after checking it has ready Pods, then verifies as a deploy does; rolling
    /// puts each Deployment's previous revision back, waits for it and runs the checks.
    Rollback(RollbackArgs),
    /// Move a blue-green environment's traffic to the idle color a `deploy --no-switch`
    /// left ready (the `switch-<env>` job of a workflow_dispatch `operation: switch`),
    /// verified as a deploy's switch is; the previous color is kept for rollback.
    Switch(RollbackArgs),
    /// Scale down a blue-green environment's previous color once it is past
    /// `keep_previous_for` (its HPA lowered first) and delete adopted un-colored
    /// Deployments past theirs: the `cleanup-<env>` job every scheduled run has.
    Cleanup(RollbackArgs),
    /// Show what runs in an environment: the live color and since when, each Deployment's
    /// commit, images and ready Pods, the previous color and until when it is kept, and
    /// who holds the deploy lock. Reads only.
    Status(StatusArgs),
    /// Back up the environment the pipeline file's `backup:` names (the plan's `backup`
    /// job): PostgreSQL (`pg_dump` from one snapshot, verified by restoring it into a
    /// scratch database and comparing every table's rows) and Redis (`BGSAVE`, the
    /// snapshot, `redis-check-rdb`), a manifest of sizes and sha256, uploaded to S3 and
    /// read back, then expired by `retain_for` and `monthly`. Passwords come from
    /// PGPASSWORD and REDISCLI_AUTH, storage credentials from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL. With --dry-run it dumps nothing and
    /// lists what retention would delete.
    Backup,
    /// Restore drill: download a stored backup (the newest verified one, or --backup),
    /// each file checked against its manifest's sha256; restore its PostgreSQL dump into a
    /// new database on the server of `backup.postgres` and compare every table's rows
    /// with the counts taken at dump time; check its Redis snapshot. Never writes over an
    /// existing database.
    Restore(RestoreArgs),
    /// Image operations.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Print the tags each component's image gets for an event.
    Tags(TagsArgs),
    /// Point DST at the image SRC names, on the same registry: one manifest read and one
    /// write of the identical bytes (blobs mounted across repositories, never re-uploaded).
    /// Running it again changes nothing. Prints the digest; in Actions also the output `digest`.
    Retag(RetagArgs),
    /// Build each component's image with the event's tags and labels (the plan's `build`
    /// job); with --push, push it and print the pushed digest (output `digests`:
    /// component -> repository@digest).
    Build(BuildArgs),
    /// Delete image versions the pipeline's `retention:` no longer keeps (the plan's
    /// `prune` job). Keeps environment tags, `latest`, other non-commit tags, the newest N
    /// commit builds per component (ordered by their commits' git history, then push and
    /// creation times), every deployed digest, attestations and children of kept indexes;
    /// fails closed. With --dry-run lists every version with keep/delete and why.
    Prune(PruneArgs),
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

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The event whose plan runs.
    #[command(flatten)]
    pub event: EventArgs,

    /// Run only this job of the plan (repeatable), e.g. `build` on one runner and
    /// `deploy-staging` on another. Jobs it needs are taken to have run already.
    #[arg(
        long = "job",
        env = "INPUT_JOBS",
        value_name = "ID",
        value_delimiter = ','
    )]
    pub jobs: Vec<String>,

    /// Images an earlier job pushed.
    #[command(flatten)]
    pub digests: DigestsFlag,

    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// How images are built.
    #[command(flatten)]
    pub build: BuildFlags,

    /// How deploys run.
    #[command(flatten)]
    pub deploy: DeployFlags,

    /// How a scheduled prune reaches the registry.
    #[command(flatten)]
    pub prune: PruneFlags,
}

/// `deploy` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The environment of the pipeline file to deploy (e.g. staging).
    #[arg(long, env = "INPUT_ENVIRONMENT", value_name = "NAME")]
    pub environment: String,

    /// The commit to deploy (40 hex characters): labels every object and names the sha
    /// tag resolved to a digest on the registry for components --digests does not pin
    /// [default: GITHUB_SHA].
    #[arg(long, env = "INPUT_SHA", value_name = "SHA")]
    pub sha: Option<String>,

    /// Images pinned by digest (the build job's `digests` output).
    #[command(flatten)]
    pub digests: DigestsFlag,

    /// Registry access (resolving sha tags to digests).
    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// How the deploy runs.
    #[command(flatten)]
    pub deploy: DeployFlags,
}

/// `rollback`, `switch` and `cleanup` flags.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The environment (an environment of the pipeline file).
    #[arg(long, env = "INPUT_ENVIRONMENT", value_name = "NAME")]
    pub environment: String,

    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// How the rollback runs (rollout deadline, check interval).
    #[command(flatten)]
    pub deploy: DeployFlags,
}

/// `restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore, by id (e.g. 20261201T020000Z) [default: the newest verified].
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,

    /// The new database the dump is restored into; it must not exist [default: the
    /// database's name, then `_restore_` and the backup id, e.g. `jisu_restore_20261201t020000z`].
    #[arg(long, value_name = "NAME")]
    pub into: Option<String>,

    /// Keep the downloaded files in this directory [default: a temporary one, removed after].
    #[arg(long, value_name = "DIR")]
    pub output: Option<std::path::PathBuf>,
}

/// `status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The environment to show (an environment of the pipeline file).
    #[arg(long, env = "INPUT_ENVIRONMENT", value_name = "NAME")]
    pub environment: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// `promote` flags.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment whose tag moves (an environment of the pipeline file).
    #[arg(long, env = "INPUT_ENVIRONMENT", value_name = "NAME")]
    pub environment: String,

    /// Full commit sha (40 hex characters) whose images are promoted.
    #[arg(long, env = "INPUT_SHA", value_name = "SHA")]
    pub sha: String,

    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
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

/// `image retag` arguments.
#[derive(Debug, Args)]
pub struct RetagArgs {
    /// Source image: registry/repository:tag or registry/repository@sha256:digest.
    pub src: String,
    /// Destination image on the same registry: registry/repository:tag.
    pub dst: String,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// When the registry refuses a cross-repository blob mount, stream the blob through
    /// this process instead of failing.
    #[arg(long)]
    pub allow_blob_copy: bool,
}

/// `image build` flags.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The event whose tags the images get.
    #[command(flatten)]
    pub event: EventArgs,
    /// Build only this component (repeatable); all components by default.
    #[arg(long = "component", value_name = "NAME")]
    pub components: Vec<String>,
    /// Push the tags after building. Pull request builds are never pushed.
    #[arg(long)]
    pub push: bool,
    /// How images are built.
    #[command(flatten)]
    pub build: BuildFlags,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `image prune` flags.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// How the prune reaches the registry and what it keeps.
    #[command(flatten)]
    pub prune: PruneFlags,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Cluster access (the environments' namespaces are read for deployed digests).
    #[command(flatten)]
    pub cluster: ClusterFlags,
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
