//! HTTP client for one OCI registry (distribution spec): connection options, authentication
//! (Basic, Bearer token exchange), manifest GET/HEAD/PUT, and a count of every request it
//! makes. Blob operations are in `blobs.rs`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::auth::{Challenge, Credentials, Secret, parse_challenge, parse_token_reply};
use super::body::{MAX_MANIFEST_BYTES, MAX_TOKEN_REPLY_BYTES, read_capped, read_error_body};
use super::counter::{RequestCounter, RequestCounts, RequestKind};
use super::digest::Digest;
use super::error::{RegistryError, summarize_error_body};
use super::manifest::{MANIFEST_ACCEPT, check_for_put};
use super::reference::{DOCKER_HUB, Reference};
use super::server_text::{redacted, shown};

/// Tokens are renewed this long before the expiry the service announced.
const TOKEN_SLACK: Duration = Duration::from_secs(10);
/// The distribution token spec's lifetime when the service does not say.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// A token service the client may use without first being challenged (saves one round trip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerRealm {
    /// Token service URL.
    pub realm: String,
    /// `service` parameter.
    pub service: Option<String>,
}

/// How to reach and authenticate to a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Speak plain HTTP instead of HTTPS. Off by default; a registry on a loopback address
    /// (see [`is_loopback_registry`]) is spoken to over HTTP without it.
    pub allow_http: bool,
    /// Username and password (or token); `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// Token service to use before any challenge. `None` picks the known one for ghcr.io
    /// and Docker Hub; other registries are discovered from their first 401. Being chosen
    /// by the user, its origin may receive the credentials.
    pub bearer_realm: Option<BearerRealm>,
    /// Token services (`http(s)://host[:port]`, a path is ignored) that may receive the
    /// credentials although they are not on the registry's own origin. Without an entry,
    /// a token service elsewhere gets an anonymous request (see [`RegistryClient`]).
    pub trusted_token_realms: Vec<String>,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// Deadline for one whole request, body included.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            allow_http: false,
            credentials: None,
            bearer_realm: None,
            trusted_token_realms: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(600),
        }
    }
}

/// A manifest exactly as the registry returned it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The bytes, never re-serialized.
    pub bytes: Bytes,
    /// The `Content-Type` header, verbatim (pushed back unchanged).
    pub content_type: Option<String>,
    /// sha256 of `bytes`, checked against what the registry and reference claimed.
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// Nothing learned yet: requests go without credentials until the registry challenges.
    Unknown,
    Basic,
    Bearer(BearerRealm),
}

struct AuthState {
    scheme: Scheme,
    /// Scopes the next token must cover (declared up front so one token serves a retag).
    scopes: BTreeSet<String>,
    token: Option<CachedToken>,
}

struct CachedToken {
    value: Secret,
    scopes: BTreeSet<String>,
    renew_at: Instant,
}

/// Whether `host` — a registry name as in a reference (`localhost:5000`, `127.0.0.1:5000`,
/// `[::1]:5000`) or a URL's host — is a loopback address. Such a registry is spoken to over
/// plain HTTP without `allow_http`, as Docker does: the traffic never leaves the machine,
/// and local test registries rarely have a certificate.
pub fn is_loopback_registry(host: &str) -> bool {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.rsplit_once(':') {
        Some((name, port))
            // `u16` parsing alone would take `+5000`.
            if port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok() =>
        {
            name
        }
        _ => host,
    };
    // `SocketAddr` and `IpAddr` do not take a bracketed IPv6 address without a port.
    if let Some(inside) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inside.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    name.eq_ignore_ascii_case("localhost")
}

/// When a URL the client is sent to (its base, a redirect, a token realm) may be plain HTTP.
#[derive(Debug, Clone, Copy)]
struct PlainHttp {
    /// The caller asked for HTTP (`allow_http`).
    allowed: bool,
    /// The registry's API is on a loopback address. Its redirects and token realms may then
    /// use HTTP on loopback too, never HTTP to another machine.
    loopback: bool,
}

impl PlainHttp {
    fn for_base(base: &Url, allow_http: bool) -> Self {
        PlainHttp {
            allowed: allow_http,
            loopback: base.host_str().is_some_and(is_loopback_registry),
        }
    }

    fn permits(self, url: &Url) -> bool {
        url.scheme() != "http"
            || self.allowed
            || (self.loopback && url.host_str().is_some_and(is_loopback_registry))
    }
}

/// Scheme, lower-case host and port of a URL: what must match for a token service to be
/// "on the registry's own host".
type Origin = (String, String, u16);

fn origin_of(url: &Url) -> Option<Origin> {
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

/// A client for one registry. Every outside call goes through it, so its counter sees all.
///
/// Credentials are sent only in answer to a challenge (a 401 with `WWW-Authenticate`):
/// to the registry itself after a Basic challenge, and to a token service after a Bearer
/// challenge only when that service is on the registry's own origin (same scheme, host
/// and port), is the known service of ghcr.io or Docker Hub, or is one the caller named
/// ([`ClientOptions::bearer_realm`], [`ClientOptions::trusted_token_realms`]). The
/// registrable domain is deliberately not enough: it needs the public suffix list to be
/// right, and a port is a different service. Any other token service is asked for an
/// anonymous token; when that does not do, the error says how to allow the service.
/// The one exception to "after a challenge" is a known or configured token service,
/// which is asked for a token up front. Request headers are never logged, and text from
/// response bodies reaches errors only through [`super::server_text::redacted`], with
/// every secret this client holds blanked out.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    base: Url,
    plain_http: PlainHttp,
    credentials: Option<Credentials>,
    /// Origins that may receive the credentials in a token request.
    credential_origins: Vec<Origin>,
    auth: Mutex<AuthState>,
    /// Tokens handed out so far, blanked out of any text shown (a server may echo them).
    issued_tokens: std::sync::Mutex<Vec<Secret>>,
    /// The token service (as shown) that last got an anonymous request although there
    /// are credentials; a refusal is then reported as withheld credentials.
    withheld_from: std::sync::Mutex<Option<String>>,
    counter: RequestCounter,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("base", &self.base.as_str())
            .field(
                "username",
                &self.credentials.as_ref().map(|c| c.username.as_str()),
            )
            .finish_non_exhaustive()
    }
}

/// Token services of registries this tool is mostly used with.
fn known_bearer_realm(registry: &str) -> Option<BearerRealm> {
    match registry {
        "ghcr.io" => Some(BearerRealm {
            realm: "https://ghcr.io/token".into(),
            service: Some("ghcr.io".into()),
        }),
        DOCKER_HUB => Some(BearerRealm {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
        }),
        _ => None,
    }
}

/// The API host of a registry name (Docker Hub's API is not at docker.io).
fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl RegistryClient {
    /// A client for `registry` (as in a [`Reference`]), at `https://<registry>/`, or
    /// `http://` when `options.allow_http` is set or the registry is on a loopback address.
    pub fn new(registry: &str, options: ClientOptions) -> Result<Self, RegistryError> {
        let host = api_host(registry);
        let scheme = if options.allow_http || is_loopback_registry(host) {
            "http"
        } else {
            "https"
        };
        let base =
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::Protocol {
                operation: format!("building the URL of registry {registry}"),
                problem: e.to_string(),
            })?;
        Self::with_base_url(registry, base, options)
    }

    /// A client for `registry` whose API is at `base` (for mirrors and tests). An `http:`
    /// base is refused unless `options.allow_http` is set or its host is a loopback address.
    pub fn with_base_url(
        registry: &str,
        mut base: Url,
        options: ClientOptions,
    ) -> Result<Self, RegistryError> {
        let plain_http = PlainHttp::for_base(&base, options.allow_http);
        if !plain_http.permits(&base) {
            return Err(RegistryError::InsecureNotAllowed {
                registry: registry.to_owned(),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // Never follow a redirect down to plain HTTP unless HTTP was allowed or it stays on
        // loopback from a loopback registry; reqwest already drops Authorization when a
        // redirect leaves the host (blob storage).
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if !plain_http.permits(attempt.url()) {
                attempt.error("redirect to plain HTTP refused")
            } else if attempt.previous().len() > 5 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        crate::tls::ensure_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(redirect)
            .user_agent(concat!("jisu-deploy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::Transport {
                operation: "building the HTTP client".into(),
                source,
            })?;
        // Only the real ghcr.io/Docker Hub endpoints use their known token service.
        let known = (base.scheme() == "https" && base.host_str() == Some(api_host(registry)))
            .then(|| known_bearer_realm(registry))
            .flatten();
        let mut credential_origins: Vec<Origin> = origin_of(&base).into_iter().collect();
        for realm in options
            .trusted_token_realms
            .iter()
            .chain(options.bearer_realm.iter().map(|r| &r.realm))
            .chain(known.iter().map(|r| &r.realm))
        {
            let origin = Url::parse(realm)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .as_ref()
                .and_then(origin_of)
                .ok_or_else(|| RegistryError::InvalidTokenRealm(shown(realm)))?;
            credential_origins.push(origin);
        }
        let preset = options.bearer_realm.or(known);
        Ok(RegistryClient {
            http,
            registry: registry.to_owned(),
            base,
            plain_http,
            credentials: options.credentials,
            credential_origins,
            auth: Mutex::new(AuthState {
                scheme: preset.map_or(Scheme::Unknown, Scheme::Bearer),
                scopes: BTreeSet::new(),
                token: None,
            }),
            issued_tokens: std::sync::Mutex::new(Vec::new()),
            withheld_from: std::sync::Mutex::new(None),
            counter: RequestCounter::default(),
        })
    }

    /// The registry this client talks to (`ghcr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The shared counter of requests made so far.
    pub fn counter(&self) -> &RequestCounter {
        &self.counter
    }

    /// Counts of requests made so far.
    pub fn requests(&self) -> RequestCounts {
        self.counter.snapshot()
    }

    /// Declares scopes (`repository:<name>:pull[,push]`) the next token must cover, so one
    /// token exchange serves a whole operation on Bearer registries.
    pub async fn request_scopes(&self, scopes: impl IntoIterator<Item = String>) {
        self.auth.lock().await.scopes.extend(scopes);
    }

    pub(super) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Protocol {
            operation: format!("building URL {path}"),
            problem: e.to_string(),
        })
    }

    /// Sends a request, answering one authentication challenge if the registry makes it.
    pub(super) async fn send(
        &self,
        kind: RequestKind,
        operation: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut retried = false;
        loop {
            let authorization = self.authorization(operation).await?;
            let mut request = make(&self.http);
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            self.counter.record(kind);
            let response = request
                .send()
                .await
                .map_err(|source| RegistryError::Transport {
                    operation: operation.to_owned(),
                    source,
                })?;
            debug!(kind = kind.name(), status = response.status().as_u16(), url = %response.url(), "registry request");
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let detail = self.detail(&read_error_body(response).await);
            let Some(challenge) = challenge.filter(|_| !retried) else {
                return Err(self.unauthorized(operation, detail));
            };
            let challenge =
                parse_challenge(&challenge).map_err(|source| RegistryError::Challenge {
                    registry: self.registry.clone(),
                    source,
                })?;
            if !self.learn(challenge).await {
                return Err(self.unauthorized(operation, detail));
            }
            retried = true;
        }
    }

    /// Every secret this client holds or was handed, as text to blank out of shown text.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(creds) = &self.credentials {
            let header = creds.basic_header();
            secrets.push(creds.password.expose().to_owned());
            if let Some(encoded) = header.strip_prefix("Basic ") {
                secrets.push(encoded.to_owned());
            }
        }
        let tokens = self.issued_tokens.lock().unwrap_or_else(|e| e.into_inner());
        secrets.extend(tokens.iter().map(|t| t.expose().to_owned()));
        secrets
    }

    /// A summary of an error body fit for a message (see [`summarize_error_body`]).
    pub(super) fn detail(&self, body: &[u8]) -> Option<String> {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        summarize_error_body(body, &secrets)
    }

    /// Server-chosen text (a URL, a parser's complaint) fit for a message.
    fn server_text(&self, text: &str) -> String {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        redacted(text, &secrets)
    }

    fn unauthorized(&self, operation: &str, detail: Option<String>) -> RegistryError {
        let withheld = self
            .withheld_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(_), Some(realm)) = (&self.credentials, withheld) {
            return RegistryError::CredentialsWithheld {
                registry: self.registry.clone(),
                operation: operation.to_owned(),
                realm,
            };
        }
        match &self.credentials {
            None => RegistryError::AuthenticationRequired {
                registry: self.registry.clone(),
                operation: operation.to_owned(),
            },
            Some(creds) => RegistryError::AuthenticationFailed {
                registry: self.registry.clone(),
                username: creds.username.clone(),
                operation: operation.to_owned(),
                detail,
            },
        }
    }

    /// Takes in a challenge; returns whether retrying the request can now succeed.
    async fn learn(&self, challenge: Challenge) -> bool {
        let mut state = self.auth.lock().await;
        match challenge {
            Challenge::Basic => {
                // Basic only helps if we have credentials and have not already sent them.
                if self.credentials.is_none() || state.scheme == Scheme::Basic {
                    return false;
                }
                state.scheme = Scheme::Basic;
                true
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                state.scheme = Scheme::Bearer(BearerRealm { realm, service });
                if let Some(scope) = scope {
                    // A challenge may name several scopes separated by spaces.
                    state.scopes.extend(
                        scope
                            .split(' ')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    );
                }
                state.token = None;
                true
            }
        }
    }

    /// The Authorization header for the next request, fetching a token when needed.
    async fn authorization(&self, operation: &str) -> Result<Option<String>, RegistryError> {
        let mut state = self.auth.lock().await;
        match state.scheme.clone() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credentials.as_ref().map(Credentials::basic_header)),
            Scheme::Bearer(realm) => {
                let fresh = state.token.as_ref().is_some_and(|t| {
                    Instant::now() < t.renew_at && t.scopes.is_superset(&state.scopes)
                });
                if !fresh {
                    let scopes = state.scopes.clone();
                    let token = self.fetch_token(&realm, &scopes, operation).await?;
                    state.token = Some(token);
                }
                Ok(state
                    .token
                    .as_ref()
                    .map(|t| format!("Bearer {}", t.value.expose())))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &BearerRealm,
        scopes: &BTreeSet<String>,
        operation: &str,
    ) -> Result<CachedToken, RegistryError> {
        let realm_shown = shown(&realm.realm);
        let token_error = |reason: String| RegistryError::Token {
            realm: realm_shown.clone(),
            reason,
        };
        let mut url = Url::parse(&realm.realm)
            .map_err(|e| token_error(format!("realm is not a URL: {e}")))?;
        if !self.plain_http.permits(&url) {
            return Err(RegistryError::InsecureNotAllowed {
                registry: format!("{} (token service {realm_shown})", self.registry),
            });
        }
        let trusted = origin_of(&url).is_some_and(|o| self.credential_origins.contains(&o));
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &realm.service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        let withheld = match &self.credentials {
            Some(creds) if trusted => {
                request = request.header(AUTHORIZATION, creds.basic_header());
                None
            }
            Some(_) => {
                let origin = url.origin().ascii_serialization();
                warn!(registry = %self.registry, token_service = %shown(&origin), "token service is not on the registry's host; asking it for an anonymous token");
                Some(shown(&origin))
            }
            None => None,
        };
        *self.withheld_from.lock().unwrap_or_else(|e| e.into_inner()) = withheld;
        self.counter.record(RequestKind::Token);
        let requested_at = Instant::now();
        let token_operation = format!("token request to {realm_shown}");
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                operation: token_operation.clone(),
                source,
            })?;
        let status = response.status();
        debug!(status = status.as_u16(), realm = %realm_shown, ?scopes, "token request");
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = self.detail(&read_error_body(response).await);
            return Err(self.unauthorized(operation, detail));
        }
        if !status.is_success() {
            let detail = self.detail(&read_error_body(response).await);
            return Err(token_error(format!(
                "HTTP {}{}",
                status.as_u16(),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            )));
        }
        let body = read_capped(
            response,
            MAX_TOKEN_REPLY_BYTES,
            "token reply",
            &token_operation,
        )
        .await?;
        let token = parse_token_reply(&body).map_err(|e| token_error(self.server_text(&e)))?;
        self.issued_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token.value.clone());
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME));
        Ok(CachedToken {
            value: token.value,
            scopes: scopes.clone(),
            renew_at: requested_at + lifetime.saturating_sub(TOKEN_SLACK),
        })
    }

    fn check_registry(&self, reference: &Reference) -> Result<(), RegistryError> {
        if reference.registry() != self.registry {
            return Err(RegistryError::WrongRegistry {
                reference: reference.to_string(),
                registry: self.registry.clone(),
            });
        }
        Ok(())
    }

    fn manifest_url(&self, reference: &Reference) -> Result<Url, RegistryError> {
        self.check_registry(reference)?;
        let target = reference
            .manifest_target()
            .ok_or_else(|| RegistryError::SourceNeedsTagOrDigest(reference.to_string()))?;
        self.url(&format!("v2/{}/manifests/{target}", reference.repository()))
    }

    async fn status_error(&self, operation: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let detail = self.detail(&read_error_body(response).await);
        RegistryError::UnexpectedStatus {
            operation: operation.to_owned(),
            status,
            detail,
        }
    }

    fn denied(&self, operation: &str, detail: Option<String>) -> RegistryError {
        RegistryError::Denied {
            registry: self.registry.clone(),
            operation: operation.to_owned(),
            detail,
        }
    }

    /// Maps the statuses every operation treats alike (403) and otherwise reports the status.
    pub(super) async fn failure(&self, operation: &str, response: Response) -> RegistryError {
        if response.status() == StatusCode::FORBIDDEN {
            let detail = self.detail(&read_error_body(response).await);
            return self.denied(operation, detail);
        }
        self.status_error(operation, response).await
    }

    /// GETs a manifest by tag or digest and verifies its bytes against the digest the
    /// registry reported and, for a digest reference, the one asked for.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.manifest_url(reference)?;
        let operation = format!("GET manifest {reference}");
        let response = self
            .send(RequestKind::ManifestGet, &operation, |http| {
                http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::ManifestNotFound {
                    reference: reference.to_string(),
                });
            }
            _ => return Err(self.failure(&operation, response).await),
        }
        let content_type = header_string(response.headers(), CONTENT_TYPE.as_str());
        let claimed = content_digest(response.headers());
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, "manifest", &operation).await?;
        let digest = Digest::of(&bytes);
        for expected in [claimed.as_ref(), reference.digest()].into_iter().flatten() {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {reference}"),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// HEADs a manifest: `Some(digest)` when it exists; `None` when it does not, or when
    /// the registry did not say which digest it has (a write is then the safe choice).
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self.manifest_url(reference)?;
        let operation = format!("HEAD manifest {reference}");
        let response = self
            .send(RequestKind::ManifestHead, &operation, |http| {
                http.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status() {
            StatusCode::OK => {
                let digest = content_digest(response.headers());
                if digest.is_none() {
                    warn!(%reference, "registry sent no Docker-Content-Digest on HEAD; will write");
                }
                Ok(digest)
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.failure(&operation, response).await),
        }
    }

    /// PUTs manifest bytes unchanged under `reference` (tag or digest) with `content_type`;
    /// returns the digest the registry reports having stored. Bytes that are not a
    /// manifest or index of a supported type (see [`check_for_put`]) are refused before
    /// any request.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self.manifest_url(reference)?;
        check_for_put(content_type, &bytes).map_err(|source| RegistryError::Manifest {
            reference: reference.to_string(),
            source,
        })?;
        let operation = format!("PUT manifest {reference}");
        let response = self
            .send(RequestKind::ManifestPut, &operation, |http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, content_type)
                    .body(bytes.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(self.failure(&operation, response).await);
        }
        Ok(content_digest(response.headers()))
    }
}

pub(super) fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Docker-Content-Digest` header, when present and a sha256 digest.
pub(super) fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    let value = header_string(headers, "docker-content-digest")?;
    match value.parse() {
        Ok(digest) => Some(digest),
        Err(_) => {
            warn!(header = %shown(&value), "ignoring unusable Docker-Content-Digest header");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised_by_address_not_by_prefix() {
        for host in [
            "localhost",
            "localhost:5000",
            "LocalHost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3",
            "127.255.255.254:443",
            "[::1]",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_registry(host), "{host}");
        }
        for host in [
            "localhost.example.com",
            "localhost.example.com:5000",
            "evil-localhost",
            "localhost:",
            "localhost:+5000",
            "localhost:99999",
            "128.0.0.1",
            "126.255.255.255",
            "10.0.0.1:5000",
            "0.0.0.0:5000",
            "127.0.0.1.nip.io",
            "127.0.0.1.nip.io:5000",
            "ghcr.io",
            "[::2]:5000",
            "[::1]:99999",
            "[127.0.0.1]",
            "",
        ] {
            assert!(!is_loopback_registry(host), "{host}");
        }
    }

    #[test]
    fn http_base_is_refused_off_loopback_unless_asked_for() {
        let base = Url::parse("http://10.0.0.1:5000/").unwrap();
        let err =
            RegistryClient::with_base_url("10.0.0.1:5000", base.clone(), ClientOptions::default())
                .unwrap_err();
        assert!(matches!(err, RegistryError::InsecureNotAllowed { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("pass --registry-allow-http") && msg.contains("loopback"),
            "{msg}"
        );
        let ok = RegistryClient::with_base_url(
            "10.0.0.1:5000",
            base,
            ClientOptions {
                allow_http: true,
                ..ClientOptions::default()
            },
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn http_base_on_loopback_needs_no_flag() {
        for base in [
            "http://127.0.0.1:5000/",
            "http://localhost:5000/",
            "http://[::1]:5000/",
        ] {
            let url = Url::parse(base).unwrap();
            let c = RegistryClient::with_base_url("mirror", url, ClientOptions::default());
            assert!(c.is_ok(), "{base}");
        }
    }

    #[test]
    fn default_scheme_is_https_except_on_loopback() {
        let c = RegistryClient::new("registry.example:5000", ClientOptions::default()).unwrap();
        assert_eq!(c.base.as_str(), "https://registry.example:5000/");
        let c = RegistryClient::new("docker.io", ClientOptions::default()).unwrap();
        assert_eq!(c.base.as_str(), "https://registry-1.docker.io/");
        for (registry, base) in [
            ("localhost:5000", "http://localhost:5000/"),
            ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
            ("[::1]:5000", "http://[::1]:5000/"),
        ] {
            let c = RegistryClient::new(registry, ClientOptions::default()).unwrap();
            assert_eq!(c.base.as_str(), base);
        }
        let c = RegistryClient::new(
            "registry.example:5000",
            ClientOptions {
                allow_http: true,
                ..ClientOptions::default()
            },
        )
        .unwrap();
        assert_eq!(c.base.as_str(), "http://registry.example:5000/");
    }

    #[test]
    fn redirects_and_realms_may_use_http_only_from_loopback_to_loopback() {
        let url = |u: &str| Url::parse(u).unwrap();
        let local = PlainHttp::for_base(&url("http://127.0.0.1:5000/"), false);
        assert!(local.permits(&url("http://127.0.0.1:5001/token")));
        assert!(local.permits(&url("http://localhost/blob")));
        assert!(local.permits(&url("https://auth.example/token")));
        assert!(!local.permits(&url("http://auth.example/token")));
        assert!(!local.permits(&url("http://127.0.0.1.nip.io/token")));

        let remote = PlainHttp::for_base(&url("https://ghcr.io/"), false);
        assert!(remote.permits(&url("https://ghcr.io/token")));
        assert!(!remote.permits(&url("http://ghcr.io/token")));
        assert!(!remote.permits(&url("http://127.0.0.1:5000/token")));

        let asked = PlainHttp::for_base(&url("https://registry.example/"), true);
        assert!(asked.permits(&url("http://auth.example/token")));
    }

    #[tokio::test]
    async fn loopback_registry_token_realm_and_redirect_work_over_http_without_the_flag() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let server = MockServer::start().await;
        let host = server.address().to_string();
        let challenge = format!(
            r#"Bearer realm="http://{host}/token",service="local",scope="repository:a:pull""#
        );
        Mock::given(method("GET"))
            .and(path("/v2/a/manifests/t"))
            .and(header("authorization", "Bearer tok"))
            .respond_with(
                ResponseTemplate::new(307)
                    .insert_header("location", format!("http://{host}/moved/manifest")),
            )
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v2/a/manifests/t"))
            .respond_with(
                ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"tok"}"#))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/moved/manifest"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;

        let c = RegistryClient::new(&host, ClientOptions::default()).unwrap();
        let reference = Reference::parse(&format!("{host}/a:t")).unwrap();
        let fetched = c.get_manifest(&reference).await.unwrap();
        assert_eq!(fetched.bytes.as_ref(), b"{}");
    }

    #[tokio::test]
    async fn ghcr_uses_its_known_token_service_up_front() {
        let c = RegistryClient::new("ghcr.io", ClientOptions::default()).unwrap();
        assert_eq!(
            c.auth.lock().await.scheme,
            Scheme::Bearer(BearerRealm {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into())
            })
        );
        let other = RegistryClient::new("quay.io", ClientOptions::default()).unwrap();
        assert_eq!(other.auth.lock().await.scheme, Scheme::Unknown);
    }

    #[test]
    fn debug_output_has_no_password() {
        let c = RegistryClient::new(
            "ghcr.io",
            ClientOptions {
                credentials: Some(Credentials::new("bot", "ghp_topsecret")),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("bot") && !shown.contains("topsecret"),
            "{shown}"
        );
    }

    #[test]
    fn content_digest_header_is_parsed_or_ignored() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_digest(&headers), None);
        let d = Digest::of(b"x");
        headers.insert("Docker-Content-Digest", d.as_str().parse().unwrap());
        assert_eq!(content_digest(&headers), Some(d));
        headers.insert("Docker-Content-Digest", "sha512:00".parse().unwrap());
        assert_eq!(content_digest(&headers), None);
    }
}
