//! `image prune` through the binary: against a real distribution registry (tag list, OCI
//! DELETE by digest) and against a fake GitHub Packages API behind `prism proxy`, which
//! rejects any request that does not match GitHub's OpenAPI description.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use jisu_deploy::oci::manifest::{OCI_INDEX, OCI_MANIFEST};
use jisu_deploy::oci::{ClientOptions, Digest, Reference, RegistryClient};
use serde_json::json;

use super::packages_fake::{FakePackages, FakeVersion};
use super::{jisu_in, workspace};
use crate::support::Run;
use crate::support::prism_proxy::PrismProxy;
use crate::support::registry_server::RegistryServer;

fn days_ago(days: i64) -> String {
    let ts = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * days))
        .unwrap();
    ts.round(jiff::Unit::Second).unwrap().to_string()
}

/// How reasons show the push time of the version tagged `commit_tag(n)`.
fn days_ago_shown(versions: &[FakeVersion], n: u32) -> String {
    let version = versions
        .iter()
        .find(|v| v.tags.contains(&commit_tag(n)))
        .unwrap();
    let at: jiff::Timestamp = version.created.parse().unwrap();
    at.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn commit_tag(n: u32) -> String {
    format!("sha-{}", n.to_string().repeat(40))
}

/// Distinct content for every blob pushed.
pub(super) fn unique(label: &str) -> Bytes {
    static N: AtomicU64 = AtomicU64::new(0);
    Bytes::from(format!("{label}-{}", N.fetch_add(1, Ordering::Relaxed)).into_bytes())
}

async fn push_manifest(
    c: &RegistryClient,
    at: &Reference,
    body: serde_json::Value,
    media_type: &str,
) -> Digest {
    let bytes = Bytes::from(serde_json::to_vec_pretty(&body).unwrap());
    c.put_manifest(at, bytes.clone(), media_type).await.unwrap();
    Digest::of(&bytes)
}

/// A one-layer image whose config says it was created `created`; tagged `tag`, or pushed
/// by digest when `tag` is `None`.
pub(super) async fn push_dated(
    c: &RegistryClient,
    repo: &Reference,
    tag: Option<&str>,
    created: &str,
    arch: &str,
) -> Digest {
    let layer = unique("layer");
    let config = Bytes::from(
        serde_json::to_vec(&json!({
            "created": created,
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
        }))
        .unwrap(),
    );
    for blob in [&config, &layer] {
        c.push_blob(repo.repository(), blob.clone()).await.unwrap();
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    });
    let bytes = Bytes::from(serde_json::to_vec_pretty(&body).unwrap());
    let digest = Digest::of(&bytes);
    let at = match tag {
        Some(tag) => repo.with_tag(tag).unwrap(),
        None => repo.with_digest(digest.clone()),
    };
    c.put_manifest(&at, bytes, OCI_MANIFEST).await.unwrap();
    digest
}

/// An in-toto attestation manifest for `subject`, pushed by digest.
async fn push_attestation(c: &RegistryClient, repo: &Reference, subject: &Digest) -> Digest {
    let statement = unique(&format!("in-toto statement for {subject}"));
    let config = Bytes::from_static(b"{}");
    for blob in [&config, &statement] {
        c.push_blob(repo.repository(), blob.clone()).await.unwrap();
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": Digest::of(&statement).to_string(), "size": statement.len()}],
    });
    let bytes = Bytes::from(serde_json::to_vec_pretty(&body).unwrap());
    let digest = Digest::of(&bytes);
    c.put_manifest(&repo.with_digest(digest.clone()), bytes, OCI_MANIFEST)
        .await
        .unwrap();
    digest
}

/// A multi-platform index (one image plus its attestation), created `created`.
async fn push_index(
    c: &RegistryClient,
    repo: &Reference,
    tag: &str,
    created: &str,
    child: &Digest,
    attestation: &Digest,
) -> Digest {
    let child_manifest = c
        .get_manifest(&repo.with_digest(child.clone()))
        .await
        .unwrap();
    let att_manifest = c
        .get_manifest(&repo.with_digest(attestation.clone()))
        .await
        .unwrap();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": child.to_string(), "size": child_manifest.bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": attestation.to_string(), "size": att_manifest.bytes.len(),
             "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": child.to_string()}},
        ],
        "annotations": {"org.opencontainers.image.created": created},
    });
    push_manifest(c, &repo.with_tag(tag).unwrap(), body, OCI_INDEX).await
}

pub(super) fn client(server: &RegistryServer) -> RegistryClient {
    RegistryClient::new(
        &server.host(),
        ClientOptions {
            allow_http: true,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

pub(super) fn prune(dir: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let output = dir.join("github_output");
    let mut args = vec![
        "image",
        "prune",
        "--config",
        config.to_str().unwrap(),
        "--workspace",
        dir.to_str().unwrap(),
        "--registry-allow-http",
    ];
    args.extend_from_slice(extra);
    // Tests without a cluster say so; the default reads one and fails closed without it.
    if !extra.contains(&"--kubeconfig") {
        args.push("--no-cluster");
    }
    let mut env = env.to_vec();
    env.push(("GITHUB_OUTPUT", output.to_str().unwrap()));
    jisu_in(&args, &env)
}

fn method_counts(lines: &[crate::support::registry_server::AccessLine]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.method.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_prune_deletes_only_expired_commit_tags_and_keeps_index_children() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), &server.host());
    let c = client(&server);
    let repo = Reference::parse(&format!("{}/jisu/api:x", server.host())).unwrap();

    let p1 = push_dated(&c, &repo, Some(&commit_tag(1)), &days_ago(50), "amd64").await;
    let p2 = push_dated(&c, &repo, Some(&commit_tag(2)), &days_ago(40), "amd64").await;
    let p3 = push_dated(&c, &repo, Some(&commit_tag(3)), &days_ago(30), "amd64").await;
    // The index's child is also tagged with an expired commit tag: still kept.
    let child = push_dated(&c, &repo, Some(&commit_tag(9)), &days_ago(60), "amd64").await;
    let att = push_attestation(&c, &repo, &child).await;
    let index = push_index(&c, &repo, &commit_tag(4), &days_ago(20), &child, &att).await;
    let p5 = push_dated(&c, &repo, Some(&commit_tag(5)), &days_ago(10), "amd64").await;
    for tag in ["production", "latest"] {
        let bytes = c
            .get_manifest(&repo.with_digest(p5.clone()))
            .await
            .unwrap()
            .bytes;
        c.put_manifest(&repo.with_tag(tag).unwrap(), bytes, OCI_MANIFEST)
            .await
            .unwrap();
    }
    let release = push_dated(&c, &repo, Some("v1.0.0"), &days_ago(400), "amd64").await;
    let keep = format!("{}/jisu/api@{p2}", server.host());

    let before = server.access_log().len();
    let run = prune(
        dir.path(),
        &config,
        &["--dry-run", "--keep-digest", &keep],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines = server.access_log().split_off(before);
    assert_eq!(lines.iter().filter(|l| l.method == "DELETE").count(), 0);
    let would: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("would delete"))
        .collect();
    assert_eq!(would.len(), 2, "{}", run.stdout);
    for digest in [&p1, &p3] {
        assert!(
            would.iter().any(|l| l.contains(digest.as_str())),
            "{}",
            run.stdout
        );
    }
    let says = |digest: &Digest, reason: &str| {
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("keep {digest}")))
            .unwrap_or_else(|| panic!("no keep line for {digest}: {}", run.stdout));
        assert!(line.contains(reason), "{line}");
    };
    says(&p2, "deployed in an environment");
    says(&child, "child of kept index");
    says(&index, "among the newest 2");
    says(&p5, "is always kept");
    says(&release, "not a commit tag");
    eprintln!("dry-run registry requests: {:?}", method_counts(&lines));

    // The real run learns that p2 is deployed from the cluster: a Deployment in the
    // environment's namespace runs it.
    let sim = kube_sim::KubeSim::start(kube_sim::SimOptions::default().time_scale(100.0))
        .await
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    deploy_image(&sim, "p", &keep).await;
    let before = server.access_log().len();
    let run = prune(
        dir.path(),
        &config,
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines = server.access_log().split_off(before);
    let counts = method_counts(&lines);
    eprintln!("prune registry requests: {counts:?}");
    assert_eq!(counts.get("DELETE"), Some(&2), "{lines:?}");
    assert!(!counts.contains_key("PUT") && !counts.contains_key("POST"));
    for digest in [&p1, &p3] {
        assert_eq!(
            c.head_manifest(&repo.with_digest(digest.clone()))
                .await
                .unwrap(),
            None
        );
    }
    for digest in [&p2, &child, &att, &index, &p5, &release] {
        assert_eq!(
            c.head_manifest(&repo.with_digest(digest.clone()))
                .await
                .unwrap()
                .as_ref(),
            Some(digest)
        );
    }
    let output = std::fs::read_to_string(dir.path().join("github_output")).unwrap();
    assert!(
        output.contains(p1.as_str()) && output.contains(p3.as_str()),
        "{output}"
    );

    // Running again deletes nothing more.
    let before = server.access_log().len();
    let run = prune(dir.path(), &config, &["--keep-digest", &keep], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = server.access_log().split_off(before);
    assert_eq!(lines.iter().filter(|l| l.method == "DELETE").count(), 0);

    // No reachable cluster: nothing is listed or deleted, and the error says why.
    let before = server.access_log().len();
    let missing = dir.path().join("no-such-kubeconfig");
    let run = prune(
        dir.path(),
        &config,
        &["--kubeconfig", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no-such-kubeconfig"), "{}", run.stderr);
    assert_eq!(server.access_log().len(), before);
}

/// Creates namespace `ns` and a Deployment in it running `image`, through the API.
async fn deploy_image(sim: &kube_sim::KubeSim, ns: &str, image: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    jisu_deploy::tls::ensure_provider();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client, ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
}

#[test]
fn bad_deployed_digest_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), "127.0.0.1:9");
    let run = prune(dir.path(), &config, &["--keep-digest", "sha256:nope"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--keep-digest"), "{}", run.stderr);
    let missing = dir.path().join("deployed.txt");
    let run = prune(
        dir.path(),
        &config,
        &["--keep-digests-file", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("deployed digests"), "{}", run.stderr);
    let run = prune(dir.path(), &config, &["--backend", "github-packages"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("GITHUB_TOKEN"), "{}", run.stderr);
}

/// The proxy must fail a request GitHub's description does not allow, or the test that
/// relies on it would prove nothing.
async fn prism_rejects_requests_outside_the_description(prism: &PrismProxy) {
    let http = reqwest::Client::new();
    let good = http
        .get(format!(
            "{}/orgs/jisu/packages/container/web/versions?per_page=100",
            prism.url()
        ))
        .header("User-Agent", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200, "{}", prism.log());
    let bad = http
        .get(format!(
            "{}/orgs/jisu/packages/container/web/versions?per_page=many",
            prism.url()
        ))
        .header("User-Agent", "test")
        .send()
        .await
        .unwrap();
    assert!(
        bad.status().is_client_error(),
        "{} {}",
        bad.status(),
        prism.log()
    );
}

const TOKEN: &str = "ghp_test_token_never_printed";

#[tokio::test(flavor = "multi_thread")]
async fn github_packages_prune_through_prism_validated_requests() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), &server.host());
    let c = client(&server);
    let repo = Reference::parse(&format!("{}/jisu/api:x", server.host())).unwrap();

    // The manifests live in the registry; the fake API lists them as package versions.
    let p1 = push_dated(&c, &repo, None, &days_ago(50), "amd64").await;
    let p2 = push_dated(&c, &repo, None, &days_ago(40), "amd64").await;
    let child = push_dated(&c, &repo, None, &days_ago(30), "amd64").await;
    let att = push_attestation(&c, &repo, &child).await;
    let index = push_index(&c, &repo, "tmp", &days_ago(30), &child, &att).await;
    let p4 = push_dated(&c, &repo, None, &days_ago(20), "amd64").await;
    let orphan = push_dated(&c, &repo, None, &days_ago(30), "amd64").await;
    let young = push_dated(&c, &repo, None, &days_ago(1), "amd64").await;
    let deployed = push_dated(&c, &repo, None, &days_ago(30), "amd64").await;
    let release = push_dated(&c, &repo, None, &days_ago(300), "amd64").await;
    let v = |id: u64, digest: &Digest, tags: &[String], days: i64| FakeVersion {
        id,
        digest: digest.clone(),
        tags: tags.to_vec(),
        created: days_ago(days),
    };
    let versions = vec![
        v(1, &p1, &[commit_tag(1)], 50),
        v(2, &p2, &[commit_tag(2)], 40),
        v(3, &index, &[commit_tag(3)], 30),
        v(4, &p4, &[commit_tag(4), "production".into()], 20),
        v(6, &child, &[], 30),
        v(7, &att, &[], 30),
        v(8, &orphan, &[], 30),
        v(9, &young, &[], 1),
        v(10, &deployed, &[], 30),
        v(11, &release, &["v2.0.0".into()], 300),
    ];
    let fake = FakePackages::start("api", versions.clone(), 3).await;
    let prism = PrismProxy::start(&fake.server.uri());
    fake.state.lock().unwrap().public_base = prism.url();
    prism_rejects_requests_outside_the_description(&prism).await;
    let log_start = prism.log().len();
    fake.state.lock().unwrap().throttle_next = true;
    let keep = deployed.to_string();
    let api = prism.url();
    let args = |dry: bool| {
        let mut a = vec![
            "--backend",
            "github-packages",
            "--github-api-url",
            api.as_str(),
            "--keep-digest",
            keep.as_str(),
        ];
        if dry {
            a.push("--dry-run");
        }
        a
    };
    let env = [("GITHUB_TOKEN", TOKEN)];

    let run = tokio::task::block_in_place(|| prune(dir.path(), &config, &args(true), &env));
    assert_eq!(
        run.code,
        0,
        "{}\n{}\nprism:\n{}",
        run.stdout,
        run.stderr,
        prism.log()
    );
    let would: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("would delete"))
        .collect();
    assert_eq!(would.len(), 3, "{}", run.stdout);
    for digest in [&p1, &p2, &orphan] {
        assert!(
            would.iter().any(|l| l.contains(digest.as_str())),
            "{}",
            run.stdout
        );
    }
    // No checkout history here: the versions' `created_at` (push time) orders the builds,
    // and the reasons say so.
    for (digest, newer, nearest) in [(&p1, 3, 2), (&p2, 2, 3)] {
        let line = would.iter().find(|l| l.contains(digest.as_str())).unwrap();
        let expected = format!(
            "{newer} `api` commit builds are provably newer (keeping 2): `{}` was pushed later, {} (Packages API)",
            commit_tag(nearest),
            days_ago_shown(&versions, nearest)
        );
        assert!(line.contains(&expected), "{line}\n{expected}");
    }
    {
        let state = fake.state.lock().unwrap();
        assert!(state.deleted.is_empty());
        assert_eq!(state.throttled, 1, "the 429 was answered once and retried");
    }

    let requests_before = fake.requests().await.len();
    let run = tokio::task::block_in_place(|| prune(dir.path(), &config, &args(false), &env));
    assert_eq!(
        run.code,
        0,
        "{}\n{}\nprism:\n{}",
        run.stdout,
        run.stderr,
        prism.log()
    );
    for text in [&run.stdout, &run.stderr, &prism.log()] {
        assert!(!text.contains(TOKEN), "the token leaked");
    }
    let mut deleted = fake.state.lock().unwrap().deleted.clone();
    deleted.sort();
    assert_eq!(deleted, vec![1, 2, 8]);
    let requests = fake.requests().await.split_off(requests_before);
    eprintln!("Packages API requests of one prune: {requests:#?}");
    // 4 pages of `api`, 1 of `web`, 3 deletions.
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("GET")).count(),
        5,
        "{requests:#?}"
    );
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("DELETE")).count(),
        3
    );
    assert!(
        requests
            .iter()
            .all(|r| r.contains("/orgs/jisu/packages/container/")),
        "{requests:#?}"
    );

    // A user-owned package: the /users/{username}/... paths, validated the same way.
    let mut user_args = args(true);
    user_args.extend(["--owner-kind", "user"]);
    let before = fake.requests().await.len();
    let run = tokio::task::block_in_place(|| prune(dir.path(), &config, &user_args, &env));
    assert_eq!(
        run.code,
        0,
        "{}\n{}\nprism:\n{}",
        run.stdout,
        run.stderr,
        prism.log()
    );
    let requests = fake.requests().await.split_off(before);
    assert!(
        !requests.is_empty()
            && requests
                .iter()
                .all(|r| r.starts_with("GET /users/jisu/packages/container/")),
        "{requests:#?}"
    );
    // The same from the maintenance workflow's `owner-kind` input (INPUT_OWNER-KIND).
    let before = fake.requests().await.len();
    let workflow_env = [("GITHUB_TOKEN", TOKEN), ("INPUT_OWNER-KIND", "user")];
    let run =
        tokio::task::block_in_place(|| prune(dir.path(), &config, &args(true), &workflow_env));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let requests = fake.requests().await.split_off(before);
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.contains(" /users/jisu/")),
        "{requests:#?}"
    );

    // Fail closed: the kept index's child vanished from the listing -> nothing deleted.
    fake.state.lock().unwrap().versions.retain(|v| v.id != 6);
    let run = tokio::task::block_in_place(|| prune(dir.path(), &config, &args(false), &env));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not in the listing"), "{}", run.stderr);
    assert_eq!(fake.state.lock().unwrap().deleted.len(), 3);

    // Fail closed: a page that keeps failing -> no listing -> nothing deleted.
    {
        let mut state = fake.state.lock().unwrap();
        state.versions.push(v(6, &child, &[], 30));
        state.versions.push(v(12, &p1, &[], 90));
        state.failing_page = Some(2);
    }
    let run = tokio::task::block_in_place(|| prune(dir.path(), &config, &args(false), &env));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(fake.state.lock().unwrap().deleted.len(), 3);

    // prism validated every request against GitHub's description; it logs violations.
    // (Response violations are expected: the 429 and 500 are not in the description.)
    let log = prism.log().split_off(log_start);
    let request_violations: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Violation: request"))
        .collect();
    assert!(request_violations.is_empty(), "{request_violations:#?}");
}

/// [`prune`] with a deadline: `None` when the binary was still running after `limit` (it is
/// then killed), so a listing that never ends fails the test instead of hanging it.
fn prune_within(
    dir: &Path,
    config: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    limit: std::time::Duration,
) -> Option<Run> {
    let out_path = dir.join("prune.stdout");
    let err_path = dir.join("prune.stderr");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("GITHUB_OUTPUT", dir.join("github_output"))
        .envs(env.iter().copied())
        .current_dir(crate::support::repo_root())
        .args(["image", "prune", "--config"])
        .arg(config)
        .arg("--workspace")
        .arg(dir)
        .args(["--registry-allow-http", "--no-cluster"])
        .args(extra)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("the jisu-deploy binary runs");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    status.map(|status| Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn github_packages_listing_that_never_ends_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    // The listing fails before any registry request, so no registry needs to run.
    let config = workspace(dir.path(), "127.0.0.1:9");
    let fake = FakePackages::start("api", Vec::new(), 1).await;
    let api = fake.server.uri();
    let args = [
        "--backend",
        "github-packages",
        "--github-api-url",
        api.as_str(),
    ];
    let env = [("GITHUB_TOKEN", TOKEN)];
    let limit = std::time::Duration::from_secs(60);

    // A `next` link that names a page already fetched.
    fake.state.lock().unwrap().next_repeats = true;
    let run = tokio::task::block_in_place(|| prune_within(dir.path(), &config, &args, &env, limit))
        .expect("a next link repeating a page must end the listing, not loop");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("repeats itself"), "{}", run.stderr);
    assert!(fake.state.lock().unwrap().list_requests <= 3);

    // A `next` link to a new page every time: the page bound stops it.
    {
        let mut state = fake.state.lock().unwrap();
        state.next_repeats = false;
        state.endless = true;
        state.list_requests = 0;
    }
    let run = tokio::task::block_in_place(|| prune_within(dir.path(), &config, &args, &env, limit))
        .expect("an endless listing must hit the page bound, not run on");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("after 1000 pages"), "{}", run.stderr);
    let state = fake.state.lock().unwrap();
    assert_eq!(state.list_requests, 1_000);
    assert!(state.deleted.is_empty(), "nothing may be deleted");
    assert!(!run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN));
}
