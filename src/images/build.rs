//! `image build`: turns the plan's `BuildImage` steps into builder command lines (pure, so
//! they are unit-tested and printed by a dry run) and runs them without a shell.
//!
//! Two builders: `docker buildx build` where a Docker daemon answers (GitHub runners), and
//! daemonless `buildah` otherwise. Registry credentials never reach an argument vector: they
//! go into a private auth file whose path is passed instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::oci::auth::Credentials;
use crate::oci::digest::Digest;
use crate::oci::reference::Reference;

/// Which program builds the images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// `docker buildx build` when `docker buildx version` and `docker info` succeed, else
    /// `buildah`.
    #[default]
    Auto,
    /// `buildah bud` (daemonless).
    Buildah,
    /// `docker buildx build` (needs a running daemon).
    Docker,
}

/// How images are built and pushed (plain values the command line fills in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// The program that builds.
    pub builder: Builder,
    /// Registry image used as layer cache; `None` uses the pipeline file's.
    pub cache_repository: Option<String>,
    /// buildah only: storage directory (default: buildah's own).
    pub storage_root: Option<PathBuf>,
    /// Registry user and plain-HTTP permission.
    pub registry: super::credentials::RegistryAccess,
}

/// Everything one image build needs: the plan's `BuildImage` step plus run-time settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSpec {
    /// The component.
    pub component: String,
    /// Build context directory.
    pub context: String,
    /// Dockerfile path.
    pub dockerfile: String,
    /// Build arguments.
    pub build_args: BTreeMap<String, String>,
    /// Full references, the sha tag first.
    pub tags: Vec<String>,
    /// OCI labels, including `org.opencontainers.image.created`.
    pub labels: BTreeMap<String, String>,
    /// Whether the tags are pushed.
    pub push: bool,
}

/// Builder settings that are the same for every image of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuilderSettings {
    /// buildah `--root` (its run root goes beside it).
    pub storage_root: Option<PathBuf>,
    /// Plain HTTP registry: buildah `--tls-verify=false`.
    pub insecure_registry: bool,
    /// Registry auth file holding credentials, when there are any.
    pub auth_file: Option<PathBuf>,
    /// Layer cache repository.
    pub cache_repository: Option<String>,
}

/// Global flags every buildah invocation takes: vfs storage works without privileges or
/// kernel overlay support, which is what runners and test machines have.
fn buildah_globals(settings: &BuilderSettings) -> Vec<String> {
    let mut argv = vec![
        "buildah".to_owned(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    if let Some(root) = &settings.storage_root {
        argv.push("--root".to_owned());
        argv.push(root.join("storage").display().to_string());
        argv.push("--runroot".to_owned());
        argv.push(root.join("run").display().to_string());
    }
    argv
}

/// What buildah and docker both take for one image: the Dockerfile, every tag, label and
/// build argument, each as its own argument.
fn push_spec(argv: &mut Vec<String>, spec: &BuildSpec) {
    argv.push("--file".to_owned());
    argv.push(spec.dockerfile.clone());
    for tag in &spec.tags {
        argv.push("--tag".to_owned());
        argv.push(tag.clone());
    }
    push_pairs(argv, "--label", &spec.labels);
    push_pairs(argv, "--build-arg", &spec.build_args);
}

/// `buildah bud` for one image: every tag, label and build argument as its own argument.
pub fn buildah_build_argv(spec: &BuildSpec, settings: &BuilderSettings) -> Vec<String> {
    let mut argv = buildah_globals(settings);
    argv.extend(["bud", "--isolation", "chroot", "--format", "oci"].map(str::to_owned));
    push_spec(&mut argv, spec);
    if let Some(cache) = &settings.cache_repository {
        argv.extend([
            "--layers".to_owned(),
            "--cache-from".to_owned(),
            cache.clone(),
        ]);
        if spec.push {
            argv.extend(["--cache-to".to_owned(), cache.clone()]);
        }
        push_registry_access(&mut argv, settings);
    }
    argv.push(spec.context.clone());
    argv
}

/// `buildah push` of one tag, writing the pushed manifest's digest to `digest_file`.
pub fn buildah_push_argv(tag: &str, digest_file: &Path, settings: &BuilderSettings) -> Vec<String> {
    let mut argv = buildah_globals(settings);
    argv.push("push".to_owned());
    argv.push("--digestfile".to_owned());
    argv.push(digest_file.display().to_string());
    push_registry_access(&mut argv, settings);
    argv.push(tag.to_owned());
    argv.push(format!("docker://{tag}"));
    argv
}

/// `docker buildx build`, pushing every tag at once when `spec.push` and writing the build
/// metadata (which holds the pushed digest) to `metadata_file`.
pub fn docker_build_argv(
    spec: &BuildSpec,
    settings: &BuilderSettings,
    metadata_file: &Path,
) -> Vec<String> {
    let mut argv = ["docker", "buildx", "build"].map(str::to_owned).to_vec();
    push_spec(&mut argv, spec);
    if let Some(cache) = &settings.cache_repository {
        argv.push("--cache-from".to_owned());
        argv.push(format!("type=registry,ref={cache}"));
        if spec.push {
            argv.push("--cache-to".to_owned());
            argv.push(format!("type=registry,ref={cache},mode=max"));
        }
    }
    argv.push("--metadata-file".to_owned());
    argv.push(metadata_file.display().to_string());
    argv.push(if spec.push { "--push" } else { "--load" }.to_owned());
    argv.push(spec.context.clone());
    argv
}

fn push_pairs(argv: &mut Vec<String>, flag: &str, pairs: &BTreeMap<String, String>) {
    for (key, value) in pairs {
        argv.push(flag.to_owned());
        argv.push(format!("{key}={value}"));
    }
}

fn push_registry_access(argv: &mut Vec<String>, settings: &BuilderSettings) {
    if settings.insecure_registry {
        argv.push("--tls-verify=false".to_owned());
    }
    if let Some(auth_file) = &settings.auth_file {
        argv.push("--authfile".to_owned());
        argv.push(auth_file.display().to_string());
    }
}

/// A containers-auth.json / Docker config.json body for `registry`. It holds the secret, so
/// it is only ever written to a private file, never logged.
pub fn auth_file_json(registry: &str, credentials: &Credentials) -> String {
    use base64::Engine as _;
    let pair = format!("{}:{}", credentials.username, credentials.password.expose());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    serde_json::json!({ "auths": { registry: { "auth": encoded } } }).to_string()
}

/// The digest `docker buildx build --metadata-file` recorded.
pub fn digest_from_docker_metadata(json: &str) -> anyhow::Result<Digest> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("buildx metadata file is not JSON")?;
    let Some(text) = value["containerimage.digest"].as_str() else {
        bail!("buildx metadata has no containerimage.digest");
    };
    Ok(text.parse()?)
}

/// The digest `buildah push --digestfile` wrote.
pub fn digest_from_digest_file(text: &str) -> anyhow::Result<Digest> {
    text.trim()
        .parse()
        .with_context(|| format!("buildah digest file holds {:?}", text.trim()))
}

/// Picks the builder for `Auto`: docker only when a daemon answers, since `docker
/// --version` alone succeeds on machines where no build can run.
pub fn resolve_builder(requested: Builder) -> anyhow::Result<Builder> {
    let succeeds = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .env_clear()
            .envs(builder_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match requested {
        Builder::Auto
            if succeeds("docker", &["buildx", "version"]) && succeeds("docker", &["info"]) =>
        {
            Ok(Builder::Docker)
        }
        Builder::Auto | Builder::Buildah => {
            if succeeds("buildah", &["--version"]) {
                Ok(Builder::Buildah)
            } else {
                bail!(
                    "no image builder: buildah is not installed and no Docker daemon answers (`docker info`)"
                )
            }
        }
        Builder::Docker => Ok(Builder::Docker),
    }
}

/// One built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The component.
    pub component: String,
    /// The first (sha) tag's reference.
    pub reference: String,
    /// The pushed manifest's digest; `None` when not pushed.
    pub digest: Option<Digest>,
}

impl Built {
    /// `registry/repository@sha256:...`, what `deploy` pins, when pushed.
    pub fn pinned(&self) -> Option<String> {
        let digest = self.digest.as_ref()?;
        let reference = Reference::parse(&self.reference).ok()?;
        Some(reference.with_digest(digest.clone()).to_string())
    }
}

/// What a builder inherits: the pass-through variables every child gets, and the builders'
/// own settings (storage, isolation, daemon address); never a token or password.
fn builder_env() -> Vec<(String, String)> {
    const PREFIXES: &[&str] = &["BUILDAH_", "CONTAINERS_", "STORAGE_", "XDG_", "BUILDKIT_"];
    std::env::vars()
        .filter(|(name, _)| {
            crate::process::PASSED_THROUGH.contains(&name.as_str())
                || PREFIXES.iter().any(|p| name.starts_with(p))
                || name == "DOCKER_HOST"
        })
        .collect()
}

/// How long one builder command may run; a build that hangs is stopped here rather than
/// holding the job until the workflow's own timeout.
pub const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Runs `argv` (program first) in the checkout as a child process (no shell, a scrubbed
/// environment plus the builder's own settings and `env`, its own process group), so a
/// cancelled run stops the builder too. A failure names `what` and the exit status (the
/// builder's own output has already gone to the terminal).
pub async fn run_argv(
    argv: &[String],
    checkout: &Path,
    what: &str,
    env: Option<(&str, &Path)>,
) -> anyhow::Result<()> {
    let shown: Vec<_> = argv.iter().map(|a| crate::output::escape(a)).collect();
    tracing::info!(command = %shown.join(" "), "running");
    let mut vars: std::collections::BTreeMap<String, String> = builder_env().into_iter().collect();
    if let Some((name, value)) = env {
        vars.insert(name.to_owned(), value.display().to_string());
    }
    crate::process::run(&crate::process::Child {
        name: what,
        argv,
        workdir: ".",
        checkout,
        env: &vars,
        timeout: BUILD_TIMEOUT,
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(push: bool) -> BuildSpec {
        BuildSpec {
            component: "backend".into(),
            context: "backend".into(),
            dockerfile: "backend/Dockerfile".into(),
            build_args: BTreeMap::from([("PY".into(), "3.12 slim".into())]),
            tags: vec![
                "ghcr.io/jisu/platform:backend-abc".into(),
                "ghcr.io/jisu/platform:backend-main".into(),
            ],
            labels: BTreeMap::from([("org.opencontainers.image.title".into(), "back end".into())]),
            push,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn buildah_argv_keeps_values_with_spaces_as_single_arguments() {
        let settings = BuilderSettings {
            storage_root: Some("/tmp/s".into()),
            ..BuilderSettings::default()
        };
        assert_eq!(
            buildah_build_argv(&spec(true), &settings),
            strings(&[
                "buildah",
                "--storage-driver",
                "vfs",
                "--root",
                "/tmp/s/storage",
                "--runroot",
                "/tmp/s/run",
                "bud",
                "--isolation",
                "chroot",
                "--format",
                "oci",
                "--file",
                "backend/Dockerfile",
                "--tag",
                "ghcr.io/jisu/platform:backend-abc",
                "--tag",
                "ghcr.io/jisu/platform:backend-main",
                "--label",
                "org.opencontainers.image.title=back end",
                "--build-arg",
                "PY=3.12 slim",
                "backend",
            ])
        );
    }

    #[test]
    fn buildah_push_uses_an_auth_file_and_tls_only_when_told() {
        let settings = BuilderSettings {
            insecure_registry: true,
            auth_file: Some("/run/auth.json".into()),
            ..BuilderSettings::default()
        };
        let argv = buildah_push_argv("127.0.0.1:5000/a:b", Path::new("/tmp/d"), &settings);
        assert_eq!(
            argv,
            strings(&[
                "buildah",
                "--storage-driver",
                "vfs",
                "push",
                "--digestfile",
                "/tmp/d",
                "--tls-verify=false",
                "--authfile",
                "/run/auth.json",
                "127.0.0.1:5000/a:b",
                "docker://127.0.0.1:5000/a:b",
            ])
        );
        let secure = buildah_push_argv("ghcr.io/a:b", Path::new("/d"), &BuilderSettings::default());
        assert!(
            !secure.iter().any(|a| a.contains("tls-verify")),
            "{secure:?}"
        );
    }

    #[test]
    fn docker_argv_pushes_or_loads_and_writes_cache_only_when_pushing() {
        let settings = BuilderSettings {
            cache_repository: Some("ghcr.io/jisu/cache".into()),
            ..BuilderSettings::default()
        };
        let pushed = docker_build_argv(&spec(true), &settings, Path::new("/tmp/m.json"));
        assert_eq!(&pushed[..3], &strings(&["docker", "buildx", "build"])[..]);
        assert!(pushed.contains(&"--push".to_owned()));
        assert!(pushed.contains(&"type=registry,ref=ghcr.io/jisu/cache,mode=max".to_owned()));
        assert_eq!(pushed.last().unwrap(), "backend");
        let local = docker_build_argv(&spec(false), &settings, Path::new("/tmp/m.json"));
        assert!(local.contains(&"--load".to_owned()));
        assert!(!local.contains(&"--cache-to".to_owned()), "{local:?}");
    }

    #[test]
    fn auth_file_holds_the_secret_and_argv_never_does() {
        let creds = Credentials::new("bot", "s3cret");
        let json = auth_file_json("ghcr.io", &creds);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["auths"]["ghcr.io"]["auth"], "Ym90OnMzY3JldA==");
        let settings = BuilderSettings {
            auth_file: Some("/x/auth.json".into()),
            ..BuilderSettings::default()
        };
        let argv = buildah_push_argv("ghcr.io/a:b", Path::new("/d"), &settings);
        assert!(!argv.join(" ").contains("s3cret"));
    }

    #[test]
    fn digests_are_read_from_builder_outputs() {
        let d = Digest::of(b"m");
        assert_eq!(digest_from_digest_file(&format!("{d}\n")).unwrap(), d);
        assert!(digest_from_digest_file("nonsense").is_err());
        let meta = format!(r#"{{"containerimage.digest":"{d}","image.name":"x"}}"#);
        assert_eq!(digest_from_docker_metadata(&meta).unwrap(), d);
        assert!(digest_from_docker_metadata("{}").is_err());
    }

    #[test]
    fn pinned_reference_replaces_the_tag() {
        let d = Digest::of(b"m");
        let built = Built {
            component: "backend".into(),
            reference: "ghcr.io/jisu/platform:backend-abc".into(),
            digest: Some(d.clone()),
        };
        assert_eq!(
            built.pinned().unwrap(),
            format!("ghcr.io/jisu/platform@{d}")
        );
    }
}
