//! Flag groups several commands share, each defined once so every command spells them
//! the same way.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::duration::HumanDuration;

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

/// How registries are reached.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryFlags {
    /// Registry user name; the password is read from REGISTRY_PASSWORD, else GITHUB_TOKEN
    /// (never from a flag). Without it, ~/.docker/config.json (or $DOCKER_CONFIG), else
    /// no credentials.
    #[arg(long, env = "REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,

    /// Speak plain HTTP to a registry that is not on a loopback address. Registries on
    /// `localhost`, `127.0.0.0/8` and `[::1]` are spoken to over plain HTTP without it.
    #[arg(long)]
    pub registry_allow_http: bool,

    /// A token service (`https://host[:port]`) that may receive the registry credentials
    /// although it is not on the registry's own host. Credentials go only to the registry
    /// after it asks, to a token service on its own host, or to ghcr.io's and Docker Hub's;
    /// any other token service is asked anonymously unless named here. Repeatable.
    #[arg(long, value_name = "URL")]
    pub registry_token_realm: Vec<String>,
}

/// How the cluster is reached.
#[derive(Debug, Clone, Args)]
pub struct ClusterFlags {
    /// Kubeconfig file. Otherwise the action input `kubeconfig` (its content, YAML or
    /// base64), KUBECONFIG, the in-cluster service account, or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context [default: its current-context].
    #[arg(long, env = "INPUT_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
}

/// Images pinned by digest that an earlier job (or run) produced.
#[derive(Debug, Clone, Args)]
pub struct DigestsFlag {
    /// Images to pin, component -> `registry/repository@sha256:...`: a JSON object (the
    /// build job's `digests` output), the path of a file holding one, or one
    /// `COMPONENT=REF@sha256:DIGEST`. Repeatable. Deploy steps pin these images instead of
    /// resolving sha tags on the registry.
    #[arg(long, env = "INPUT_DIGESTS", value_name = "JSON|FILE|C=REF")]
    pub digests: Vec<String>,
}

/// Which program builds images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuilderFlag {
    /// `docker buildx build` when a Docker daemon answers, else `buildah`.
    Auto,
    /// `buildah bud` (daemonless).
    Buildah,
    /// `docker buildx build` (needs a running daemon).
    Docker,
}

/// How images are built.
#[derive(Debug, Clone, Args)]
pub struct BuildFlags {
    /// The program that builds.
    #[arg(long, value_enum, default_value_t = BuilderFlag::Auto)]
    pub builder: BuilderFlag,
    /// Registry image used as layer cache (read and written), e.g. ghcr.io/jisu/platform-cache
    /// [default: the pipeline file's `images.cache_repository`].
    #[arg(long, value_name = "REPOSITORY")]
    pub cache_repository: Option<String>,
    /// buildah only: storage directory (default: buildah's own). Tests use a temporary one.
    #[arg(long, value_name = "DIR")]
    pub storage_root: Option<PathBuf>,
}

/// How deploys run.
#[derive(Debug, Clone, Args)]
pub struct DeployFlags {
    /// Take over fields another field manager owns instead of failing on the conflict.
    #[arg(long)]
    pub force_conflicts: bool,

    /// Delete objects jisu-deploy applied earlier in the namespace that the manifests no
    /// longer contain.
    #[arg(long)]
    pub prune: bool,

    /// Wall-clock limit for rollouts [default: the environment's rollout_timeout].
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse)]
    pub timeout: Option<HumanDuration>,

    /// Pause between attempts of an HTTP check.
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse, default_value = "2s")]
    pub check_interval: HumanDuration,

    /// How long to wait for the environment's deploy lock while another run holds it;
    /// then the deploy fails naming the holder.
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse, default_value = "10m")]
    pub lock_timeout: HumanDuration,

    /// How long the deploy lock stays claimed without renewal (it is renewed every third of
    /// this while held): a run that was killed blocks the next one at most this long.
    #[arg(long, value_name = "DURATION", value_parser = HumanDuration::parse, default_value = "60s")]
    pub lock_lease: HumanDuration,

    /// Blue-green: deploy the idle color and run its preview checks, but leave traffic on
    /// the live color (a manual gate); `jisu-deploy switch` moves it later.
    #[arg(long)]
    pub no_switch: bool,
}

/// Where versions are listed and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PruneBackendFlag {
    /// GitHub Packages for ghcr.io, the registry API elsewhere.
    Auto,
    /// The GitHub Packages REST API (lists untagged versions too).
    GithubPackages,
    /// The registry API: tag list, and DELETE of manifests by digest.
    Oci,
}

/// Whether the package owner is an organization or a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OwnerKindFlag {
    /// `/orgs/{org}/packages/...`.
    Org,
    /// `/users/{username}/packages/...`.
    User,
}

/// How a prune reaches the registry and what it keeps besides the rules.
#[derive(Debug, Clone, Args)]
pub struct PruneFlags {
    /// A digest deployed in some environment, kept whatever the rules say (repeatable;
    /// `sha256:...` or `registry/repository@sha256:...`).
    #[arg(long = "keep-digest", value_name = "DIGEST")]
    pub keep_digests: Vec<String>,
    /// A file of deployed digests, one per line (same forms as --keep-digest; `#` comments).
    #[arg(long, value_name = "FILE")]
    pub keep_digests_file: Option<PathBuf>,
    /// Where versions are listed and deleted.
    #[arg(long, value_enum, default_value_t = PruneBackendFlag::Auto)]
    pub backend: PruneBackendFlag,
    /// GitHub REST API base URL (GitHub Enterprise, or a test server).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// Whether the images' owner (first path segment) is an organization or a user (the
    /// Packages API has a path for each).
    #[arg(long, env = "INPUT_OWNER-KIND", value_enum, default_value_t = OwnerKindFlag::Org)]
    pub owner_kind: OwnerKindFlag,
    /// Read no cluster: only --keep-digest and --keep-digests-file name what is deployed.
    /// For registries whose images no cluster of this pipeline runs.
    #[arg(long)]
    pub no_cluster: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}
