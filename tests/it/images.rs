//! `image build`, `promote` and `image prune` end to end: real buildah builds pushed to a
//! real distribution registry, promotion through the binary, and pruning against the
//! registry (OCI DELETE) and a fake GitHub Packages API validated by prism.

mod packages_fake;
mod prune;
mod prune_order;

use std::path::{Path, PathBuf};
use std::process::Command;

use jisu_deploy::oci::{ClientOptions, Digest, Reference, RegistryClient};

use crate::support::registry_server::RegistryServer;
use crate::support::{Run, repo_root};

const SHA: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";

/// A repository checkout with two tiny components (FROM scratch: no base image download)
/// and a pipeline file pointing at `registry`.
fn workspace(dir: &Path, registry: &str) -> PathBuf {
    for component in ["api", "web"] {
        let context = dir.join(component);
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("hello.txt"),
            format!("hello from {component}\n"),
        )
        .unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY hello.txt /hello.txt\n",
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    let config = dir.join("jisu-deploy.yml");
    std::fs::write(
        &config,
        format!(
            "
version: 1
images: {{registry: '{registry}', scheme: per-component, owner: jisu}}
components:
  api: {{context: api, dockerfile: api/Dockerfile, port: 8000, build_args: {{GREETING: 'hi there'}}}}
  web: {{context: web, dockerfile: web/Dockerfile, port: 80}}
environments:
  production: {{branch: main, namespace: p, url: 'https://x', strategy: rolling, manifests: k8s}}
retention: {{schedule: '0 3 * * *', keep_sha_tags: 2, delete_untagged_after: 7d}}
"
        ),
    )
    .unwrap();
    config
}

/// Runs the binary with a clean environment plus `env`.
pub(crate) fn jisu_in(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .current_dir(repo_root())
        .args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("the jisu-deploy binary runs").into()
}

fn client(server: &RegistryServer) -> RegistryClient {
    RegistryClient::new(
        &server.host(),
        ClientOptions {
            allow_http: true,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

fn build(dir: &Path, config: &Path, sha: &str, extra: &[&str]) -> Run {
    let storage = dir.join("buildah");
    let output = dir.join("github_output");
    let mut args = vec![
        "image",
        "build",
        "--config",
        config.to_str().unwrap(),
        "--workspace",
        dir.to_str().unwrap(),
        "--event-name",
        "push",
        "--ref",
        "refs/heads/main",
        "--sha",
        sha,
        "--builder",
        "buildah",
        "--storage-root",
        storage.to_str().unwrap(),
        "--registry-allow-http",
    ];
    args.extend_from_slice(extra);
    jisu_in(&args, &[("GITHUB_OUTPUT", output.to_str().unwrap())])
}

/// The `digests` output the last run wrote to GITHUB_OUTPUT.
fn digests_output(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("github_output")).unwrap();
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("digests="))
        .unwrap_or_else(|| panic!("no digests output in {text}"));
    serde_json::from_str(line).unwrap()
}

fn pinned_digest(pinned: &str) -> Digest {
    pinned.rsplit_once('@').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn buildah_builds_pushes_and_reports_the_digest_the_registry_serves() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), &server.host());

    let run = build(dir.path(), &config, SHA, &["--push"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let digests = digests_output(dir.path());
    let c = client(&server);
    for component in ["api", "web"] {
        let pinned = digests[component].as_str().unwrap();
        assert!(
            pinned.starts_with(&format!("{}/jisu/{component}@sha256:", server.host())),
            "{pinned}"
        );
        let digest = pinned_digest(pinned);
        // Every tag of the run names exactly the pushed manifest.
        for tag in [
            format!("sha-{}", &SHA[..40]),
            "main".into(),
            "latest".into(),
        ] {
            let reference =
                Reference::parse(&format!("{}/jisu/{component}:{tag}", server.host())).unwrap();
            let manifest = c.get_manifest(&reference).await.unwrap();
            assert_eq!(manifest.digest, digest, "{reference}");
        }
        assert!(run.stdout.contains(pinned), "{}", run.stdout);
    }
    // Labels and build arguments reached the image (read independently with skopeo).
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{}/jisu/api:latest", server.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = &inspect["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], SHA);
    assert_eq!(labels["org.opencontainers.image.title"], "api");
    assert_eq!(labels["greeting"], "hi there");
    let created = labels["org.opencontainers.image.created"].as_str().unwrap();
    assert!(created.parse::<jiff::Timestamp>().is_ok(), "{created}");
}

#[test]
fn dry_run_build_prints_argument_vectors_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: a dry run must not need the registry.
    let config = workspace(dir.path(), "127.0.0.1:9");
    let run = build(
        dir.path(),
        &config,
        SHA,
        &["--push", "--dry-run", "--component", "web"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("would run: buildah --storage-driver vfs"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("--tag 127.0.0.1:9/jisu/web:sha-1111111111111111111111111111111111111111")
    );
    assert!(!run.stdout.contains("jisu/api"), "{}", run.stdout);
    assert!(!dir.path().join("buildah").exists());
}

#[test]
fn unknown_component_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), "127.0.0.1:9");
    let run = build(dir.path(), &config, SHA, &["--component", "db"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`db`"), "{}", run.stderr);
}

fn promote(dir: &Path, config: &Path, sha: &str, extra: &[&str]) -> Run {
    let output = dir.join("github_output");
    let mut args = vec![
        "promote",
        "--config",
        config.to_str().unwrap(),
        "--workspace",
        dir.to_str().unwrap(),
        "--environment",
        "production",
        "--sha",
        sha,
        "--registry-allow-http",
    ];
    args.extend_from_slice(extra);
    jisu_in(&args, &[("GITHUB_OUTPUT", output.to_str().unwrap())])
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_is_all_or_none_and_outputs_the_digests() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), &server.host());
    let run = build(dir.path(), &config, SHA, &["--push"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let built = digests_output(dir.path());
    // Only `web` exists for SHA2: promoting it must refuse and move nothing.
    let run = build(dir.path(), &config, SHA2, &["--push", "--component", "web"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A dry run resolves and prints, and writes nothing.
    let log_before = server.access_log().len();
    let run = promote(dir.path(), &config, SHA, &["--dry-run"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("would move (new tag) to"),
        "{}",
        run.stdout
    );
    assert!(
        server
            .access_log()
            .split_off(log_before)
            .iter()
            .all(|l| l.method == "GET" || l.method == "HEAD")
    );

    let run = promote(dir.path(), &config, SHA, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(digests_output(dir.path()), built);
    let c = client(&server);
    let production = |component: &str| {
        Reference::parse(&format!("{}/jisu/{component}:production", server.host())).unwrap()
    };
    for component in ["api", "web"] {
        let served = c.head_manifest(&production(component)).await.unwrap();
        assert_eq!(
            served,
            Some(pinned_digest(built[component].as_str().unwrap()))
        );
    }

    let log_before = server.access_log().len();
    let run = promote(dir.path(), &config, SHA2, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("jisu/api:sha-2222222222222222222222222222222222222222")
            && run.stderr.contains("nothing was retagged"),
        "{}",
        run.stderr
    );
    let writes: Vec<_> = server
        .access_log()
        .split_off(log_before)
        .into_iter()
        .filter(|l| l.method != "GET" && l.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "a refused promotion wrote: {writes:?}");
    for component in ["api", "web"] {
        let served = c.head_manifest(&production(component)).await.unwrap();
        assert_eq!(
            served,
            Some(pinned_digest(built[component].as_str().unwrap()))
        );
    }

    // Promoting again is a no-op: nothing is written.
    let log_before = server.access_log().len();
    let run = promote(dir.path(), &config, SHA, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("already at"), "{}", run.stdout);
    assert!(
        server
            .access_log()
            .split_off(log_before)
            .iter()
            .all(|l| l.method == "GET" || l.method == "HEAD")
    );
}

#[test]
fn promote_validates_inputs_before_touching_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), "127.0.0.1:9");
    let run = promote(dir.path(), &config, "not-a-sha", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let output = dir.path().join("github_output");
    let run = jisu_in(
        &[
            "promote",
            "--config",
            config.to_str().unwrap(),
            "--workspace",
            dir.path().to_str().unwrap(),
            "--environment",
            "qa",
            "--sha",
            SHA,
        ],
        &[("GITHUB_OUTPUT", output.to_str().unwrap())],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`qa`"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_promotion_write_puts_back_the_tags_already_moved() {
    use jisu_deploy::images::promote::{PromoteError, Resolved, write_all};
    let server = RegistryServer::start();
    let c = client(&server);
    let repo = |name: &str| Reference::parse(&format!("{}/jisu/{name}:x", server.host())).unwrap();
    let old_api = prune::push_dated(
        &c,
        &repo("api"),
        Some("production"),
        "2026-01-01T00:00:00Z",
        "amd64",
    )
    .await;
    let new_api = prune::push_dated(
        &c,
        &repo("api"),
        Some(&format!("sha-{SHA}")),
        "2026-01-02T00:00:00Z",
        "amd64",
    )
    .await;
    let new_db = prune::push_dated(
        &c,
        &repo("db"),
        Some(&format!("sha-{SHA}")),
        "2026-01-02T00:00:00Z",
        "amd64",
    )
    .await;
    let old_web = prune::push_dated(
        &c,
        &repo("web"),
        Some("production"),
        "2026-01-01T00:00:00Z",
        "amd64",
    )
    .await;
    let target = |name: &str| repo(name).with_tag("production").unwrap();
    let resolved = |name: &str, digest: Digest, previous: Option<Digest>| Resolved {
        component: name.into(),
        source: repo(name).with_tag(&format!("sha-{SHA}")).unwrap(),
        target: target(name),
        digest,
        previous,
    };
    // `web`'s source digest vanished between resolving and writing: its write fails.
    let images = vec![
        resolved("api", new_api.clone(), Some(old_api.clone())),
        resolved("db", new_db.clone(), None),
        resolved("web", Digest::of(b"gone"), Some(old_web.clone())),
    ];
    let err = write_all(&c, &images).await.unwrap_err();
    let PromoteError::Partial {
        failed,
        restored,
        left_moved,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(failed, &target("web").to_string());
    assert_eq!(restored.len(), 1, "{err}");
    assert!(restored[0].contains("jisu/api:production"), "{err}");
    // A tag that did not exist before cannot be removed by the registry API: reported.
    assert_eq!(left_moved.len(), 1, "{err}");
    assert!(err.to_string().contains("STILL MOVED"), "{err}");
    assert_eq!(
        c.head_manifest(&target("api")).await.unwrap(),
        Some(old_api)
    );
    assert_eq!(
        c.head_manifest(&target("web")).await.unwrap(),
        Some(old_web)
    );
    assert_eq!(c.head_manifest(&target("db")).await.unwrap(), Some(new_db));
}

#[test]
fn the_pipeline_files_cache_repository_reaches_the_builder() {
    let event = crate::support::example_event("push-main.json");
    let args = [
        "image",
        "build",
        "--config",
        "examples/jisu/jisu-deploy.yml",
        "--event",
        event.to_str().unwrap(),
        "--dry-run",
        "--push",
        "--builder",
        "buildah",
    ];
    let run = crate::support::jisu(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bud = run
        .stdout
        .lines()
        .find(|l| l.contains(" bud "))
        .expect("a buildah bud line");
    assert!(
        bud.contains(
            "--cache-from ghcr.io/jisu/platform-cache --cache-to ghcr.io/jisu/platform-cache"
        ),
        "{bud}"
    );
    // The flag wins over the file.
    let mut flagged = args.to_vec();
    flagged.extend(["--cache-repository", "ghcr.io/jisu/other-cache"]);
    let run = crate::support::jisu(&flagged, &[]);
    assert!(
        run.stdout.contains("--cache-from ghcr.io/jisu/other-cache"),
        "{}",
        run.stdout
    );
}
