//! Registries that misbehave, through the real binary where a command exists (`image
//! retag`) and through the library otherwise: when credentials are sent and where, what
//! of a server's text reaches the output, how large a body is read, what may be PUT, and
//! how long a tag list is followed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jisu_deploy::images::promote::{Resolved, write_all};
use jisu_deploy::oci::manifest::OCI_MANIFEST;
use jisu_deploy::oci::{ClientOptions, Digest, Reference, RegistryClient};

use super::fake_registry::{Body, FakeRegistry, Reply, Seen};
use super::images::image;
use crate::support::Run;

const USER: &str = "bot";
const PASSWORD: &str = "s3cret-Registry-Pass";

fn basic() -> String {
    format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

/// `image retag` through the binary, with credentials when `with_credentials`.
fn retag_cli(src: &str, dst: &str, with_credentials: bool) -> Run {
    let mut args = vec!["image", "retag", src, dst];
    let mut env = Vec::new();
    if with_credentials {
        args.extend(["--registry-username", USER]);
        env.push(("REGISTRY_PASSWORD", PASSWORD));
    }
    tokio::task::block_in_place(|| crate::support::jisu(&args, &env))
}

fn assert_no_secret(run: &Run) {
    let encoded = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&encoded),
            "a credential was printed:\n{text}"
        );
    }
}

/// A distribution error body that repeats the request's Authorization header, as a
/// careless registry or proxy might.
fn echo(seen: &Seen) -> Vec<u8> {
    format!(
        r#"{{"errors":[{{"code":"DENIED","message":"request carried Authorization: {}"}}]}}"#,
        seen.authorization.as_deref().unwrap_or("(none)")
    )
    .into_bytes()
}

fn refs(host: &str) -> (String, String) {
    (format!("{host}/jisu/app:v1"), format!("{host}/jisu/app:v2"))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_not_sent_before_a_challenge_and_an_echo_is_not_printed() {
    let fake = FakeRegistry::start(|seen| Reply::new(500).body(echo(seen))).await;
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, true);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_no_secret(&run);
    let seen = fake.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s.authorization.is_none()),
        "no challenge, so no credentials: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_credentials_follow_a_challenge_and_their_echo_is_blanked() {
    let fake = FakeRegistry::start(|seen| match seen.authorization {
        None => Reply::new(401).header("WWW-Authenticate", r#"Basic realm="fake""#),
        Some(_) => Reply::new(400).body(echo(seen)),
    })
    .await;
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, true);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_no_secret(&run);
    assert!(
        run.stderr.contains("Authorization: Basic ***"),
        "{}",
        run.stderr
    );
    let auth: Vec<Option<String>> = fake.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(auth, vec![None, Some(basic())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_service_on_another_port_gets_no_credentials() {
    let tokens =
        FakeRegistry::start(|_| Reply::new(200).body(r#"{"token":"anonymous-token"}"#)).await;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="fake",scope="repository:jisu/app:pull""#,
        tokens.host
    );
    let fake =
        FakeRegistry::start(move |_| Reply::new(401).header("WWW-Authenticate", &challenge)).await;
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, true);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_no_secret(&run);
    let asked = tokens.seen();
    assert!(
        !asked.is_empty() && asked.iter().all(|s| s.authorization.is_none()),
        "the token service on another port was sent credentials: {asked:?}"
    );
    assert!(
        run.stderr.contains("--registry-token-realm")
            && run.stderr.contains(&format!("http://{}", tokens.host)),
        "{}",
        run.stderr
    );
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.authorization.as_deref() != Some(basic().as_str())),
        "the registry gets no Basic credentials after a Bearer challenge"
    );
}

/// The same token service on another port, named with `--registry-token-realm`: now it is
/// trusted with the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_service_named_with_the_flag_gets_the_credentials() {
    let tokens = FakeRegistry::start(|_| Reply::new(200).body(r#"{"token":"t"}"#)).await;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="fake",scope="repository:jisu/app:pull""#,
        tokens.host
    );
    let fake =
        FakeRegistry::start(move |_| Reply::new(401).header("WWW-Authenticate", &challenge)).await;
    let (src, dst) = refs(&fake.host);
    let realm = format!("http://{}", tokens.host);
    let args = [
        "image",
        "retag",
        &src,
        &dst,
        "--registry-username",
        USER,
        "--registry-token-realm",
        &realm,
    ];
    let run = tokio::task::block_in_place(|| {
        crate::support::jisu(&args, &[("REGISTRY_PASSWORD", PASSWORD)])
    });
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_no_secret(&run);
    assert!(
        tokens
            .seen()
            .iter()
            .any(|s| s.authorization.as_deref() == Some(basic().as_str())),
        "the named token service gets the credentials"
    );
}

/// A registry whose token service is on its own origin: the credentials go there (after
/// the challenge), and the retag goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_service_on_the_registrys_own_origin_gets_the_credentials() {
    let img = image(1, 64, "amd64");
    let manifest = img.manifest.to_vec();
    let host_cell = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let host_for_handler = host_cell.clone();
    let fake = FakeRegistry::start(move |seen| {
        let host = host_for_handler.get().cloned().unwrap_or_default();
        if seen.target.starts_with("/token") {
            return if seen.authorization.as_deref() == Some(basic().as_str()) {
                Reply::new(200).body(r#"{"token":"good-token"}"#)
            } else {
                Reply::new(401)
            };
        }
        if seen.authorization.as_deref() != Some("Bearer good-token") {
            let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
            return Reply::new(401).header("WWW-Authenticate", &challenge);
        }
        match (seen.method.as_str(), seen.target.as_str()) {
            ("GET", "/v2/jisu/app/manifests/v1") => Reply::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(manifest.clone()),
            ("PUT", "/v2/jisu/app/manifests/v2") => Reply::new(201),
            _ => Reply::new(404),
        }
    })
    .await;
    host_cell.set(fake.host.clone()).unwrap();
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, true);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_no_secret(&run);
    let seen = fake.seen();
    assert!(seen.iter().any(|s| s.method == "PUT"), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|s| s.authorization.as_deref() == Some(basic().as_str()))
            .all(|s| s.target.starts_with("/token")),
        "Basic credentials went only to the token service: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_error_text_is_printed_as_one_capped_line() {
    let message = format!(
        "first line\nsecond-line-marker\r\n::error::forged{}TAIL-MARKER",
        "x".repeat(10_000)
    );
    let body = serde_json::json!({"errors": [{"code": "UNKNOWN", "message": message}]}).to_string();
    let fake = FakeRegistry::start(move |_| Reply::new(400).body(body.clone())).await;
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, false);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(r"first line\nsecond-line-marker\r\n"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("second-line-marker")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("TAIL-MARKER"), "not capped");
    assert!(run.stderr.len() < 3_000, "{}", run.stderr.len());
}

/// A manifest GET answered with `body`, a destination that does not exist yet and a PUT
/// that would succeed: the registry a careless retag writes anything into.
async fn manifest_server(body: impl Fn() -> Body + Send + Sync + 'static) -> FakeRegistry {
    FakeRegistry::start(
        move |seen| match (seen.method.as_str(), seen.target.as_str()) {
            ("GET", t) if t.contains("/manifests/") => Reply::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .streamed(body()),
            ("PUT", _) => Reply::new(201),
            _ => Reply::new(404),
        },
    )
    .await
}

fn puts(fake: &FakeRegistry) -> usize {
    fake.seen().iter().filter(|s| s.method == "PUT").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_manifest_is_refused_and_nothing_is_put() {
    // Streamed without a Content-Length: the read stops once past 4 MiB.
    let streamed = manifest_server(|| Body::Stream {
        fill: b' ',
        total: 5 * 1024 * 1024,
    })
    .await;
    let (src, dst) = refs(&streamed.host);
    let run = retag_cli(&src, &dst, false);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("manifest is larger than 4194304 bytes"),
        "{}",
        run.stderr
    );
    assert_eq!(puts(&streamed), 0);

    // A 1.5 GB Content-Length is refused before any of it is read.
    let claimed = manifest_server(|| Body::ClaimedLength(1_610_612_736)).await;
    let (src, dst) = refs(&claimed.host);
    let run = retag_cli(&src, &dst, false);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("manifest is larger than 4194304 bytes"),
        "{}",
        run.stderr
    );
    assert_eq!(puts(&claimed), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_manifest_is_never_put_by_retag() {
    let whole = image(1, 64, "amd64").manifest.to_vec();
    let cut = whole[..whole.len() * 6 / 10].to_vec();
    let fake = manifest_server(move || Body::Bytes(cut.clone())).await;
    let (src, dst) = refs(&fake.host);
    let run = retag_cli(&src, &dst, false);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not valid"), "{}", run.stderr);
    assert_eq!(puts(&fake), 0);
}

#[tokio::test]
async fn a_truncated_manifest_is_never_put_by_promote() {
    let whole = image(1, 64, "amd64").manifest.to_vec();
    let cut = whole[..whole.len() / 2].to_vec();
    let digest = Digest::of(&cut);
    let fake = manifest_server(move || Body::Bytes(cut.clone())).await;
    let client = RegistryClient::new(&fake.host, ClientOptions::default()).unwrap();
    let images = vec![Resolved {
        component: "app".into(),
        source: Reference::parse(&format!("{}/jisu/app:sha-1", fake.host)).unwrap(),
        target: Reference::parse(&format!("{}/jisu/app:production", fake.host)).unwrap(),
        digest,
        previous: None,
    }];
    let err = write_all(&client, &images).await.unwrap_err();
    assert!(err.to_string().contains("not valid"), "{err}");
    assert_eq!(puts(&fake), 0);
}

fn tag_list(seen: &Seen, next: Option<String>, tags: &[String]) -> Reply {
    let body = serde_json::json!({"name": "jisu/app", "tags": tags}).to_string();
    let reply = Reply::new(200)
        .header("Content-Type", "application/json")
        .body(body);
    match next {
        Some(next) if seen.target.contains("/tags/list") => {
            reply.header("Link", &format!(r#"<{next}>; rel="next""#))
        }
        _ => reply,
    }
}

#[tokio::test]
async fn tag_list_pagination_is_bounded_and_a_repeated_page_is_caught() {
    // The next link keeps naming the same page.
    let repeating = FakeRegistry::start(|seen| {
        let next = Some("/v2/jisu/app/tags/list?last=a&n=100".to_owned());
        tag_list(seen, next, &["a".into()])
    })
    .await;
    let client = RegistryClient::new(&repeating.host, ClientOptions::default()).unwrap();
    let err = client.list_tags("jisu/app").await.unwrap_err();
    assert!(err.to_string().contains("never as complete"), "{err}");
    assert_eq!(repeating.seen().len(), 2, "stopped at the first repeat");

    // Every page links a new one, forever.
    let endless = FakeRegistry::start(|seen| {
        let n: u64 = seen
            .target
            .split("last=t")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let next = Some(format!("/v2/jisu/app/tags/list?last=t{}&n=100", n + 1));
        tag_list(seen, next, &[format!("t{n}")])
    })
    .await;
    let client = RegistryClient::new(&endless.host, ClientOptions::default()).unwrap();
    let err = client.list_tags("jisu/app").await.unwrap_err();
    assert!(err.to_string().contains("never as complete"), "{err}");
    assert_eq!(endless.seen().len(), 1_000);

    // One page with more tags than any repository may list here.
    let huge = FakeRegistry::start(|seen| {
        let tags: Vec<String> = (0..100_001).map(|n| format!("t{n}")).collect();
        tag_list(seen, None, &tags)
    })
    .await;
    let client = RegistryClient::new(&huge.host, ClientOptions::default()).unwrap();
    let err = client.list_tags("jisu/app").await.unwrap_err();
    assert!(err.to_string().contains("more than 100000 tags"), "{err}");
}
