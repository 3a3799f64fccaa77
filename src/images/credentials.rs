//! Registry credentials for a run: which user and password (or Docker config entry) a
//! registry gets, the client built with them, and `image retag` on top.

use std::path::PathBuf;

use anyhow::Context as _;
use tracing::info;

use crate::oci::auth::{Credentials, docker_config_path, load_docker_credentials};
use crate::oci::client::{ClientOptions, RegistryClient};
use crate::oci::error::RegistryError;
use crate::oci::reference::Reference;
use crate::oci::retag::{RetagOptions, RetagOutcome, retag};

/// Environment variables read for the password, in order. Passwords are never accepted
/// as command-line arguments, where `ps` and shell history would show them.
pub const PASSWORD_ENV: [&str; 2] = ["REGISTRY_PASSWORD", "GITHUB_TOKEN"];

/// How this run reaches registries: one struct for every command (plain values; the
/// command line's registry flags fill it in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// User name; the password comes from REGISTRY_PASSWORD, else GITHUB_TOKEN. Without
    /// it, the Docker config, else no credentials.
    pub username: Option<String>,
    /// Plain HTTP for a registry that is not on a loopback address.
    pub allow_http: bool,
    /// Token services besides the registry's own that may receive the credentials.
    pub token_realms: Vec<String>,
}

/// Where the credentials came from (for logs; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--username` plus the named environment variable.
    UsernameAndEnv(&'static str),
    /// The Docker config file at this path.
    DockerConfig(PathBuf),
    /// No credentials.
    Anonymous,
}

/// Credential resolution failures that callers report as input errors.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `--username` was given but no password variable is set.
    #[error(
        "--username {username} was given but neither REGISTRY_PASSWORD nor GITHUB_TOKEN is set"
    )]
    MissingPassword {
        /// The user name given.
        username: String,
    },
    /// The Docker config could not be used.
    #[error(transparent)]
    DockerConfig(#[from] crate::oci::auth::DockerConfigError),
}

/// A client for `registry` with credentials picked by [`resolve_credentials`] from this
/// process's environment; where they came from (never the secret) is logged.
pub fn client_from_env(registry: &str, access: &RegistryAccess) -> anyhow::Result<RegistryClient> {
    let allow_http = access.allow_http;
    let (credentials, source) = resolve_credentials(access.username.as_deref(), registry, |k| {
        std::env::var(k).ok()
    })
    .with_context(|| format!("credentials for {registry}"))?;
    info!(%registry, credentials = ?source, "resolved registry credentials");
    let options = ClientOptions {
        allow_http,
        credentials,
        trusted_token_realms: access.token_realms.clone(),
        ..ClientOptions::default()
    };
    Ok(RegistryClient::new(registry, options)?)
}

/// Picks credentials for `registry`: `username` with a password from the environment, else
/// the Docker config, else none. `env` is the environment lookup (injected for tests).
pub fn resolve_credentials(
    username: Option<&str>,
    registry: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Option<Credentials>, CredentialSource), CredentialError> {
    if let Some(username) = username {
        for var in PASSWORD_ENV {
            if let Some(password) = env(var).filter(|p| !p.is_empty()) {
                return Ok((
                    Some(Credentials::new(username, password)),
                    CredentialSource::UsernameAndEnv(var),
                ));
            }
        }
        return Err(CredentialError::MissingPassword {
            username: username.to_owned(),
        });
    }
    if let Some(path) = docker_config_path(&env)
        && let Some(creds) = load_docker_credentials(&path, registry)?
    {
        return Ok((Some(creds), CredentialSource::DockerConfig(path)));
    }
    Ok((None, CredentialSource::Anonymous))
}

/// `image retag SRC DST`: both references checked, then one manifest read and one write.
pub async fn retag_images(
    src: &str,
    dst: &str,
    access: &RegistryAccess,
    options: &RetagOptions,
) -> anyhow::Result<RetagOutcome> {
    let src = Reference::parse(src).context("SRC argument")?;
    let dst = Reference::parse(dst).context("DST argument")?;
    if src.registry() != dst.registry() {
        return Err(RegistryError::CrossRegistry {
            src: src.to_string(),
            dst: dst.to_string(),
        }
        .into());
    }
    let client = client_from_env(src.registry(), access)?;
    let outcome = retag(&client, &src, &dst, options)
        .await
        .with_context(|| format!("retag {src} -> {dst}"))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn username_takes_password_from_env_in_order() {
        let (creds, source) = resolve_credentials(
            Some("bot"),
            "ghcr.io",
            env_of(&[("GITHUB_TOKEN", "gh"), ("REGISTRY_PASSWORD", "rp")]),
        )
        .unwrap();
        assert_eq!(creds, Some(Credentials::new("bot", "rp")));
        assert_eq!(
            source,
            CredentialSource::UsernameAndEnv("REGISTRY_PASSWORD")
        );
        let (creds, _) =
            resolve_credentials(Some("bot"), "ghcr.io", env_of(&[("GITHUB_TOKEN", "gh")])).unwrap();
        assert_eq!(creds, Some(Credentials::new("bot", "gh")));
    }

    #[test]
    fn username_without_password_is_an_error() {
        let err = resolve_credentials(Some("bot"), "ghcr.io", env_of(&[])).unwrap_err();
        assert!(matches!(err, CredentialError::MissingPassword { .. }));
        assert!(err.to_string().contains("REGISTRY_PASSWORD"));
    }

    #[test]
    fn falls_back_to_docker_config_then_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"localhost:5000":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let dir_text = dir.path().to_str().unwrap().to_owned();
        let env = env_of(&[("DOCKER_CONFIG", &dir_text)]);
        let (creds, source) = resolve_credentials(None, "localhost:5000", &env).unwrap();
        assert_eq!(creds, Some(Credentials::new("u", "p")));
        assert_eq!(
            source,
            CredentialSource::DockerConfig(dir.path().join("config.json"))
        );
        let (creds, source) = resolve_credentials(None, "ghcr.io", &env).unwrap();
        assert_eq!((creds, source), (None, CredentialSource::Anonymous));
    }
}
