//! Commit statuses (`POST /repos/{owner}/{repo}/statuses/{sha}`): the fallback when the
//! token may not create check runs but may set statuses. A description is cut to GitHub's
//! [`MAX_DESCRIPTION`] characters. A `403` (a pull request from a fork, no
//! `permissions: statuses: write`) is [`StatusesError::Forbidden`], told apart like
//! [`super::checks::ChecksError::Forbidden`].

use serde::Serialize;
use serde_json::Value;

use super::permissions::{MissingPermission, Permission};
use super::rest::{self, ApiError};
use crate::oci::auth::Secret;

/// Longest description GitHub accepts on a commit status (characters).
pub const MAX_DESCRIPTION: usize = 140;

/// The state of a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    /// Running.
    Pending,
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Could not finish.
    Error,
}

/// Why a commit status could not be set.
#[derive(Debug, thiserror::Error)]
pub enum StatusesError {
    /// `403`: the token may not set commit statuses.
    #[error(transparent)]
    Forbidden(MissingPermission),
    /// `401`: the token is missing, expired or invalid.
    #[error(transparent)]
    Unauthorized(MissingPermission),
    /// `sha` is not a full commit hash (it goes into the request path).
    #[error("{0:?} is not a full commit sha")]
    BadSha(String),
    /// Any other failure (after retries).
    #[error("setting a commit status failed")]
    Api(#[source] ApiError),
}

/// `text` cut to [`MAX_DESCRIPTION`] characters, ending in `…` when cut (commit and
/// deployment statuses share the limit).
pub fn description(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    out.push('…');
    out
}

/// A full commit sha: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_full_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Debug, Serialize)]
struct NewStatus<'a> {
    state: CommitState,
    context: &'a str,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<&'a str>,
}

/// Commit statuses of one repository.
#[derive(Debug, Clone)]
pub struct StatusesClient {
    client: rest::Client,
    repository: String,
}

impl StatusesClient {
    /// A client for `repository` (`owner/name`) at `api_base` (`GITHUB_API_URL`).
    pub fn new(api_base: &str, token: &Secret, repository: &str) -> anyhow::Result<Self> {
        Ok(StatusesClient {
            client: rest::Client::new(api_base, token)?,
            repository: repository.to_owned(),
        })
    }

    /// Sets status `context` of commit `sha` to `state`, with `description` (cut to
    /// [`MAX_DESCRIPTION`]) and a link to `target_url`.
    pub async fn set(
        &self,
        sha: &str,
        state: CommitState,
        context: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), StatusesError> {
        if !is_full_sha(sha) {
            return Err(StatusesError::BadSha(crate::output::escape_capped(sha, 80)));
        }
        let route = format!("/repos/{}/statuses/{sha}", self.repository);
        let body = NewStatus {
            state,
            context,
            description: self::description(description),
            target_url,
        };
        let _: Value = self
            .client
            .post(route, Some(&body))
            .await
            .map_err(refused)?;
        Ok(())
    }
}

fn refused(error: ApiError) -> StatusesError {
    let refusal =
        MissingPermission::from_api(&error, "to set a commit status", Permission::StatusesWrite);
    match refusal {
        Some(refusal) if refusal.status == 403 => StatusesError::Forbidden(refusal),
        Some(refusal) if refusal.status == 401 => StatusesError::Unauthorized(refusal),
        _ => StatusesError::Api(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        assert_eq!(description("lint passed"), "lint passed");
        let exact = "é".repeat(MAX_DESCRIPTION);
        assert_eq!(description(&exact), exact);
        let cut = description(&"é".repeat(MAX_DESCRIPTION + 1));
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn states_serialize_as_the_api_expects() {
        let states = [
            CommitState::Pending,
            CommitState::Success,
            CommitState::Failure,
            CommitState::Error,
        ];
        let json = serde_json::to_value(states).unwrap();
        assert_eq!(
            json,
            serde_json::json!(["pending", "success", "failure", "error"])
        );
    }

    #[test]
    fn only_full_shas_reach_the_path() {
        assert!(is_full_sha(&"a".repeat(40)));
        assert!(is_full_sha(&"0".repeat(64)));
        assert!(!is_full_sha("main"));
        assert!(!is_full_sha(&format!("{}/../x", "a".repeat(36))));
        assert!(!is_full_sha(&"A".repeat(40)));
    }

    #[test]
    fn a_403_and_a_401_are_told_apart() {
        let status = |status| ApiError::Status {
            status,
            message: "Resource not accessible by integration".into(),
        };
        let forbidden = refused(status(403));
        assert!(matches!(forbidden, StatusesError::Forbidden(_)));
        assert!(
            forbidden
                .to_string()
                .contains("`permissions: statuses: write`")
        );
        assert!(matches!(
            refused(status(401)),
            StatusesError::Unauthorized(_)
        ));
        assert!(matches!(refused(status(422)), StatusesError::Api(_)));
    }
}
