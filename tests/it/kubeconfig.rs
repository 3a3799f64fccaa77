//! Kubeconfigs that are broken, odd or hostile, given every way the tool takes one: the
//! credentials in them are masked before anything else is printed and never printed
//! otherwise (not by a parser's error, not in a URL), and an input that was given but
//! cannot be used is bad input, never passed over for another cluster.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt as _;
use std::time::Duration;

use base64::Engine as _;
use kube_sim::SimOptions;

use crate::deploy::{Cluster, IMAGES, SHA, assert_failed_with, binary, cluster};
use crate::support::{Run, repo_root};

/// The sim's kubeconfig with its user's `token: kube-sim` line replaced by `user`.
fn with_user(cluster: &Cluster, user: &str) -> String {
    let yaml = cluster.sim.kubeconfig_yaml();
    assert!(yaml.contains("  user:\n    token: kube-sim\n"), "{yaml}");
    yaml.replace(
        "  user:\n    token: kube-sim\n",
        &format!("  user:\n{user}\n"),
    )
}

/// `deploy --dry-run` of staging with pinned images, as in GitHub Actions, with `env`.
async fn deploy(cluster: &Cluster, extra: &[&str], env: &[(&str, &OsStr)]) -> Run {
    let config = cluster.pipeline("http://localhost:9", "k8s/app", "");
    let mut command = tokio::process::Command::new(binary());
    command
        .env_clear()
        .current_dir(repo_root())
        .args(["deploy", "--config", config.to_str().unwrap()])
        .args(["--environment", "staging", "--sha", SHA, "--dry-run"])
        .args(IMAGES)
        .args(extra)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_ACTIONS", "true");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("deploy finishes within a minute")
        .expect("the binary runs");
    output.into()
}

/// Each secret is masked before the first other line, and shown nowhere else.
#[track_caller]
fn assert_masked_and_never_shown(run: &Run, secrets: &[&str], what: &str) {
    let context = format!(
        "{what}: exited {}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    let masks: Vec<&str> = run
        .stdout
        .lines()
        .take_while(|line| line.starts_with("::add-mask::"))
        .collect();
    for secret in secrets {
        assert!(
            masks.contains(&format!("::add-mask::{secret}").as_str()),
            "{secret} is not masked before the first other line\n{context}"
        );
        let shown = run
            .stdout
            .lines()
            .filter(|line| !line.starts_with("::add-mask::"))
            .chain(run.stderr.lines())
            .find(|line| line.contains(secret));
        assert!(shown.is_none(), "{secret} shown: {shown:?}\n{context}");
    }
}

/// Malformed kubeconfigs, each with the problem on a credential, by every source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_kubeconfig_is_masked_first_and_never_quoted_from_any_source() {
    let cluster = cluster(SimOptions::default()).await;
    let malformed = [
        // A tab after `token:` and an unclosed quote: not YAML.
        (
            "unclosed",
            "    token:\t\"S3CRET-unclosed",
            "not valid YAML at line",
        ),
        // Parses, but a mapping where a string belongs; the parser quoted it.
        (
            "idtoken",
            "    auth-provider: {name: oidc, config: {id-token: {S3CRET-idtoken: 1}}}",
            "unexpected type or value at users[0].user.auth-provider.config.id-token (line 17 column",
        ),
        (
            "list",
            "    token: [S3CRET-list]",
            "unexpected type or value at users[0].user.token (line 17 column",
        ),
    ];
    for (case, user, expected) in malformed {
        let text = with_user(&cluster, &user.replace("S3CRET", "S3CRET-input"));
        let file = |source: &str| {
            let path = cluster.dir.path().join(format!("{case}-{source}"));
            std::fs::write(&path, user_text(&cluster, user, source)).unwrap();
            path
        };
        let home = cluster.dir.path().join(format!("home-{case}"));
        std::fs::create_dir_all(home.join(".kube")).unwrap();
        std::fs::write(home.join(".kube/config"), user_text(&cluster, user, "home")).unwrap();
        let flag = file("flag");
        let env_file = file("env");
        let base64 = base64::engine::general_purpose::STANDARD.encode(with_user(
            &cluster,
            &user.replace("S3CRET", "S3CRET-base64"),
        ));
        let runs = [
            (
                "input",
                vec![],
                vec![("INPUT_KUBECONFIG", OsString::from(&text))],
            ),
            (
                "base64",
                vec![],
                vec![("INPUT_KUBECONFIG", OsString::from(&base64))],
            ),
            ("flag", vec!["--kubeconfig", flag.to_str().unwrap()], vec![]),
            (
                "env",
                vec![],
                vec![("KUBECONFIG", env_file.into_os_string())],
            ),
            (
                "home",
                vec![],
                vec![("HOME", home.clone().into_os_string())],
            ),
        ];
        for (source, args, env) in runs {
            let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
            let run = deploy(&cluster, &args, &env).await;
            let what = format!("{case} via {source}");
            let secret = secret_of(user, source);
            assert_masked_and_never_shown(&run, &[&secret], &what);
            assert_eq!(run.code, 2, "{what}\n{}", run.stderr);
            assert!(
                run.stderr.contains("unusable kubeconfig") && run.stderr.contains(expected),
                "{what}: `{expected}` not in\n{}",
                run.stderr
            );
        }
    }
}

/// The secret of `user` as written for `source`.
fn secret_of(user: &str, source: &str) -> String {
    let start = user.find("S3CRET").unwrap();
    let end = user[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map_or(user.len(), |e| start + e);
    user[start..end].replace("S3CRET", &format!("S3CRET-{source}"))
}

fn user_text(cluster: &Cluster, user: &str, source: &str) -> String {
    with_user(
        cluster,
        &user.replace("S3CRET", &format!("S3CRET-{source}")),
    )
}

/// An input that is not UTF-8 was given and cannot be used: bad input, although
/// KUBECONFIG names a working cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_input_that_is_not_utf8_is_bad_input_not_a_fallback() {
    let cluster = cluster(SimOptions::default()).await;
    let mut input = cluster.sim.kubeconfig_yaml().into_bytes();
    input.extend_from_slice(b"# caf\xe9\n");
    let input = OsString::from_vec(input);
    let run = deploy(
        &cluster,
        &[],
        &[
            ("INPUT_KUBECONFIG", &input),
            ("KUBECONFIG", cluster.kubeconfig.as_os_str()),
        ],
    )
    .await;
    assert_failed_with(
        &run,
        2,
        &["the `kubeconfig` action input", "is not valid UTF-8"],
    );
    assert!(
        !run.stderr.contains("connected to the cluster"),
        "{}",
        run.stderr
    );
}

/// `server: http://user:password@host` is used, but the password is masked first and the
/// URL shown without it, whether the server answers or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_server_url_are_never_shown() {
    let cluster = cluster(SimOptions::default()).await;
    let url = cluster.sim.url();
    let reachable = cluster.sim.kubeconfig_yaml().replace(
        &url,
        &url.replace("http://", "http://admin:S3CRET-server-pass@"),
    );
    let run = deploy(
        &cluster,
        &[],
        &[("INPUT_KUBECONFIG", OsStr::new(&reachable))],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_masked_and_never_shown(&run, &["S3CRET-server-pass"], "reachable");
    let shown = format!("{}/", url.replace("http://", "http://***@"));
    assert!(
        run.stderr.contains("connected to the cluster") && run.stderr.contains(&shown),
        "{shown} not in\n{}",
        run.stderr
    );

    let nowhere = cluster
        .sim
        .kubeconfig_yaml()
        .replace(&url, "http://admin:S3CRET-nowhere-pass@127.0.0.1:9");
    let run = deploy(&cluster, &[], &[("INPUT_KUBECONFIG", OsStr::new(&nowhere))]).await;
    assert_failed_with(
        &run,
        1,
        &["cannot reach the cluster at http://***@127.0.0.1:9/"],
    );
    assert_masked_and_never_shown(&run, &["S3CRET-nowhere-pass"], "unreachable");
}

/// `proxy-url` is refused before connecting, naming the cluster entry; its password is
/// masked and never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_url_is_refused_as_bad_input() {
    let cluster = cluster(SimOptions::default()).await;
    let url = cluster.sim.url();
    let text = cluster.sim.kubeconfig_yaml().replace(
        &format!("    server: {url}\n"),
        &format!("    server: {url}\n    proxy-url: http://u:S3CRET-proxy-pass@127.0.0.1:9\n"),
    );
    assert!(text.contains("proxy-url"), "{text}");
    let path = cluster.dir.path().join("proxied");
    std::fs::write(&path, &text).unwrap();
    let run = deploy(&cluster, &["--kubeconfig", path.to_str().unwrap()], &[]).await;
    assert_failed_with(
        &run,
        2,
        &["cluster `kube-sim` sets proxy-url, but proxies are not supported"],
    );
    assert_masked_and_never_shown(&run, &["S3CRET-proxy-pass"], "proxy");
}
