//! HTTP client for one OCI registry (distribution spec): authentication, manifests, blobs,
//! and a count of every request it makes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::auth::{Challenge, Credentials, Secret, parse_challenge, parse_token_reply};
use super::counter::{RequestCounter, RequestCounts, RequestKind};
use super::digest::{Digest, DigestWriter};
use super::error::{RegistryError, summarize_error_body};
use super::manifest::{Descriptor, MANIFEST_ACCEPT};
use super::reference::{DOCKER_HUB, Reference};

/// Size of each PATCH when streaming a blob between repositories: bounded memory, few requests.
const COPY_CHUNK: usize = 8 * 1024 * 1024;
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
    /// Speak plain HTTP instead of HTTPS. Off by default and never implied, not even for
    /// loopback addresses: an HTTP registry must be asked for.
    pub allow_http: bool,
    /// Username and password (or token); `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// Token service to use before any challenge. `None` picks the known one for ghcr.io
    /// and Docker Hub; other registries are discovered from their first 401.
    pub bearer_realm: Option<BearerRealm>,
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

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub enum MountOutcome {
    /// 201: the blob is now in the destination repository; no data moved.
    Mounted,
    /// 202: the registry opened an upload session instead (mount refused).
    Refused {
        /// The upload session the registry opened, to stream into or cancel.
        upload: Url,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// Nothing learned yet: send Basic if there are credentials (distribution accepts it
    /// directly; a Bearer registry answers 401 with its challenge and we switch).
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

/// A client for one registry. Every outside call goes through it, so its counter sees all.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    base: Url,
    allow_http: bool,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
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
    /// `http://` when `options.allow_http` is set.
    pub fn new(registry: &str, options: ClientOptions) -> Result<Self, RegistryError> {
        let scheme = if options.allow_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", api_host(registry))).map_err(|e| {
            RegistryError::Protocol {
                operation: format!("building the URL of registry {registry}"),
                problem: e.to_string(),
            }
        })?;
        Self::with_base_url(registry, base, options)
    }

    /// A client for `registry` whose API is at `base` (for mirrors and tests). An `http:`
    /// base is refused unless `options.allow_http` is set.
    pub fn with_base_url(
        registry: &str,
        mut base: Url,
        options: ClientOptions,
    ) -> Result<Self, RegistryError> {
        if base.scheme() == "http" && !options.allow_http {
            return Err(RegistryError::InsecureNotAllowed {
                registry: registry.to_owned(),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let allow_http = options.allow_http;
        // Never follow a redirect from HTTPS down to HTTP unless HTTP was allowed; reqwest
        // already drops Authorization when a redirect leaves the host (blob storage).
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().scheme() == "http" && !allow_http {
                attempt.error("redirect to plain HTTP refused")
            } else if attempt.previous().len() > 5 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
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
        let preset = options.bearer_realm.or_else(|| {
            // Only the real ghcr.io/Docker Hub endpoints use their known token service.
            (base.scheme() == "https" && base.host_str() == Some(api_host(registry)))
                .then(|| known_bearer_realm(registry))
                .flatten()
        });
        Ok(RegistryClient {
            http,
            registry: registry.to_owned(),
            base,
            allow_http,
            credentials: options.credentials,
            auth: Mutex::new(AuthState {
                scheme: preset.map_or(Scheme::Unknown, Scheme::Bearer),
                scopes: BTreeSet::new(),
                token: None,
            }),
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

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Protocol {
            operation: format!("building URL {path}"),
            problem: e.to_string(),
        })
    }

    /// Sends a request, answering one authentication challenge if the registry makes it.
    async fn send(
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
            let detail = summarize_error_body(&response.bytes().await.unwrap_or_default());
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

    fn unauthorized(&self, operation: &str, detail: Option<String>) -> RegistryError {
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
                let had_sent_basic = state.scheme == Scheme::Unknown;
                state.scheme = Scheme::Basic;
                !had_sent_basic
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
            Scheme::Unknown | Scheme::Basic => {
                Ok(self.credentials.as_ref().map(Credentials::basic_header))
            }
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
        let token_error = |reason: String| RegistryError::Token {
            realm: realm.realm.clone(),
            reason,
        };
        let mut url = Url::parse(&realm.realm)
            .map_err(|e| token_error(format!("realm is not a URL: {e}")))?;
        if url.scheme() == "http" && !self.allow_http {
            return Err(RegistryError::InsecureNotAllowed {
                registry: format!("{} (token service {})", self.registry, realm.realm),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &realm.service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.http.get(url).header(ACCEPT, "application/json");
        if let Some(creds) = &self.credentials {
            request = request.header(AUTHORIZATION, creds.basic_header());
        }
        self.counter.record(RequestKind::Token);
        let requested_at = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                operation: format!("token request to {}", realm.realm),
                source,
            })?;
        let status = response.status();
        debug!(status = status.as_u16(), realm = %realm.realm, ?scopes, "token request");
        let body = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Transport {
                operation: format!("token request to {}", realm.realm),
                source,
            })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(operation, summarize_error_body(&body)));
        }
        if !status.is_success() {
            return Err(token_error(format!(
                "HTTP {}{}",
                status.as_u16(),
                summarize_error_body(&body)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )));
        }
        let token = parse_token_reply(&body).map_err(token_error)?;
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

    async fn status_error(operation: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let detail = summarize_error_body(&response.bytes().await.unwrap_or_default());
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
    async fn failure(&self, operation: &str, response: Response) -> RegistryError {
        if response.status() == StatusCode::FORBIDDEN {
            let detail = summarize_error_body(&response.bytes().await.unwrap_or_default());
            return self.denied(operation, detail);
        }
        Self::status_error(operation, response).await
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
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Transport {
                operation: operation.clone(),
                source,
            })?;
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
    /// returns the digest the registry reports having stored.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self.manifest_url(reference)?;
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

    /// Whether `repository` has blob `digest`.
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let operation = format!("HEAD blob {digest} in {repository}");
        let response = self
            .send(RequestKind::BlobHead, &operation, |http| {
                http.head(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(&operation, response).await),
        }
    }

    /// Asks the registry to mount `digest` from `from` into `to` without moving data.
    pub async fn mount_blob(
        &self,
        to: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<MountOutcome, RegistryError> {
        let mut url = self.url(&format!("v2/{to}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let operation = format!("mount blob {digest} from {from} into {to}");
        let response = self
            .send(RequestKind::BlobMount, &operation, |http| {
                http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Refused {
                upload: self.location(&operation, &response)?,
            }),
            _ => Err(self.failure(&operation, response).await),
        }
    }

    fn location(&self, operation: &str, response: &Response) -> Result<Url, RegistryError> {
        let location = header_string(response.headers(), LOCATION.as_str()).ok_or_else(|| {
            RegistryError::Protocol {
                operation: operation.to_owned(),
                problem: "response has no Location header".into(),
            }
        })?;
        // Location may be absolute or relative to the registry.
        response
            .url()
            .join(&location)
            .map_err(|e| RegistryError::Protocol {
                operation: operation.to_owned(),
                problem: format!("Location {location:?} is not a URL: {e}"),
            })
    }

    /// Abandons an upload session (after a refused mount that will not be streamed into).
    pub async fn cancel_upload(&self, upload: &Url) -> Result<(), RegistryError> {
        let operation = "cancel blob upload".to_owned();
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.delete(upload.clone())
            })
            .await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failure(&operation, response).await)
        }
    }

    /// Streams blob `blob` from repository `from` into the open upload session `upload`,
    /// in bounded chunks, verifying size and digest; returns the bytes moved. On failure the
    /// upload session is cancelled so the registry keeps no half-written blob.
    pub async fn copy_blob(
        &self,
        from: &str,
        blob: &Descriptor,
        upload: Url,
    ) -> Result<u64, RegistryError> {
        let mut upload = upload;
        match self.stream_blob(from, blob, &mut upload).await {
            Ok(moved) => Ok(moved),
            Err(e) => {
                if let Err(cancel) = self.cancel_upload(&upload).await {
                    warn!(error = %cancel, "could not cancel the failed blob upload");
                }
                Err(e)
            }
        }
    }

    /// The body of [`Self::copy_blob`]; keeps `upload` at the session's latest location.
    async fn stream_blob(
        &self,
        from: &str,
        blob: &Descriptor,
        upload: &mut Url,
    ) -> Result<u64, RegistryError> {
        let url = self.url(&format!("v2/{from}/blobs/{}", blob.digest))?;
        let operation = format!("GET blob {} from {from}", blob.digest);
        let mut source = self
            .send(RequestKind::BlobGet, &operation, |http| {
                http.get(url.clone())
            })
            .await?;
        match source.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::BlobNotFound {
                    repository: from.to_owned(),
                    digest: blob.digest.clone(),
                });
            }
            _ => return Err(self.failure(&operation, source).await),
        }
        let mut hasher = DigestWriter::default();
        let capacity = usize::try_from(blob.size)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        let mut pending: Vec<u8> = Vec::with_capacity(capacity);
        let mut offset = 0u64;
        loop {
            let chunk = source
                .chunk()
                .await
                .map_err(|source| RegistryError::Transport {
                    operation: operation.clone(),
                    source,
                })?;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                hasher.update(&chunk);
                pending.extend_from_slice(&chunk);
            }
            if !pending.is_empty() && (done || pending.len() >= COPY_CHUNK) {
                let data = Bytes::from(std::mem::take(&mut pending));
                let len = data.len() as u64;
                *upload = self.upload_chunk(upload.clone(), offset, data).await?;
                offset += len;
            }
            if done {
                break;
            }
        }
        let actual = hasher.finish();
        if actual != blob.digest || offset != blob.size {
            return Err(RegistryError::DigestMismatch {
                what: format!(
                    "blob copied from {from} ({offset} bytes, descriptor says {})",
                    blob.size
                ),
                expected: blob.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.finish_upload(upload.clone(), &blob.digest, Bytes::new())
            .await?;
        Ok(offset)
    }

    async fn upload_chunk(
        &self,
        upload: Url,
        offset: u64,
        data: Bytes,
    ) -> Result<Url, RegistryError> {
        let operation = format!("PATCH blob upload at offset {offset}");
        let end = offset + data.len() as u64 - 1;
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.patch(upload.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .body(data.clone())
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.failure(&operation, response).await);
        }
        self.location(&operation, &response)
    }

    async fn finish_upload(
        &self,
        mut upload: Url,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        upload
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let operation = format!("finish blob upload {digest}");
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.request(Method::PUT, upload.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.failure(&operation, response).await);
        }
        if let Some(stored) = content_digest(response.headers())
            && stored != *digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "uploaded blob".into(),
                expected: digest.to_string(),
                actual: stored.to_string(),
            });
        }
        Ok(())
    }

    /// Uploads `data` to `repository` as one blob (POST, then PUT with the body) and
    /// returns its digest. Skips the upload when the blob is already there.
    pub async fn push_blob(&self, repository: &str, data: Bytes) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&data);
        if self.blob_exists(repository, &digest).await? {
            return Ok(digest);
        }
        let url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let operation = format!("start blob upload to {repository}");
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.failure(&operation, response).await);
        }
        let upload = self.location(&operation, &response)?;
        self.finish_upload(upload, &digest, data).await?;
        Ok(digest)
    }
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Docker-Content-Digest` header, when present and a sha256 digest.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    let value = header_string(headers, "docker-content-digest")?;
    match value.parse() {
        Ok(digest) => Some(digest),
        Err(e) => {
            warn!(header = %value, error = %e, "ignoring unusable Docker-Content-Digest header");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_needs_to_be_asked_for_even_on_loopback() {
        let base = Url::parse("http://127.0.0.1:5000/").unwrap();
        let err =
            RegistryClient::with_base_url("127.0.0.1:5000", base.clone(), ClientOptions::default())
                .unwrap_err();
        assert!(matches!(err, RegistryError::InsecureNotAllowed { .. }));
        assert!(err.to_string().contains("--allow-http"));
        let ok = RegistryClient::with_base_url(
            "127.0.0.1:5000",
            base,
            ClientOptions {
                allow_http: true,
                ..ClientOptions::default()
            },
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn default_scheme_is_https_and_docker_hub_maps_to_its_api_host() {
        let c = RegistryClient::new("localhost:5000", ClientOptions::default()).unwrap();
        assert_eq!(c.base.as_str(), "https://localhost:5000/");
        let c = RegistryClient::new("docker.io", ClientOptions::default()).unwrap();
        assert_eq!(c.base.as_str(), "https://registry-1.docker.io/");
        let c = RegistryClient::new(
            "localhost:5000",
            ClientOptions {
                allow_http: true,
                ..ClientOptions::default()
            },
        )
        .unwrap();
        assert_eq!(c.base.as_str(), "http://localhost:5000/");
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
