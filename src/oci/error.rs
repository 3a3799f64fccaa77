//! The registry error type: one variant per situation a caller may want to handle differently.

use serde::Deserialize;

use super::auth::{ChallengeError, DockerConfigError};
use super::digest::Digest;
use super::manifest::ManifestError;
use super::reference::ReferenceError;
use super::server_text::redacted;

/// Errors from registry operations. Messages name the registry, reference or operation
/// involved and never contain credentials or tokens.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An image reference did not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry would be spoken to over plain HTTP without that being allowed.
    #[error(
        "refusing plain HTTP to registry {registry}: pass --registry-allow-http (allow_http) to use an HTTP-only registry; a registry on a loopback address (localhost, 127.0.0.0/8, [::1]) needs no flag"
    )]
    InsecureNotAllowed {
        /// The registry host.
        registry: String,
    },
    /// The client was built for another registry than the reference names.
    #[error("reference {reference} is not on registry {registry} that this client talks to")]
    WrongRegistry {
        /// The reference.
        reference: String,
        /// The client's registry.
        registry: String,
    },
    /// Source and destination are on different registries; copying between registries is
    /// not supported (blob mounts only work inside one registry).
    #[error("cannot copy {src} to {dst}: both must be on the same registry")]
    CrossRegistry {
        /// Source reference.
        src: String,
        /// Destination reference.
        dst: String,
    },
    /// The destination has no tag to write.
    #[error("destination {0} needs a tag (registry/repository:tag) and no digest")]
    DestinationNeedsTag(String),
    /// The source names neither a tag nor a digest.
    #[error("source {0} needs a tag or digest; jisu-deploy never assumes :latest")]
    SourceNeedsTagOrDigest(String),
    /// The registry wants credentials and none were given.
    #[error(
        "registry {registry} requires authentication for {operation}; pass --registry-username with REGISTRY_PASSWORD (or GITHUB_TOKEN) in the environment, or log in so ~/.docker/config.json has credentials"
    )]
    AuthenticationRequired {
        /// The registry host.
        registry: String,
        /// What was being done.
        operation: String,
    },
    /// Credentials were given and rejected.
    #[error("registry {registry} rejected the credentials of user {username:?} for {operation}{}", detail_suffix(.detail))]
    AuthenticationFailed {
        /// The registry host.
        registry: String,
        /// The user name (not secret).
        username: String,
        /// What was being done.
        operation: String,
        /// The registry's own explanation, when it gave one.
        detail: Option<String>,
    },
    /// The credentials are valid but lack permission (HTTP 403).
    #[error("registry {registry} denied {operation}{}; check the token's package write/read permission", detail_suffix(.detail))]
    Denied {
        /// The registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// The registry's own explanation.
        detail: Option<String>,
    },
    /// The WWW-Authenticate header could not be used.
    #[error("registry {registry} sent an unusable authentication challenge: {source}")]
    Challenge {
        /// The registry host.
        registry: String,
        /// What was wrong with it.
        source: ChallengeError,
    },
    /// The registry sent its token service to another origin than its own, which is not
    /// one the user allowed, so the credentials were not sent there; the anonymous token
    /// that was fetched instead did not grant the operation.
    #[error(
        "registry {registry} requires authentication for {operation}, and its token service {realm} is not on the registry's own host (scheme, host and port), so jisu-deploy did not send your credentials there; if you trust that token service, allow it with --registry-token-realm {realm}"
    )]
    CredentialsWithheld {
        /// The registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// The token service's origin (as shown text).
        realm: String,
    },
    /// A token service the user allowed is not an http(s) URL.
    #[error("token service {0:?} given as allowed is not an http:// or https:// URL")]
    InvalidTokenRealm(String),
    /// A response body was larger than this tool accepts for its kind.
    #[error("{operation}: the {what} is larger than {limit} bytes; refusing to read it")]
    BodyTooLarge {
        /// What was being done.
        operation: String,
        /// What the body is (manifest, token reply, tag list page...).
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A paginated listing went past a bound or repeated itself; what was read is not
    /// known to be complete, so it is not returned at all.
    #[error("{operation}: {reason}; the listing is treated as failed, never as complete")]
    ListingIncomplete {
        /// What was being listed.
        operation: String,
        /// Which bound was hit.
        reason: String,
    },
    /// The token service did not hand out a token.
    #[error("token service {realm} failed: {reason}")]
    Token {
        /// The token service URL.
        realm: String,
        /// Why.
        reason: String,
    },
    /// Reading credentials from the Docker config failed.
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
    /// The manifest (tag or digest) does not exist.
    #[error(
        "manifest {reference} not found in the registry; check that the image was pushed under that tag"
    )]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
    },
    /// A blob the copy needs does not exist in the source repository.
    #[error("blob {digest} not found in {repository}")]
    BlobNotFound {
        /// The repository.
        repository: String,
        /// The blob digest.
        digest: Digest,
    },
    /// Content did not hash to the digest it should have.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The registry refused to mount a blob across repositories and streaming copies are off.
    #[error(
        "registry refused to mount blob {digest} from {from} into {to}, and copying blob data is not allowed (enable allow_blob_copy to stream it)"
    )]
    MountRefused {
        /// The blob.
        digest: Digest,
        /// Source repository.
        from: String,
        /// Destination repository.
        to: String,
    },
    /// A manifest could not be understood.
    #[error("manifest {reference}: {source}")]
    Manifest {
        /// The manifest's reference.
        reference: String,
        /// What is wrong.
        source: ManifestError,
    },
    /// The registry answered with a status this operation does not expect.
    #[error("{operation} failed: HTTP {status}{}", detail_suffix(.detail))]
    UnexpectedStatus {
        /// What was being done.
        operation: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error codes and messages, when it sent them.
        detail: Option<String>,
    },
    /// A response lacked something the protocol requires (e.g. an upload Location).
    #[error("{operation}: {problem}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What was missing or wrong.
        problem: String,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("{operation} failed: {source}")]
    Transport {
        /// What was being done.
        operation: String,
        /// The underlying error.
        source: reqwest::Error,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Summarizes a distribution-spec error body (`{"errors":[{"code":..,"message":..}]}`) as
/// `CODE: message; ...`, or the text of a non-JSON body, for an error message: `secrets`
/// (and anything following `Basic`/`Bearer`) blanked out, then escaped to one line and
/// capped (see [`super::server_text::redacted`]). Bodies are untrusted: a registry may echo
/// the request's `Authorization` header, or send any amount of any text.
pub(crate) fn summarize_error_body(body: &[u8], secrets: &[&str]) -> Option<String> {
    summarize_raw(body).map(|text| redacted(&text, secrets))
}

fn summarize_raw(body: &[u8]) -> Option<String> {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.errors.is_empty()
    {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        return Some(parts.join("; "));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_distribution_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}"#;
        assert_eq!(
            summarize_error_body(body, &[]).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        let two = br#"{"errors":[{"code":"DENIED"},{"message":"no"}]}"#;
        assert_eq!(
            summarize_error_body(two, &[]).as_deref(),
            Some("DENIED; no")
        );
        assert_eq!(
            summarize_error_body(b"  oops \n", &[]).as_deref(),
            Some("oops")
        );
        assert_eq!(summarize_error_body(b"", &[]), None);
    }

    #[test]
    fn error_bodies_become_one_capped_line_without_echoed_secrets() {
        let long = summarize_error_body(&[b'x'; 5000], &[]).unwrap();
        assert!(long.starts_with(&"x".repeat(300)), "{long}");
        assert!(long.ends_with("(4700 more characters)"), "{long}");
        let body = br#"{"errors":[{"code":"DENIED","message":"line one\n::error::forged\nAuthorization: Basic Ym90OnB3 pw=hunter2"}]}"#;
        let shown = summarize_error_body(body, &["hunter2"]).unwrap();
        assert_eq!(
            shown,
            "DENIED: line one\\n::error::forged\\nAuthorization: Basic *** pw=***"
        );
    }

    #[test]
    fn messages_name_what_to_fix() {
        let e = RegistryError::AuthenticationRequired {
            registry: "ghcr.io".into(),
            operation: "GET manifest ghcr.io/a/b:v1".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("ghcr.io/a/b:v1") && msg.contains("--registry-username"),
            "{msg}"
        );
        let e = RegistryError::UnexpectedStatus {
            operation: "PUT manifest x".into(),
            status: 400,
            detail: Some("MANIFEST_INVALID: manifest invalid".into()),
        };
        assert_eq!(
            e.to_string(),
            "PUT manifest x failed: HTTP 400: MANIFEST_INVALID: manifest invalid"
        );
    }
}
