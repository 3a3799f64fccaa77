//! Finding the cluster: a kubeconfig from `--kubeconfig`, the action input (its content,
//! YAML or base64), `KUBECONFIG`, the in-cluster service account, or `~/.kube/config`, in
//! that order; `--context` picks a context. A missing or broken kubeconfig is bad input,
//! reported before anything is sent; an unreachable cluster is a failure (exit 1).
//!
//! A kubeconfig holds credentials, so nothing here quotes its content: a parse error is
//! told by its place (line, column, field path), never by the parser's own message, and
//! every URL shown goes through [`redacted_url`]. Masking is the session's job
//! ([`crate::session::secrets_in_environment`]), done before anything is printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::error::InputError;
use crate::output::escape;

/// Environment variable holding a kubeconfig's content (the action input `kubeconfig`).
pub const INPUT_KUBECONFIG: &str = "INPUT_KUBECONFIG";

/// How the cluster is reached (plain values the command line fills in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAccess {
    /// A kubeconfig file; otherwise the fallbacks [`resolve`] walks.
    pub kubeconfig: Option<PathBuf>,
    /// The context to use; otherwise the kubeconfig's current one.
    pub context: Option<String>,
}

impl ClusterAccess {
    /// Resolves the settings from this process's environment and connects: the client,
    /// and the server's address as it may be shown (credentials redacted).
    pub async fn connect(&self) -> anyhow::Result<(kube::Client, String)> {
        let env = |name: &str| std::env::var_os(name);
        let cluster = resolve(self.kubeconfig.as_deref(), self.context.as_deref(), &env).await?;
        let server = cluster.server();
        Ok((connect(cluster).await?, server))
    }
}

/// Where the connection settings came from (for the log; never the content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file given with `--kubeconfig`.
    Flag(PathBuf),
    /// The action input's content.
    ActionInput,
    /// The files named by `KUBECONFIG` (as text, for the log).
    Env(String),
    /// The Pod's service account.
    InCluster,
    /// `~/.kube/config`.
    HomeFile(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(path) => write!(f, "--kubeconfig {}", escape(&path.to_string_lossy())),
            Source::ActionInput => write!(f, "the `kubeconfig` action input"),
            Source::Env(value) => write!(f, "KUBECONFIG={}", escape(value)),
            Source::InCluster => write!(f, "the in-cluster service account"),
            Source::HomeFile(path) => write!(f, "{}", escape(&path.to_string_lossy())),
        }
    }
}

/// The chosen cluster: a client config and where it came from.
pub struct Cluster {
    /// Settings for [`kube::Client::try_from`].
    pub config: kube::Config,
    /// Where they came from.
    pub source: Source,
}

impl Cluster {
    /// The API server's URL as it may be shown: no credentials, escaped.
    pub fn server(&self) -> String {
        escape(&redacted_url(&self.config.cluster_url.to_string())).into_owned()
    }
}

/// Resolves the connection settings. `env` looks up environment variables as the OS holds
/// them (injected so tests need not touch the process environment): an input that is set
/// but unusable, e.g. not UTF-8, is bad input and never passed over for the next fallback.
pub async fn resolve(
    flag: Option<&Path>,
    context: Option<&str>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Cluster, InputError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let input = env(INPUT_KUBECONFIG).filter(|c| !c.to_string_lossy().trim().is_empty());
    let (kubeconfig, source) = if let Some(path) = flag {
        let source = Source::Flag(path.to_owned());
        (read_file(path, &source)?, source)
    } else if let Some(content) = input {
        let content = content.into_string().map_err(|_| {
            bad(
                &Source::ActionInput,
                "is not valid UTF-8; give the kubeconfig as YAML text or base64 of it".to_owned(),
            )
        })?;
        (parse_input(&content)?, Source::ActionInput)
    } else if let Some(value) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        let source = Source::Env(value.to_string_lossy().into_owned());
        let mut merged: Option<Kubeconfig> = None;
        for path in std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()) {
            let one = read_file(&path, &source)?;
            merged = Some(match merged {
                None => one,
                Some(m) => m.merge(one).map_err(|e| {
                    bad(
                        &source,
                        format!("cannot merge {}: {e}", escape(&path.to_string_lossy())),
                    )
                })?,
            });
        }
        let merged = merged.ok_or_else(|| bad(&source, "names no file".to_owned()))?;
        (merged, source)
    } else if env("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
        if context.is_some() {
            return Err(bad(&Source::InCluster, "--context needs a kubeconfig; inside a cluster there is only the Pod's service account".to_owned()));
        }
        let config = kube::Config::incluster().map_err(|e| {
            bad(
                &Source::InCluster,
                escape(&redacted_url(&e.to_string())).into_owned(),
            )
        })?;
        return Ok(Cluster {
            config,
            source: Source::InCluster,
        });
    } else {
        let home = env("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".kube/config"));
        match home.filter(|p| p.is_file()) {
            Some(path) => {
                let source = Source::HomeFile(path.clone());
                (read_file(&path, &source)?, source)
            }
            None => {
                return Err(InputError::new(
                    "kubeconfig",
                    None,
                    "no cluster to deploy to: pass --kubeconfig FILE, set the action input `kubeconfig` (its content), set KUBECONFIG, or run inside a cluster",
                ));
            }
        }
    };
    // Checked after merging: one of several KUBECONFIG files may hold only a context.
    if kubeconfig.clusters.is_empty() {
        return Err(bad(&source, "defines no cluster".to_owned()));
    }
    check_context(&kubeconfig, context, &source)?;
    refuse_proxy(&kubeconfig, context, &source)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| bad(&source, describe(&e)))?;
    Ok(Cluster { config, source })
}

/// Builds the client and asks the server for its version, so an unreachable or refusing
/// cluster fails here, with its address, rather than halfway through an apply.
pub async fn connect(cluster: Cluster) -> anyhow::Result<kube::Client> {
    crate::tls::ensure_provider();
    let url = cluster.server();
    let source = cluster.source.clone();
    let client = kube::Client::try_from(cluster.config)
        .map_err(|e| anyhow::anyhow!(redacted_url(&e.to_string())))
        .with_context(|| format!("building a client for {url} (from {source})"))?;
    let version = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.apiserver_version(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 30s"))
    .and_then(|r| r.map_err(|e| anyhow::anyhow!(redacted_url(&e.to_string()))))
    .with_context(|| format!("cannot reach the cluster at {url} (from {source})"))?;
    tracing::info!(server = %url, version = %escape(&version.git_version), from = %source, "connected to the cluster");
    Ok(client)
}

/// `text` with the userinfo (`user:password@`) of every URL in it replaced by `***`, for
/// logs and errors: `https://u:p@host:6443/x` becomes `https://***@host:6443/x`.
pub fn redacted_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

fn bad(source: &Source, message: String) -> InputError {
    InputError::new(
        source.to_string(),
        None,
        format!("unusable kubeconfig: {message}"),
    )
}

fn read_file(path: &Path, source: &Source) -> Result<Kubeconfig, InputError> {
    let shown = escape(&path.to_string_lossy()).into_owned();
    if !path.is_file() {
        return Err(bad(
            source,
            format!("{shown} does not exist or is not a file"),
        ));
    }
    // Read bounded (a kubeconfig is a few KiB), and its nesting checked before parsing.
    let text = crate::config::read_input(path, "the kubeconfig")
        .map_err(|e| bad(source, format!("{shown}: {}", e.problems[0].message)))?;
    if let Some((line, column)) =
        crate::config::depth::too_deep(&text, crate::config::depth::MAX_DEPTH)
    {
        return Err(bad(
            source,
            format!("{shown}: nests too deeply at line {line} column {column}"),
        ));
    }
    Kubeconfig::from_yaml(&text).map_err(|e| match e {
        KubeconfigError::Parse(_) => bad(source, format!("{shown}: {}", parse_problem(&text, &e))),
        other => bad(source, format!("{shown}: {}", describe(&other))),
    })
}

/// The action input holds the kubeconfig itself, as YAML or base64 of it.
fn parse_input(content: &str) -> Result<Kubeconfig, InputError> {
    let source = Source::ActionInput;
    let text = if content.trim_start().starts_with(['{', '-']) || content.contains(':') {
        content.to_owned()
    } else {
        let compact: String = content.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| {
                bad(
                    &source,
                    "neither kubeconfig YAML nor base64 of it".to_owned(),
                )
            })?;
        String::from_utf8(bytes)
            .map_err(|_| bad(&source, "its base64 does not decode to text".to_owned()))?
    };
    Kubeconfig::from_yaml(&text).map_err(|e| bad(&source, parse_problem(&text, &e)))
}

/// What is wrong with kubeconfig `text` that kube's parser rejected with `error`, told by
/// place only: parser messages quote the offending value, which may be a credential.
fn parse_problem(text: &str, error: &KubeconfigError) -> String {
    use serde::Deserialize as _;
    let at = |line: usize, column: usize| format!("line {line} column {column}");
    // kube's parser points at the offending character; serde_yaml may only say where
    // it gave up (the end of an unclosed quote's document).
    let kube_location = match error {
        KubeconfigError::Parse(e) => e
            .location()
            .map(|l| at(l.line() as usize, l.column() as usize)),
        _ => None,
    };
    for document in serde_yaml::Deserializer::from_str(text) {
        if let Err(e) = serde_yaml::Value::deserialize(document) {
            let place = kube_location
                .clone()
                .or_else(|| e.location().map(|l| at(l.line(), l.column())));
            return match place {
                Some(place) => format!("not valid YAML at {place}"),
                None => "not valid YAML".to_owned(),
            };
        }
    }
    for document in serde_yaml::Deserializer::from_str(text) {
        if let Err(e) = serde_path_to_error::deserialize::<_, Kubeconfig>(document) {
            let path = e.path().to_string();
            let place = e
                .inner()
                .location()
                .map(|l| format!(" ({})", at(l.line(), l.column())))
                .unwrap_or_default();
            return if path.is_empty() || path == "." {
                format!("not a kubeconfig (a YAML mapping){place}")
            } else {
                format!(
                    "unexpected type or value at {}{place}",
                    crate::output::escape_capped(&path, 200)
                )
            };
        }
    }
    // The two parsers disagree: kube's position only.
    match kube_location {
        Some(place) => format!("not a valid kubeconfig at {place}"),
        None => "not a valid kubeconfig".to_owned(),
    }
}

/// kube's message for an error past parsing, minus any that could carry file content.
fn describe(error: &KubeconfigError) -> String {
    match error {
        KubeconfigError::Parse(_) => "not a valid kubeconfig".to_owned(),
        KubeconfigError::LoadCertificateAuthority(_) => {
            "cannot load the certificate authority (certificate-authority or certificate-authority-data)".to_owned()
        }
        KubeconfigError::LoadClientCertificate(_) => {
            "cannot load the client certificate (client-certificate or client-certificate-data)".to_owned()
        }
        KubeconfigError::LoadClientKey(_) => {
            "cannot load the client key (client-key or client-key-data)".to_owned()
        }
        KubeconfigError::ParseCertificates(_) => "a certificate is not valid PEM".to_owned(),
        other => escape(&redacted_url(&other.to_string())).into_owned(),
    }
}

/// A context that does not exist is named with the ones that do.
fn check_context(
    config: &Kubeconfig,
    context: Option<&str>,
    source: &Source,
) -> Result<(), InputError> {
    let names: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
    let wanted = match context {
        Some(name) => name,
        None => match &config.current_context {
            Some(name) => name.as_str(),
            None if names.len() == 1 => return Ok(()),
            None => {
                return Err(bad(
                    source,
                    format!(
                        "no current-context set; pick one with --context ({})",
                        escape(&names.join(", ")).into_owned()
                    ),
                ));
            }
        },
    };
    if names.contains(&wanted) {
        Ok(())
    } else {
        Err(bad(
            source,
            format!(
                "context `{}` not found; it has: {}",
                escape(wanted),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    escape(&names.join(", ")).into_owned()
                }
            ),
        ))
    }
}

/// The context [`resolve`] will use: the one asked for, the current one, or the only one.
fn chosen_context<'a>(config: &'a Kubeconfig, context: Option<&'a str>) -> Option<&'a str> {
    let only = match config.contexts.as_slice() {
        [only] => Some(only.name.as_str()),
        _ => None,
    };
    context.or(config.current_context.as_deref()).or(only)
}

/// A cluster entry with `proxy-url` is refused before connecting: this build has no
/// HTTP proxy support, and going around the proxy would reach a different network path.
fn refuse_proxy(
    config: &Kubeconfig,
    context: Option<&str>,
    source: &Source,
) -> Result<(), InputError> {
    let Some(wanted) = chosen_context(config, context) else {
        return Ok(());
    };
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == wanted)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.as_str());
    let entry = config
        .clusters
        .iter()
        .find(|c| Some(c.name.as_str()) == cluster_name);
    match entry {
        Some(named)
            if named
                .cluster
                .as_ref()
                .is_some_and(|c| c.proxy_url.is_some()) =>
        {
            Err(bad(
                source,
                format!(
                    "cluster `{}` sets proxy-url, but proxies are not supported by jisu-deploy; reach the API server directly (remove proxy-url)",
                    escape(&named.name)
                ),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {server: 'http://127.0.0.1:6443'}\n- name: other\n  cluster: {server: 'http://127.0.0.1:7443'}\ncontexts:\n- name: sim\n  context: {cluster: sim, user: u}\n- name: other\n  context: {cluster: other, user: u}\ncurrent-context: sim\nusers:\n- name: u\n  user: {token: t0ken}\n";

    async fn resolve_with(
        flag: Option<&Path>,
        context: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Cluster, InputError> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        resolve_os(flag, context, vars).await
    }

    async fn resolve_os(
        flag: Option<&Path>,
        context: Option<&str>,
        vars: Vec<(String, OsString)>,
    ) -> Result<Cluster, InputError> {
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        resolve(flag, context, &env).await
    }

    #[tokio::test]
    async fn the_flag_wins_and_a_context_is_selectable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let cluster = resolve_with(Some(&path), None, &[("KUBECONFIG", "/nonexistent")])
            .await
            .unwrap();
        assert_eq!(cluster.source, Source::Flag(path.clone()));
        assert_eq!(
            cluster.config.cluster_url.to_string(),
            "http://127.0.0.1:6443/"
        );
        let other = resolve_with(Some(&path), Some("other"), &[]).await.unwrap();
        assert_eq!(
            other.config.cluster_url.to_string(),
            "http://127.0.0.1:7443/"
        );
        let error = resolve_with(Some(&path), Some("prod"), &[])
            .await
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("context `prod` not found; it has: sim, other"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_action_input_may_be_yaml_or_base64() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(KUBECONFIG);
        for content in [KUBECONFIG.to_owned(), encoded] {
            let cluster = resolve_with(None, None, &[(INPUT_KUBECONFIG, &content)])
                .await
                .unwrap();
            assert_eq!(cluster.source, Source::ActionInput);
            assert_eq!(
                cluster.config.cluster_url.to_string(),
                "http://127.0.0.1:6443/"
            );
        }
        let error = resolve_with(None, None, &[(INPUT_KUBECONFIG, "bm90IHlhbWw=!")])
            .await
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("neither kubeconfig YAML nor base64"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn kubeconfig_files_are_merged_and_missing_ones_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, KUBECONFIG.replace("current-context: sim\n", "")).unwrap();
        std::fs::write(&b, "apiVersion: v1\nkind: Config\ncurrent-context: other\n").unwrap();
        let joined = std::env::join_paths([&a, &b])
            .unwrap()
            .into_string()
            .unwrap();
        let cluster = resolve_with(None, None, &[("KUBECONFIG", &joined)])
            .await
            .unwrap();
        assert_eq!(
            cluster.config.cluster_url.to_string(),
            "http://127.0.0.1:7443/"
        );
        let error = resolve_with(None, None, &[("KUBECONFIG", "/nonexistent/config")])
            .await
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("/nonexistent/config does not exist"),
            "{error}"
        );
        let error = resolve_with(None, None, &[]).await.err().unwrap();
        assert!(
            error.to_string().contains("no cluster to deploy to"),
            "{error}"
        );
    }

    const SIM: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {server: 'http://127.0.0.1:6443'}\ncontexts:\n- name: sim\n  context: {cluster: sim, user: u}\ncurrent-context: sim\nusers:\n- name: u\n  user: {token: t0ken}\n";

    async fn resolve_input(content: &str) -> Result<Cluster, InputError> {
        let content = content.to_owned();
        let env = move |name: &str| (name == INPUT_KUBECONFIG).then(|| OsString::from(&content));
        resolve(None, None, &env).await
    }

    #[test]
    fn userinfo_is_redacted_in_every_url_of_a_text() {
        assert_eq!(
            redacted_url("https://admin:pa55@k8s.example:6443/api?x=1"),
            "https://***@k8s.example:6443/api?x=1"
        );
        assert_eq!(
            redacted_url("from http://u:p@a/ and http://b:80 and socks5://t0k@c"),
            "from http://***@a/ and http://b:80 and socks5://***@c"
        );
        assert_eq!(redacted_url("no url here"), "no url here");
    }

    #[tokio::test]
    async fn parse_errors_name_the_place_never_the_value() {
        let cases = [
            (
                SIM.replace("{token: t0ken}", "\n    token:\t\"S3CRET-unclosed"),
                "not valid YAML at line 13 column 12",
            ),
            (
                SIM.replace(
                    "{token: t0ken}",
                    "{auth-provider: {name: oidc, config: {id-token: {S3CRET-map: 1}}}}",
                ),
                "unexpected type or value at users[0].user.auth-provider.config.id-token (line 12",
            ),
            (
                SIM.replace("{token: t0ken}", "{token: [S3CRET-seq]}"),
                "unexpected type or value at users[0].user.token (line 12",
            ),
        ];
        for (text, expected) in cases {
            let error = resolve_input(&text).await.err().unwrap().to_string();
            assert!(error.contains(expected), "{expected} not in {error}");
            assert!(!error.contains("S3CRET"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_non_utf8_input_is_bad_input_and_never_falls_back() {
        use std::os::unix::ffi::OsStringExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, SIM).unwrap();
        let vars = vec![
            (
                INPUT_KUBECONFIG.to_owned(),
                OsString::from_vec(b"apiVersion: v1\n\xff\xfe".to_vec()),
            ),
            ("KUBECONFIG".to_owned(), path.into_os_string()),
        ];
        let error = resolve_os(None, None, vars)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("the `kubeconfig` action input"), "{error}");
        assert!(error.contains("is not valid UTF-8"), "{error}");
    }

    #[tokio::test]
    async fn a_proxy_url_is_refused_naming_the_cluster() {
        let text = SIM.replace(
            "{server: 'http://127.0.0.1:6443'}",
            "{server: 'http://127.0.0.1:6443', proxy-url: 'http://u:pr0xy-pass@127.0.0.1:3128'}",
        );
        let error = resolve_input(&text).await.err().unwrap().to_string();
        assert!(
            error.contains("cluster `sim` sets proxy-url, but proxies are not supported"),
            "{error}"
        );
        assert!(!error.contains("pr0xy-pass"), "{error}");
    }

    #[tokio::test]
    async fn the_shown_server_has_no_credentials() {
        let text = SIM.replace(
            "http://127.0.0.1:6443",
            "http://admin:s3rver-pass@127.0.0.1:6443",
        );
        let cluster = resolve_input(&text).await.unwrap();
        assert_eq!(cluster.server(), "http://***@127.0.0.1:6443/");
    }
}
