//! The typed pipeline file (`.github/jisu-deploy.yml`): what to build, test and deploy where.
//!
//! Every struct denies unknown keys so a typo fails loudly instead of being ignored.
//! Semantic rules that serde cannot express live in `validate.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// The whole pipeline file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Schema version of the file; only `1` exists.
    pub version: u32,
    /// The branch `latest` tags come from when the event payload does not say.
    #[serde(default = "default_branch")]
    pub default_branch: String,
    /// Where images go and how they are tagged.
    pub images: Images,
    /// The deployable parts, keyed by name (`frontend`, `backend`).
    pub components: BTreeMap<String, Component>,
    /// Deploy targets, keyed by name (`staging`, `production`); none for a repository that
    /// only builds and releases images.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// Commands that must pass before images are pushed.
    #[serde(default)]
    pub gates: Gates,
    /// Which images are kept on the registry.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Nightly backups of an environment's data.
    #[serde(default)]
    pub backup: Option<Backup>,
}

fn default_branch() -> String {
    "main".to_owned()
}

/// The image registry and the tag scheme.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Registry host, e.g. `ghcr.io`.
    #[serde(default = "default_registry")]
    pub registry: String,
    /// How components map to repositories and tags.
    pub scheme: TagScheme,
    /// For `component-prefix`: the one repository all components share (`jisu/platform`).
    #[serde(default)]
    pub repository: Option<String>,
    /// For `per-component`: the owner repositories live under (`jisu` gives `jisu/backend`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Whether commit tags carry the full 40-character sha or the first 7.
    #[serde(default)]
    pub sha: ShaLength,
    /// Repository on the same registry used as the build's layer cache (read by every
    /// build, written by pushed builds), e.g. `jisu/platform-cache`.
    #[serde(default)]
    pub cache_repository: Option<String>,
    /// Written before the version tags a semver git tag gives: `v` turns `v1.2.3` into
    /// `v1.2.3`, `v1.2` and `v1` instead of `1.2.3`, `1.2` and `1`.
    #[serde(default)]
    pub version_prefix: String,
}

impl Images {
    /// The cache repository as `registry/path`, if one is set.
    pub fn cache_reference(&self) -> Option<String> {
        self.cache_repository
            .as_ref()
            .map(|path| format!("{}/{path}", self.registry))
    }
}

fn default_registry() -> String {
    "ghcr.io".to_owned()
}

/// How components share registry repositories.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TagScheme {
    /// One repository, tags prefixed by the component: `ghcr.io/jisu/platform:backend-<sha>`.
    ComponentPrefix,
    /// One repository per component: `ghcr.io/jisu/backend:sha-<sha>`.
    PerComponent,
}

/// Length of the commit sha in tags.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ShaLength {
    /// All 40 characters: never ambiguous.
    #[default]
    Long,
    /// The first 7 characters, as `git log --oneline` shows.
    Short,
}

/// One deployable part: how its image is built and what Kubernetes objects carry it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Build context, relative to the repository root.
    pub context: String,
    /// Dockerfile, relative to the repository root.
    pub dockerfile: String,
    /// For `per-component`: overrides `<owner>/<component>`.
    #[serde(default)]
    pub repository: Option<String>,
    /// Build arguments (not secrets: they end up in the image history).
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// The container port its Service routes to; left out for an image that serves
    /// nothing (a command-line tool, a batch job).
    #[serde(default)]
    pub port: Option<u16>,
    /// Name of the Deployment and Service in the manifests; defaults to the component name.
    #[serde(default)]
    pub workload: Option<String>,
}

/// A deploy target.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Pushes to this branch deploy here.
    pub branch: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Public URL, shown on the GitHub deployment and used by relative checks.
    pub url: String,
    /// How new versions replace old ones.
    pub strategy: Strategy,
    /// Folder of manifests, relative to the repository root.
    pub manifests: String,
    /// Replica count per component; the manifests' value when absent.
    #[serde(default)]
    pub replicas: BTreeMap<String, u32>,
    /// How long a rollout may take before it counts as failed.
    #[serde(default = "default_rollout_timeout")]
    pub rollout_timeout: HumanDuration,
    /// HTTP checks run after the rollout (and, for blue-green, before the switch).
    #[serde(default)]
    pub checks: Vec<HttpCheck>,
    /// A command run after the checks, e.g. integration tests; gets `JISU_ENV_URL`.
    #[serde(default)]
    pub command: Option<Command>,
    /// Blue-green settings; required when `strategy: blue-green`.
    #[serde(default)]
    pub blue_green: Option<BlueGreen>,
}

impl Environment {
    /// Whether GitHub records its deployments as production (`production_environment`):
    /// the blue-green environments. A dispatch form that asks for confirmation wants a
    /// production environment's name typed.
    pub fn production(&self) -> bool {
        self.strategy == Strategy::BlueGreen
    }
}

fn default_rollout_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}

/// How an environment is updated.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Update the Deployments in place.
    Rolling,
    /// Run the new version beside the live one and switch the Services.
    BlueGreen,
}

/// Blue-green settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// URL that reaches the idle color before the switch (a preview Ingress).
    #[serde(default)]
    pub preview_url: Option<String>,
    /// How long health is watched after the switch before the deploy counts as good.
    #[serde(default = "default_verify_for")]
    pub verify_for: HumanDuration,
    /// How long the previous color keeps running so a rollback is one selector patch.
    #[serde(default = "default_keep_previous_for")]
    pub keep_previous_for: HumanDuration,
}

fn default_verify_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(120))
}

fn default_keep_previous_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}

/// One HTTP check.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Shown in logs and check runs.
    pub name: String,
    /// Absolute URL, or a path joined to the environment URL.
    pub url: String,
    /// The status code that counts as healthy.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Attempts before the check fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Time allowed for one attempt.
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
}

fn default_expect_status() -> u16 {
    200
}

fn default_retries() -> u32 {
    5
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Shown in logs and check runs.
    pub name: String,
    /// The program followed by its arguments.
    pub run: Vec<String>,
    /// Working directory, relative to the repository root.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Extra environment variables (not secrets: they are printed in plans). The command
    /// gets these and a few harmless ones (`PATH`, `HOME`, locale), never this process's
    /// tokens.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deadline; the command is stopped and fails when it passes.
    #[serde(default = "default_command_timeout")]
    pub timeout: HumanDuration,
}

fn default_workdir() -> String {
    ".".to_owned()
}

fn default_command_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 60))
}

/// Checks that must pass, grouped as the pipeline runs them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Style and static checks.
    #[serde(default)]
    pub lint: Vec<Gate>,
    /// Security scanners (code and dependencies).
    #[serde(default)]
    pub security: Vec<Gate>,
    /// Test suites.
    #[serde(default)]
    pub test: Vec<Gate>,
}

/// One check: a command, the reports its tool writes (read into findings), and the limits
/// that decide pass or fail. A gate without `run` reads reports an earlier workflow step
/// wrote (a Docker action cannot see the runner's Python).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Shown in logs and check runs.
    pub name: String,
    /// The program followed by its arguments; empty to only read `reports`.
    #[serde(default)]
    pub run: Vec<String>,
    /// Working directory, relative to the repository root; report files are relative to it.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Extra environment variables (not secrets: they are printed in plans).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deadline; the command is stopped and fails when it passes.
    #[serde(default = "default_command_timeout")]
    pub timeout: HumanDuration,
    /// What the tool writes, to be read as findings or coverage.
    #[serde(default)]
    pub reports: Vec<ReportSource>,
    /// Limits that decide pass or fail from the reports instead of the exit status.
    #[serde(default)]
    pub thresholds: Thresholds,
}

impl Gate {
    /// The command part, when the gate runs one.
    pub fn command(&self) -> Option<Command> {
        (!self.run.is_empty()).then(|| Command {
            name: self.name.clone(),
            run: self.run.clone(),
            workdir: self.workdir.clone(),
            env: self.env.clone(),
            timeout: self.timeout,
        })
    }
}

/// Where a gate's report is and how it is written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportSource {
    /// The tool's output format.
    pub format: ReportFormat,
    /// A file the tool writes, relative to the gate's `workdir`; when absent, the
    /// command's output stream is read (`stream`, or the tool's usual one).
    #[serde(default)]
    pub file: Option<String>,
    /// Which output stream to read when there is no `file`.
    #[serde(default)]
    pub stream: Option<Stream>,
}

impl ReportSource {
    /// The stream read when there is no `file`: the one named, else the tool's usual one
    /// (`None` for formats that only come as files).
    pub fn output_stream(&self) -> Option<Stream> {
        self.stream.or(self.format.usual_stream())
    }
}

/// Report formats gates understand.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    /// flake8's default format (stdout).
    Flake8,
    /// `black --check` (stderr).
    Black,
    /// `isort --check-only` (stderr).
    Isort,
    /// `bandit -f json` (stdout or `-o` file).
    Bandit,
    /// `pip-audit -f json` (stdout or `-o` file).
    PipAudit,
    /// pytest's `--junitxml` file.
    PytestJunit,
    /// Cobertura XML coverage (`--cov-report=xml`), a file.
    Cobertura,
}

impl ReportFormat {
    /// The name as the pipeline file spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Flake8 => "flake8",
            ReportFormat::Black => "black",
            ReportFormat::Isort => "isort",
            ReportFormat::Bandit => "bandit",
            ReportFormat::PipAudit => "pip-audit",
            ReportFormat::PytestJunit => "pytest-junit",
            ReportFormat::Cobertura => "cobertura",
        }
    }

    /// The stream the tool writes this format to when no file is named; `None` for formats
    /// that only come as files.
    pub fn usual_stream(self) -> Option<Stream> {
        match self {
            ReportFormat::Flake8 | ReportFormat::Bandit | ReportFormat::PipAudit => {
                Some(Stream::Stdout)
            }
            ReportFormat::Black | ReportFormat::Isort => Some(Stream::Stderr),
            ReportFormat::PytestJunit | ReportFormat::Cobertura => None,
        }
    }
}

/// A command's output stream.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as the pipeline file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A gate's limits. With any set, they and the findings decide, not the exit status.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// bandit issues of this severity or higher fail the gate (`low`, `medium`, `high`).
    #[serde(default)]
    pub bandit_severity: Option<crate::findings::bandit::Level>,
    /// Known vulnerabilities (pip-audit) allowed before the gate fails.
    #[serde(default)]
    pub vulnerabilities: Option<usize>,
    /// Minimum total line coverage, percent.
    #[serde(default)]
    pub coverage: Option<f64>,
}

impl Thresholds {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.bandit_severity.is_some() || self.vulnerabilities.is_some() || self.coverage.is_some()
    }
}

/// Which images stay on the registry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Cron expression (UTC) of the scheduled run that prunes.
    pub schedule: String,
    /// Commit-sha tags kept per component, newest first.
    pub keep_sha_tags: u32,
    /// Untagged versions older than this are deleted.
    pub delete_untagged_after: HumanDuration,
}

/// Nightly backups.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Cron expression (UTC) of the scheduled run that backs up.
    pub schedule: String,
    /// The environment whose data is backed up.
    pub environment: String,
    /// What to back up.
    pub targets: Vec<BackupTarget>,
    /// Where archives go, e.g. `s3://jisu-backups/prod`.
    pub destination: String,
    /// Archives older than this are expired.
    pub retain_for: HumanDuration,
    /// Calendar months, counting back from the current one, that each keep their newest
    /// verified backup past `retain_for`.
    #[serde(default = "default_monthly")]
    pub monthly: u32,
    /// The PostgreSQL database, for the `postgres` target. Its password comes from
    /// `PGPASSWORD` in the environment, never from this file.
    #[serde(default)]
    pub postgres: Option<PostgresSource>,
    /// The Redis server, for the `redis` target. Its password comes from `REDISCLI_AUTH`.
    #[serde(default)]
    pub redis: Option<RedisSource>,
    /// Options of the `kubernetes` target.
    #[serde(default)]
    pub kubernetes: KubernetesBackup,
    /// How long each dump, fetch or restore may take.
    #[serde(default = "default_backup_timeout")]
    pub timeout: HumanDuration,
}

fn default_monthly() -> u32 {
    12
}

fn default_backup_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 60))
}

/// Where the PostgreSQL database is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// Host name or address (a Service name inside the cluster).
    pub host: String,
    /// Port.
    #[serde(default = "default_postgres_port")]
    pub port: u16,
    /// The role that dumps; verification also creates and drops a scratch database with
    /// it, so it needs `CREATEDB`.
    pub user: String,
    /// The database.
    pub database: String,
}

fn default_postgres_port() -> u16 {
    5432
}

/// Options of the `kubernetes` backup target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesBackup {
    /// An age recipient (`age1...`): the namespace's Secrets are backed up too, encrypted
    /// to it. Without one, Secrets are left out.
    #[serde(default)]
    pub secrets_recipient: Option<String>,
}

/// Where the Redis server is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSource {
    /// Host name or address.
    pub host: String,
    /// Port.
    #[serde(default = "default_redis_port")]
    pub port: u16,
}

fn default_redis_port() -> u16 {
    6379
}

/// One kind of data to back up.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum BackupTarget {
    /// `pg_dump` of the database.
    Postgres,
    /// A Redis RDB snapshot.
    Redis,
    /// The namespace's Kubernetes objects as YAML.
    Kubernetes,
}

impl BackupTarget {
    /// The name as the pipeline file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            BackupTarget::Postgres => "postgres",
            BackupTarget::Redis => "redis",
            BackupTarget::Kubernetes => "kubernetes",
        }
    }
}

impl Component {
    /// The Deployment/Service name in the manifests.
    pub fn workload_name<'a>(&'a self, component: &'a str) -> &'a str {
        self.workload.as_deref().unwrap_or(component)
    }
}
