//! Registry retag and copy against a real CNCF distribution registry (Debian
//! `docker-registry` 2.8), cross-checked with skopeo and the registry's access log.

mod fake_registry;
mod hardening;
mod images;
mod mount_refusing_proxy;
mod token_server;

use std::process::Command;
use std::time::Instant;

use jisu_deploy::images::credentials::{RegistryAccess, retag_images};
use jisu_deploy::oci::client::BearerRealm;
use jisu_deploy::oci::{
    ClientOptions, Credentials, Reference, RegistryClient, RegistryError, RequestKind,
    RetagOptions, retag,
};

use crate::support::registry_server::{AccessLine, RegistryServer, ServerAuth};
use images::{image, multi_arch, push_image, push_multi_arch, write_oci_layout};
use mount_refusing_proxy::MountRefusingProxy;
use token_server::TokenServer;

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn client(server: &RegistryServer, credentials: Option<Credentials>) -> RegistryClient {
    RegistryClient::new(
        &server.host(),
        ClientOptions {
            allow_http: true,
            credentials,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// The manifest bytes skopeo reads, an independent check that nothing was re-serialized.
fn skopeo_raw(reference: &Reference, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.args(["--creds", creds]);
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo not found; run ci/install-test-deps.sh");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn lines_since(server: &RegistryServer, before: usize) -> Vec<AccessLine> {
    server.access_log().split_off(before)
}

#[tokio::test]
async fn retag_within_a_repository_is_one_get_one_head_one_put_and_idempotent() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/backend:sha-0123abc"));
    let img = image(3, 4096, "amd64");
    push_image(&client(&server, None), &src, &img).await;

    let dst = src.with_tag("staging").unwrap();
    let c = client(&server, None);
    let log_before = server.access_log().len();
    let out = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(out.written);
    assert_eq!(out.digest, img.digest());
    assert_eq!(out.requests.get(RequestKind::ManifestGet), 1);
    assert_eq!(out.requests.get(RequestKind::ManifestHead), 1);
    assert_eq!(out.requests.get(RequestKind::ManifestPut), 1);
    assert_eq!(out.requests.total(), 3, "{}", out.requests);
    // The registry saw exactly what the counter says.
    let seen = lines_since(&server, log_before);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen.iter().map(|l| l.method.as_str()).collect::<Vec<_>>(),
        ["GET", "HEAD", "PUT"]
    );
    assert_eq!(
        skopeo_raw(&dst, None),
        img.manifest.to_vec(),
        "bytes must be identical"
    );

    let again = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(!again.written, "same digest already tagged: no write");
    assert_eq!(again.requests.get(RequestKind::ManifestPut), 0);
    assert_eq!(again.requests.total(), 2, "{}", again.requests);
}

#[tokio::test]
async fn cross_repository_copy_mounts_every_blob_and_moves_no_data() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/build:sha-1"));
    let img = image(3, 64 * 1024, "amd64");
    push_image(&client(&server, None), &src, &img).await;

    let dst = r(&format!("{host}/jisu/backend:sha-1"));
    let c = client(&server, None);
    let log_before = server.access_log().len();
    let out = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(out.written);
    assert_eq!(out.blobs_mounted, 4, "config and three layers");
    assert_eq!((out.blobs_copied, out.blob_bytes_copied), (0, 0));
    assert_eq!(out.requests.get(RequestKind::BlobGet), 0);
    assert_eq!(out.requests.get(RequestKind::BlobUpload), 0);
    assert_eq!(out.requests.get(RequestKind::BlobMount), 4);
    let seen = lines_since(&server, log_before);
    assert!(
        seen.iter()
            .all(|l| l.method != "PATCH" && !(l.method == "GET" && l.path.contains("/blobs/"))),
        "no blob data may move: {seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|l| l.method == "POST")
            .all(|l| l.status == 201 && l.path.contains("mount=")),
        "every mount answered 201: {seen:?}"
    );
    assert_eq!(skopeo_raw(&dst, None), img.manifest.to_vec());

    let again = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(!again.written);
    assert_eq!(again.requests.blob_requests(), 0);
}

#[tokio::test]
async fn multi_arch_index_with_attestation_arrives_byte_identical() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/build:sha-2"));
    let multi = multi_arch();
    push_multi_arch(&client(&server, None), &src, &multi).await;

    let dst = r(&format!("{host}/jisu/frontend:sha-2"));
    let c = client(&server, None);
    let out = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert_eq!(out.digest, jisu_deploy::oci::Digest::of(&multi.index));
    assert_eq!(out.manifests_written, 4, "amd64, arm64, attestation, index");
    assert_eq!(
        out.blobs_mounted, 8,
        "2 x (config + 2 layers) + attestation config + statement"
    );
    assert_eq!(out.blob_bytes_copied, 0);
    assert_eq!(
        out.media_type.as_deref(),
        Some(jisu_deploy::oci::manifest::OCI_INDEX)
    );

    assert_eq!(skopeo_raw(&dst, None), multi.index.to_vec(), "index bytes");
    for child in &multi.children {
        let pinned = dst.with_digest(child.digest());
        assert_eq!(
            skopeo_raw(&pinned, None),
            child.manifest.to_vec(),
            "child {pinned}"
        );
    }

    // Promotion inside the destination repository touches only the top manifest.
    let prod = dst.with_tag("prod").unwrap();
    let promoted = retag(&c, &dst, &prod, &RetagOptions::default())
        .await
        .unwrap();
    assert!(promoted.written);
    assert_eq!(promoted.requests.manifest_requests(), 3);
    assert_eq!(promoted.requests.total(), 3);
    assert_eq!(skopeo_raw(&prod, None), multi.index.to_vec());
}

#[tokio::test]
async fn image_pushed_by_skopeo_from_an_oci_layout_retags_unchanged() {
    let server = RegistryServer::start();
    let host = server.host();
    let layout = tempfile::tempdir().unwrap();
    let img = image(2, 8192, "amd64");
    write_oci_layout(layout.path(), "v1", &img);
    let src = r(&format!("{host}/jisu/worker:v1"));
    let status = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.path().display()))
        .arg(format!("docker://{src}"))
        .output()
        .expect("skopeo");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let pushed = skopeo_raw(&src, None);

    let dst = r(&format!("{host}/jisu/worker-prod:v1"));
    let out = retag(&client(&server, None), &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(out.written);
    assert_eq!(skopeo_raw(&dst, None), pushed);
    assert_eq!(out.digest, jisu_deploy::oci::Digest::of(&pushed));
}

#[tokio::test]
async fn basic_auth_registry_requires_and_accepts_credentials() {
    let server = RegistryServer::start_with(ServerAuth::Htpasswd {
        username: "ci".into(),
        password: "s3cret-pass".into(),
    });
    let host = server.host();
    let good = || Some(Credentials::new("ci", "s3cret-pass"));
    let src = r(&format!("{host}/jisu/backend:sha-9"));
    let img = image(1, 1024, "amd64");
    push_image(&client(&server, good()), &src, &img).await;
    let dst = src.with_tag("prod").unwrap();

    let err = retag(&client(&server, None), &src, &dst, &RetagOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationRequired { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&src.to_string()) && msg.contains("--registry-username"),
        "{msg}"
    );

    let wrong = Some(Credentials::new("ci", "not-the-password"));
    let err = retag(
        &client(&server, wrong),
        &src,
        &dst,
        &RetagOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-password"));

    let c = client(&server, good());
    let out = retag(&c, &src, &dst, &RetagOptions::default())
        .await
        .unwrap();
    assert!(out.written);
    // Credentials wait for the challenge: the first GET draws it, then every request
    // carries them.
    assert_eq!(out.requests.total(), 4, "{}", out.requests);
    assert_eq!(out.requests.get(RequestKind::ManifestGet), 2);
    assert_eq!(
        skopeo_raw(&dst, Some("ci:s3cret-pass")),
        img.manifest.to_vec()
    );
}

#[tokio::test]
async fn bearer_tokens_are_exchanged_with_the_token_service() {
    let tokens = TokenServer::start("bot", "ghp_test_token").await;
    let server = RegistryServer::start_with(ServerAuth::Token {
        realm: tokens.realm.clone(),
        service: token_server::SERVICE.into(),
        issuer: token_server::ISSUER.into(),
        root_cert: tokens.cert.clone(),
    });
    let host = server.host();
    let creds = || Some(Credentials::new("bot", "ghp_test_token"));
    // The token service listens on another port than the registry: credentials go there
    // only when it is named as trusted.
    let trusting = |credentials: Option<Credentials>| {
        RegistryClient::new(
            &host,
            ClientOptions {
                allow_http: true,
                credentials,
                trusted_token_realms: vec![tokens.realm.clone()],
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };
    let src = r(&format!("{host}/jisu/backend:sha-7"));
    let img = image(2, 1024, "amd64");
    let pusher = trusting(creds());
    push_image(&pusher, &src, &img).await;

    // Not trusted: the token service is asked anonymously, and the error says how to
    // allow it.
    let before_tokens = tokens.requests();
    let err = retag(
        &client(&server, creds()),
        &src,
        &src.with_tag("untrusted").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::CredentialsWithheld { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--registry-token-realm"), "{err}");
    assert!(tokens.requests() > before_tokens);

    // Discovery: the first request draws the challenge, then one token covers the retag.
    let c = trusting(creds());
    let out = retag(
        &c,
        &src,
        &src.with_tag("staging").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap();
    assert!(out.written);
    assert_eq!(out.requests.get(RequestKind::Token), 1, "{}", out.requests);
    assert_eq!(
        out.requests.get(RequestKind::ManifestGet),
        2,
        "one answered 401 with the challenge"
    );
    assert_eq!(out.requests.get(RequestKind::ManifestHead), 1);
    assert_eq!(out.requests.get(RequestKind::ManifestPut), 1);

    // Known token service (as for ghcr.io): three manifest requests and one token request.
    let preset = RegistryClient::new(
        &host,
        ClientOptions {
            allow_http: true,
            credentials: creds(),
            bearer_realm: Some(BearerRealm {
                realm: tokens.realm.clone(),
                service: Some(token_server::SERVICE.into()),
            }),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let before_tokens = tokens.requests();
    let out = retag(
        &preset,
        &src,
        &src.with_tag("prod").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.requests.manifest_requests(), 3, "{}", out.requests);
    assert_eq!(out.requests.get(RequestKind::Token), 1);
    assert_eq!(out.requests.total(), 4);
    assert_eq!(tokens.requests() - before_tokens, 1);

    // Cross-repository copy on a Bearer registry: one token for both repositories.
    let copy = retag(
        &preset,
        &src,
        &r(&format!("{host}/jisu/mirror:sha-7")),
        &RetagOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(copy.blobs_mounted, 3);
    assert_eq!(
        copy.requests.get(RequestKind::Token),
        1,
        "{}",
        copy.requests
    );

    // Anonymous callers get a token without access: the registry still refuses.
    let err = retag(
        &client(&server, None),
        &src,
        &src.with_tag("x").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationRequired { .. }),
        "{err:?}"
    );

    // Wrong token: the token service answers 401.
    let wrong = trusting(Some(Credentials::new("bot", "ghp_wrong_value")));
    let err = retag(
        &wrong,
        &src,
        &src.with_tag("y").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("ghp_wrong_value"));
}

#[tokio::test]
async fn refused_mount_fails_by_default_and_streams_when_allowed() {
    let server = RegistryServer::start();
    let proxy = MountRefusingProxy::start(server.host()).await;
    let host = proxy.host.clone();
    let via_proxy = || {
        RegistryClient::new(
            &host,
            ClientOptions {
                allow_http: true,
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };
    let src = r(&format!("{host}/jisu/build:sha-3"));
    // One layer larger than the 8 MiB copy chunk, so the stream is sent in two PATCHes.
    let mut img = image(1, 9 * 1024 * 1024 + 123, "amd64");
    let small = image(1, 3000, "amd64");
    img.layers.extend(small.layers);
    let img = images::rebuild_manifest(img);
    push_image(&via_proxy(), &src, &img).await;
    let dst = r(&format!("{host}/jisu/backend:sha-3"));

    let log_before = server.access_log().len();
    let err = retag(&via_proxy(), &src, &dst, &RetagOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::MountRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("allow_blob_copy"), "{err}");
    let seen = lines_since(&server, log_before);
    assert!(
        seen.iter()
            .any(|l| l.method == "DELETE" && l.path.contains("/blobs/uploads/") && l.status == 204),
        "the upload session the refusal opened is cancelled: {seen:?}"
    );

    let c = via_proxy();
    let out = retag(
        &c,
        &src,
        &dst,
        &RetagOptions {
            allow_blob_copy: true,
        },
    )
    .await
    .unwrap();
    assert!(out.written);
    assert_eq!((out.blobs_mounted, out.blobs_copied), (0, 3));
    let blob_total: u64 =
        (img.config.data.len() + img.layers.iter().map(|l| l.data.len()).sum::<usize>()) as u64;
    assert_eq!(out.blob_bytes_copied, blob_total);
    assert_eq!(out.requests.get(RequestKind::BlobGet), 3);
    // Per blob: one PATCH per started 8 MiB plus the closing PUT.
    assert_eq!(
        out.requests.get(RequestKind::BlobUpload),
        (1 + 1) + (2 + 1) + (1 + 1)
    );
    assert_eq!(
        proxy.refused(),
        1 + 3,
        "first retag stops at the first refusal"
    );
    assert_eq!(
        skopeo_raw(&r(&format!("{}/jisu/backend:sha-3", server.host())), None),
        img.manifest.to_vec()
    );
}

#[tokio::test]
async fn missing_source_tag_is_a_clear_error_naming_the_reference() {
    let server = RegistryServer::start();
    let src = r(&format!("{}/jisu/backend:does-not-exist", server.host()));
    let err = retag(
        &client(&server, None),
        &src,
        &src.with_tag("prod").unwrap(),
        &RetagOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RegistryError::ManifestNotFound { reference } if *reference == src.to_string())
    );
    assert!(
        err.to_string().contains("jisu/backend:does-not-exist"),
        "{err}"
    );
}

async fn run_retag(
    src: String,
    dst: String,
    allow_http: bool,
) -> anyhow::Result<jisu_deploy::oci::RetagOutcome> {
    let access = RegistryAccess {
        username: None,
        allow_http,
        token_realms: Vec::new(),
    };
    retag_images(&src, &dst, &access, &RetagOptions::default()).await
}

#[tokio::test]
async fn retag_command_validates_references_and_speaks_http_to_loopback() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/backend:v1"));
    push_image(&client(&server, None), &src, &image(1, 512, "amd64")).await;

    for (bad, expected) in [
        (format!("{host}/Jisu/Backend:v1"), "lowercase"),
        (format!("{host}/jisu/backend:-v1"), "tag"),
        (
            format!("{host}/jisu/backend@sha256:abc"),
            "64 lowercase hex",
        ),
    ] {
        let err = run_retag(bad.clone(), format!("{host}/jisu/backend:v2"), true)
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(expected) && msg.contains("SRC"),
            "{bad}: {msg}"
        );
    }

    // A registry on a loopback address is spoken to over plain HTTP without the flag, as
    // Docker does.
    let out = run_retag(src.to_string(), format!("{host}/jisu/backend:v2"), false)
        .await
        .unwrap();
    assert!(out.written);
}

#[tokio::test]
async fn request_counts_and_wall_time_versus_skopeo() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/bench:build"));
    let img = image(3, 1024 * 1024, "amd64");
    push_image(&client(&server, None), &src, &img).await;

    struct Row {
        case: &'static str,
        tool: &'static str,
        requests: usize,
        ms: u128,
        blob_get: usize,
        counter: String,
    }
    let mut rows = Vec::new();
    for (case, dst_repo) in [
        ("same repository", "jisu/bench"),
        ("other repository", "jisu/bench-prod"),
    ] {
        let ours = r(&format!("{host}/{dst_repo}:ours"));
        let c = client(&server, None);
        let before = server.access_log().len();
        let started = Instant::now();
        let out = retag(&c, &src, &ours, &RetagOptions::default())
            .await
            .unwrap();
        let ms = started.elapsed().as_millis();
        let seen = lines_since(&server, before);
        assert_eq!(
            seen.len() as u64,
            out.requests.total(),
            "counter agrees with the access log"
        );
        assert_eq!(out.blob_bytes_copied, 0);
        rows.push(Row {
            case,
            tool: "jisu-deploy",
            requests: seen.len(),
            ms,
            blob_get: seen
                .iter()
                .filter(|l| l.method == "GET" && l.path.contains("/blobs/"))
                .count(),
            counter: out.requests.to_string(),
        });

        // A repository of its own, so skopeo finds none of the blobs our copy linked.
        let theirs = if dst_repo == "jisu/bench" {
            format!("docker://{host}/{dst_repo}:skopeo")
        } else {
            format!("docker://{host}/{dst_repo}-skopeo:skopeo")
        };
        let before = server.access_log().len();
        let started = Instant::now();
        let run = Command::new("skopeo")
            .args([
                "copy",
                "--insecure-policy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "-q",
            ])
            .arg(format!("docker://{src}"))
            .arg(&theirs)
            .output()
            .expect("skopeo");
        let ms = started.elapsed().as_millis();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let seen = lines_since(&server, before);
        rows.push(Row {
            case,
            tool: "skopeo copy",
            requests: seen.len(),
            ms,
            blob_get: seen
                .iter()
                .filter(|l| l.method == "GET" && l.path.contains("/blobs/"))
                .count(),
            counter: {
                let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
                for l in &seen {
                    let what = if l.path.contains("/manifests/") {
                        "manifest"
                    } else if l.path.contains("/blobs/uploads") {
                        "upload"
                    } else if l.path.contains("/blobs/") {
                        "blob"
                    } else if l.path == "/v2/" {
                        "ping"
                    } else {
                        "other"
                    };
                    *by_kind.entry(format!("{} {what}", l.method)).or_default() += 1;
                }
                format!("{by_kind:?}")
            },
        });
    }
    println!("\nretag of a 3-layer image (3 x 1 MiB) on a local distribution 2.8 registry:");
    println!(
        "{:<17} {:<12} {:>8} {:>9} {:>8}  detail",
        "case", "tool", "requests", "blob GETs", "ms"
    );
    for row in &rows {
        println!(
            "{:<17} {:<12} {:>8} {:>9} {:>8}  {}",
            row.case, row.tool, row.requests, row.blob_get, row.ms, row.counter
        );
    }
    assert_eq!(
        rows[0].requests, 3,
        "same-repository retag is three requests"
    );
    assert_eq!(
        rows[2].blob_get, 0,
        "cross-repository copy reads no blob data"
    );
}

#[tokio::test]
async fn image_retag_command_on_the_real_registry() {
    let server = RegistryServer::start();
    let host = server.host();
    let src = r(&format!("{host}/jisu/platform:backend-0123abc"));
    let img = image(2, 1024, "amd64");
    push_image(&client(&server, None), &src, &img).await;
    let src_text = src.to_string();
    let dst_text = format!("{host}/jisu/platform:backend-production");

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("github_output");
    let env = [("GITHUB_OUTPUT", output.to_str().unwrap())];
    let first = crate::support::jisu(
        &[
            "image",
            "retag",
            &src_text,
            &dst_text,
            "--registry-allow-http",
        ],
        &env,
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains(&format!("tagged {}", img.digest())),
        "{}",
        first.stdout
    );
    let again = crate::support::jisu(
        &[
            "image",
            "retag",
            &src_text,
            &dst_text,
            "--registry-allow-http",
        ],
        &env,
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("already tagged"), "{}", again.stdout);
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert_eq!(
        outputs
            .matches(&format!("digest={}\n", img.digest()))
            .count(),
        2,
        "{outputs}"
    );

    // A malformed reference is bad input: exit 2, and the registry sees nothing.
    let before = server.access_log().len();
    let bad = crate::support::jisu(
        &[
            "image",
            "retag",
            &src_text,
            &format!("{host}/Jisu/x:y"),
            "--registry-allow-http",
        ],
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("Jisu/x"), "{}", bad.stderr);
    assert_eq!(server.access_log().len(), before);
}
