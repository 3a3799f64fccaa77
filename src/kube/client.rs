//! Finding the cluster: a kubeconfig from `--kubeconfig`, the action input (its content,
//! YAML or base64), `KUBECONFIG`, the in-cluster service account, or `~/.kube/config`, in
//! that order; `--context` picks a context. A missing or broken kubeconfig is bad input,
//! reported before anything is sent; an unreachable cluster is a failure (exit 1).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::InputError;
use crate::github::actions::Runner;

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

/// Where the connection settings came from (for the log; never the content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file given with `--kubeconfig`.
    Flag(PathBuf),
    /// The action input's content.
    ActionInput,
    /// The files named by `KUBECONFIG`.
    Env(String),
    /// The Pod's service account.
    InCluster,
    /// `~/.kube/config`.
    HomeFile(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(path) => write!(f, "--kubeconfig {}", path.display()),
            Source::ActionInput => write!(f, "the `kubeconfig` action input"),
            Source::Env(value) => write!(f, "KUBECONFIG={value}"),
            Source::InCluster => write!(f, "the in-cluster service account"),
            Source::HomeFile(path) => write!(f, "{}", path.display()),
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

/// Resolves the connection settings. `env` looks up environment variables (injected so
/// tests need not touch the process environment). Secrets found in an input kubeconfig
/// are masked in the Actions log before anything could print them.
pub async fn resolve(
    flag: Option<&Path>,
    context: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    runner: &Runner,
) -> Result<Cluster, InputError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let (kubeconfig, source) = if let Some(path) = flag {
        let source = Source::Flag(path.to_owned());
        (read_file(path, &source)?, source)
    } else if let Some(content) = env(INPUT_KUBECONFIG).filter(|c| !c.trim().is_empty()) {
        (parse_input(&content, runner)?, Source::ActionInput)
    } else if let Some(value) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        let source = Source::Env(value.clone());
        let mut merged: Option<Kubeconfig> = None;
        for path in std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()) {
            let one = read_file(&path, &source)?;
            merged = Some(match merged {
                None => one,
                Some(m) => m
                    .merge(one)
                    .map_err(|e| bad(&source, format!("cannot merge {}: {e}", path.display())))?,
            });
        }
        let merged = merged.ok_or_else(|| bad(&source, "names no file".to_owned()))?;
        (merged, source)
    } else if env("KUBERNETES_SERVICE_HOST").is_some() {
        if context.is_some() {
            return Err(bad(&Source::InCluster, "--context needs a kubeconfig; inside a cluster there is only the Pod's service account".to_owned()));
        }
        let config =
            kube::Config::incluster().map_err(|e| bad(&Source::InCluster, e.to_string()))?;
        return Ok(Cluster {
            config,
            source: Source::InCluster,
        });
    } else {
        let home = env("HOME").map(|h| Path::new(&h).join(".kube/config"));
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
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| bad(&source, e.to_string()))?;
    Ok(Cluster { config, source })
}

/// Builds the client and asks the server for its version, so an unreachable or refusing
/// cluster fails here, with its address, rather than halfway through an apply.
pub async fn connect(cluster: Cluster) -> anyhow::Result<kube::Client> {
    crate::tls::ensure_provider();
    let url = cluster.config.cluster_url.to_string();
    let client = kube::Client::try_from(cluster.config)
        .with_context(|| format!("building a client for {url} (from {})", cluster.source))?;
    let version = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.apiserver_version(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 30s"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| {
        format!(
            "cannot reach the cluster at {url} (from {})",
            cluster.source
        )
    })?;
    tracing::info!(server = %url, version = %version.git_version, from = %cluster.source, "connected to the cluster");
    Ok(client)
}

fn bad(source: &Source, message: String) -> InputError {
    InputError::new(
        source.to_string(),
        None,
        format!("unusable kubeconfig: {message}"),
    )
}

fn read_file(path: &Path, source: &Source) -> Result<Kubeconfig, InputError> {
    if !path.is_file() {
        return Err(bad(
            source,
            format!("{} does not exist or is not a file", path.display()),
        ));
    }
    Kubeconfig::read_from(path).map_err(|e| bad(source, e.to_string()))
}

/// The action input holds the kubeconfig itself, as YAML or base64 of it.
fn parse_input(content: &str, runner: &Runner) -> Result<Kubeconfig, InputError> {
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
    mask_credentials(&text, runner);
    Kubeconfig::from_yaml(&text).map_err(|e| bad(&source, e.to_string()))
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
                        names.join(", ")
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
                "context `{wanted}` not found; it has: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        ))
    }
}

/// Masks the users' tokens, passwords and keys before anything could print them; read
/// from the raw YAML because kube keeps them in opaque secret strings.
fn mask_credentials(text: &str, runner: &Runner) {
    let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return;
    };
    let users = yaml.get("users").and_then(serde_yaml::Value::as_sequence);
    for user in users.into_iter().flatten() {
        for key in ["token", "password", "client-key-data"] {
            if let Some(secret) = user
                .get("user")
                .and_then(|u| u.get(key))
                .and_then(serde_yaml::Value::as_str)
            {
                runner.mask(secret);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {server: 'http://127.0.0.1:6443'}\n- name: other\n  cluster: {server: 'http://127.0.0.1:7443'}\ncontexts:\n- name: sim\n  context: {cluster: sim, user: u}\n- name: other\n  context: {cluster: other, user: u}\ncurrent-context: sim\nusers:\n- name: u\n  user: {token: t0ken}\n";

    fn runner() -> Runner {
        Runner {
            in_actions: false,
            in_act: false,
            output_file: None,
            summary_file: None,
        }
    }

    async fn resolve_with(
        flag: Option<&Path>,
        context: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Cluster, InputError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        resolve(flag, context, &env, &runner()).await
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
}
