//! Registry authentication data: credentials, `WWW-Authenticate` challenges, token replies
//! and `~/.docker/config.json`. Pure parsing only; the HTTP exchange lives in `client.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// A secret string (password or token) that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for putting into an `Authorization` header and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A username and password (for ghcr: any username and a `GITHUB_TOKEN` or PAT).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Credentials {
    /// The user name, which is not secret.
    pub username: String,
    /// The password or token.
    pub password: Secret,
}

impl Credentials {
    /// Builds credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// The value of an `Authorization: Basic ...` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password.expose());
        format!("Basic {}", BASE64.encode(raw))
    }
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication (distribution's htpasswd mode).
    Basic,
    /// Token authentication: get a token from `realm` (ghcr.io, Docker Hub, ...).
    Bearer {
        /// URL of the token service.
        realm: String,
        /// `service` parameter to send back.
        service: Option<String>,
        /// `scope` the registry asked for, when it said.
        scope: Option<String>,
    },
}

/// Why a `WWW-Authenticate` header could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header is not `scheme param=value, ...`.
    #[error("malformed WWW-Authenticate header: {0}")]
    Malformed(String),
    /// A Bearer challenge without the realm to fetch a token from.
    #[error("Bearer challenge has no realm")]
    MissingRealm,
    /// No scheme this client speaks (Basic or Bearer).
    #[error("no supported authentication scheme in WWW-Authenticate (offered: {0})")]
    Unsupported(String),
}

/// Parses a `WWW-Authenticate` header value, which may hold several challenges, and returns
/// the one to use: Bearer when offered (it scopes access), else Basic.
pub fn parse_challenge(header: &str) -> Result<Challenge, ChallengeError> {
    let challenges = parse_challenges(header)?;
    let mut offered = Vec::new();
    let mut basic = false;
    for (scheme, params) in &challenges {
        offered.push(scheme.clone());
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                let realm = params
                    .get("realm")
                    .cloned()
                    .ok_or(ChallengeError::MissingRealm)?;
                return Ok(Challenge::Bearer {
                    realm,
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                });
            }
            "basic" => basic = true,
            _ => {}
        }
    }
    if basic {
        Ok(Challenge::Basic)
    } else {
        Err(ChallengeError::Unsupported(super::server_text::shown(
            &offered.join(", "),
        )))
    }
}

type Params = BTreeMap<String, String>;

/// RFC 7235 challenge list: `scheme [param=value *(, param=value)] *(, challenge)`.
fn parse_challenges(header: &str) -> Result<Vec<(String, Params)>, ChallengeError> {
    let malformed = |why: &str| ChallengeError::Malformed(why.to_owned());
    let mut out: Vec<(String, Params)> = Vec::new();
    let mut chars = header.chars().peekable();
    let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c);
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if !is_token(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        if word.is_empty() {
            return Err(malformed("expected a scheme or parameter name"));
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A word not followed by '=' starts a new challenge.
            out.push((word, Params::new()));
            continue;
        }
        chars.next();
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| malformed("unterminated escape"))?,
                    ),
                    Some(c) => value.push(c),
                    None => return Err(malformed("unterminated quoted value")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        let (_, params) = out
            .last_mut()
            .ok_or_else(|| malformed("parameter before any scheme"))?;
        params.insert(word.to_ascii_lowercase(), value);
    }
    if out.is_empty() {
        return Err(malformed("empty header"));
    }
    Ok(out)
}

/// The scope string for a repository and the actions needed on it.
pub fn repository_scope(repository: &str, push: bool) -> String {
    if push {
        format!("repository:{repository}:pull,push")
    } else {
        format!("repository:{repository}:pull")
    }
}

/// A token service's reply (`token` and `access_token` are synonyms in the spec).
#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A bearer token and how long the service said it lives.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token itself.
    pub value: Secret,
    /// Lifetime in seconds, when the service said (the spec's default is 60).
    pub expires_in: Option<u64>,
}

/// Reads a token service reply body.
pub fn parse_token_reply(body: &[u8]) -> Result<Token, String> {
    let reply: TokenReply =
        serde_json::from_slice(body).map_err(|e| format!("reply is not token JSON: {e}"))?;
    let value = reply
        .token
        .filter(|t| !t.is_empty())
        .or(reply.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "reply has neither token nor access_token".to_owned())?;
    Ok(Token {
        value: Secret::new(value),
        expires_in: reply.expires_in,
    })
}

/// Why credentials could not be read from a Docker config file.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The file exists but could not be read.
    #[error("cannot read Docker config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the JSON Docker writes.
    #[error("Docker config {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Credentials for the registry are kept by a helper program, which this tool does not run.
    #[error(
        "Docker config {path} keeps credentials for {registry} in the credential helper docker-credential-{helper}, which jisu-deploy does not call; pass --username with REGISTRY_PASSWORD (or GITHUB_TOKEN) instead"
    )]
    CredentialHelperUnsupported {
        /// The file.
        path: PathBuf,
        /// The registry looked up.
        registry: String,
        /// The helper's name.
        helper: String,
    },
    /// An `identitytoken` (OAuth refresh token) entry, which needs a flow this tool lacks.
    #[error(
        "Docker config {path} has an identity token for {registry}; identity tokens are not supported, pass --username with REGISTRY_PASSWORD instead"
    )]
    IdentityTokenUnsupported {
        /// The file.
        path: PathBuf,
        /// The registry looked up.
        registry: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Where the Docker config lives: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn docker_config_path(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".docker").join("config.json"))
}

/// Reads credentials for `registry` from the Docker config at `path`; a missing file means
/// no credentials.
pub fn load_docker_credentials(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, DockerConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DockerConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    docker_credentials_from_json(&text, registry, path)
}

/// Normalizes an `auths` key: Docker writes `https://index.docker.io/v1/` for Docker Hub and
/// sometimes a scheme or path for others.
fn normalize_auth_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => super::reference::DOCKER_HUB,
        other => other,
    }
}

/// Credentials for `registry` from Docker config JSON (`path` is used in error messages).
pub fn docker_credentials_from_json(
    json: &str,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, DockerConfigError> {
    let invalid = |reason: String| DockerConfigError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let config: DockerConfigFile =
        serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    if let Some((_, helper)) = config
        .cred_helpers
        .iter()
        .find(|(key, _)| normalize_auth_key(key) == registry)
    {
        return Err(DockerConfigError::CredentialHelperUnsupported {
            path: path.to_owned(),
            registry: registry.to_owned(),
            helper: helper.clone(),
        });
    }
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| normalize_auth_key(key) == registry)
        .map(|(_, entry)| entry);
    let Some(entry) = entry else {
        return Ok(None);
    };
    if entry
        .identitytoken
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        return Err(DockerConfigError::IdentityTokenUnsupported {
            path: path.to_owned(),
            registry: registry.to_owned(),
        });
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        // Never echo the decoded value: it holds the password.
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|_| invalid(format!("auths.{registry}.auth is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid(format!("auths.{registry}.auth is not UTF-8")))?;
        let (user, pass) = decoded.split_once(':').ok_or_else(|| {
            invalid(format!(
                "auths.{registry}.auth is not base64 of user:password"
            ))
        })?;
        return Ok(Some(Credentials::new(user, pass)));
    }
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::new(user.clone(), pass.clone())));
    }
    // An empty entry next to a global store means "logged in, secret in the store".
    if let Some(store) = config.creds_store {
        return Err(DockerConfigError::CredentialHelperUnsupported {
            path: path.to_owned(),
            registry: registry.to_owned(),
            helper: store,
        });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let creds = Credentials::new("bot", "ghp_supersecret");
        let shown = format!("{creds:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("bot"));
    }

    #[test]
    fn basic_header_is_base64_user_colon_password() {
        let creds = Credentials::new("user", "pass");
        assert_eq!(creds.basic_header(), "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn parses_ghcr_bearer_challenge() {
        let c = parse_challenge(r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:jisu/backend:pull""#)
            .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:jisu/backend:pull".into()),
            }
        );
    }

    #[test]
    fn parses_basic_and_prefers_bearer_among_several() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        let both = parse_challenge(
            r#"Basic realm="x", Bearer realm="https://auth.example/token", service=reg"#,
        )
        .unwrap();
        assert_eq!(
            both,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: None
            }
        );
    }

    #[test]
    fn challenge_values_unescape_and_scopes_with_commas_survive() {
        let c =
            parse_challenge(r#"bearer REALM="https://a/t\"x", scope="repository:a/b:pull,push""#)
                .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://a/t\"x".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into())
            }
        );
    }

    #[test]
    fn challenge_errors_say_what_is_wrong() {
        assert_eq!(
            parse_challenge(r#"Bearer service="x""#),
            Err(ChallengeError::MissingRealm)
        );
        assert_eq!(
            parse_challenge(r#"Negotiate abc"#),
            Err(ChallengeError::Unsupported("Negotiate, abc".into()))
        );
        assert!(matches!(
            parse_challenge(r#"Bearer realm="open"#),
            Err(ChallengeError::Malformed(_))
        ));
        assert!(matches!(
            parse_challenge(""),
            Err(ChallengeError::Malformed(_))
        ));
    }

    #[test]
    fn token_reply_accepts_either_field() {
        let t = parse_token_reply(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value.expose(), "abc");
        assert_eq!(t.expires_in, Some(300));
        let t = parse_token_reply(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.value.expose(), "xyz");
        assert!(parse_token_reply(br#"{"token":""}"#).is_err());
        assert!(parse_token_reply(b"<html>").is_err());
        assert!(!format!("{t:?}").contains("xyz"));
    }

    #[test]
    fn scopes() {
        assert_eq!(
            repository_scope("jisu/backend", false),
            "repository:jisu/backend:pull"
        );
        assert_eq!(
            repository_scope("jisu/backend", true),
            "repository:jisu/backend:pull,push"
        );
    }

    fn creds_from(json: &str, registry: &str) -> Result<Option<Credentials>, DockerConfigError> {
        docker_credentials_from_json(json, registry, Path::new("/cfg/config.json"))
    }

    #[test]
    fn docker_config_auth_field() {
        let json = r#"{"auths":{"ghcr.io":{"auth":"Ym90OmdocF9zZWNyZXQ="},"https://index.docker.io/v1/":{"auth":"aHViOnB3"}}}"#;
        assert_eq!(
            creds_from(json, "ghcr.io").unwrap(),
            Some(Credentials::new("bot", "ghp_secret"))
        );
        assert_eq!(
            creds_from(json, "docker.io").unwrap(),
            Some(Credentials::new("hub", "pw"))
        );
        assert_eq!(creds_from(json, "quay.io").unwrap(), None);
    }

    #[test]
    fn docker_config_username_password_and_scheme_keys() {
        let json = r#"{"auths":{"http://localhost:5000":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            creds_from(json, "localhost:5000").unwrap(),
            Some(Credentials::new("u", "p"))
        );
    }

    #[test]
    fn docker_config_helpers_are_reported_unsupported() {
        let json = r#"{"auths":{},"credHelpers":{"ghcr.io":"gh"}}"#;
        let err = creds_from(json, "ghcr.io").unwrap_err();
        assert!(
            matches!(&err, DockerConfigError::CredentialHelperUnsupported { helper, .. } if helper == "gh")
        );
        assert!(err.to_string().contains("docker-credential-gh"), "{err}");
        let store = r#"{"auths":{"ghcr.io":{}},"credsStore":"desktop"}"#;
        assert!(matches!(
            creds_from(store, "ghcr.io"),
            Err(DockerConfigError::CredentialHelperUnsupported { helper, .. }) if helper == "desktop"
        ));
        assert_eq!(
            creds_from(store, "quay.io").unwrap(),
            None,
            "no entry: anonymous"
        );
        let identity = r#"{"auths":{"ghcr.io":{"identitytoken":"t"}}}"#;
        assert!(matches!(
            creds_from(identity, "ghcr.io"),
            Err(DockerConfigError::IdentityTokenUnsupported { .. })
        ));
    }

    #[test]
    fn docker_config_errors_do_not_leak_the_secret() {
        // base64 of "nocolonsecret": valid base64 but not user:password.
        let json = r#"{"auths":{"ghcr.io":{"auth":"bm9jb2xvbnNlY3JldA=="}}}"#;
        let err = creds_from(json, "ghcr.io").unwrap_err();
        assert!(!err.to_string().contains("nocolonsecret"), "{err}");
        assert!(matches!(
            creds_from(r#"{"auths":5}"#, "ghcr.io"),
            Err(DockerConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn docker_config_path_prefers_docker_config_env() {
        let env = |k: &str| match k {
            "DOCKER_CONFIG" => Some("/etc/dock".to_owned()),
            "HOME" => Some("/root".to_owned()),
            _ => None,
        };
        assert_eq!(
            docker_config_path(env),
            Some(PathBuf::from("/etc/dock/config.json"))
        );
        let home_only = |k: &str| (k == "HOME").then(|| "/home/me".to_owned());
        assert_eq!(
            docker_config_path(home_only),
            Some(PathBuf::from("/home/me/.docker/config.json"))
        );
        assert_eq!(docker_config_path(|_| None), None);
    }

    #[test]
    fn missing_docker_config_file_means_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_docker_credentials(&dir.path().join("config.json"), "ghcr.io").unwrap(),
            None
        );
    }
}
