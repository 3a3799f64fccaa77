//! A token GitHub refuses, told in terms of what to change: the `permissions:` a workflow
//! must give its `GITHUB_TOKEN` (`checks: write`, `deployments: write`, `statuses: write`,
//! `packages: write`), or, for a `401`, that the token itself is missing, expired or
//! invalid. GitHub's own message is server text: it is kept capped and on one line.

use std::fmt;

use super::rest::{ApiError, capped};

/// A permission of the workflow's token (the `permissions:` key of a workflow or job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `checks: write`: create and update check runs.
    ChecksWrite,
    /// `deployments: read`: list deployments and their statuses.
    DeploymentsRead,
    /// `deployments: write`: create deployments and set their statuses.
    DeploymentsWrite,
    /// `statuses: write`: set commit statuses.
    StatusesWrite,
    /// `packages: read`: list package versions.
    PackagesRead,
    /// `packages: write`: push images, delete package versions.
    PackagesWrite,
}

impl Permission {
    /// As written under `permissions:` in a workflow (`deployments: write`).
    pub fn as_yaml(self) -> &'static str {
        match self {
            Permission::ChecksWrite => "checks: write",
            Permission::DeploymentsRead => "deployments: read",
            Permission::DeploymentsWrite => "deployments: write",
            Permission::StatusesWrite => "statuses: write",
            Permission::PackagesRead => "packages: read",
            Permission::PackagesWrite => "packages: write",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_yaml())
    }
}

/// What to do about a refusal with HTTP `status`: for `401` fix the token, otherwise give
/// it `needed`. `404` counts: GitHub answers it when the token may not see the repository.
pub fn remedy(status: u16, needed: Permission) -> String {
    match status {
        401 => "the token is missing, expired or invalid".to_owned(),
        404 => format!(
            "give the workflow's token `permissions: {needed}` (GitHub answers 404 when the \
             token may not see the repository), and check the repository name"
        ),
        _ => format!("give the workflow's token `permissions: {needed}`"),
    }
}

/// The whole explanation of a refusal, as [`MissingPermission`] displays it: `action`
/// (`to create a deployment`), the status and GitHub's message (capped, one line), and
/// [`remedy`].
pub fn explain(action: &str, status: u16, github_message: &str, needed: Permission) -> String {
    MissingPermission::new(action, status, github_message, needed).to_string()
}

/// GitHub refused a request because of the token: what was refused, GitHub's answer, and
/// the permission to add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "GitHub refused {action} ({status} {github_message}): {}",
    remedy(*.status, *.needed)
)]
pub struct MissingPermission {
    /// What was refused (`to create a deployment`).
    pub action: String,
    /// The permission the request needs.
    pub needed: Permission,
    /// `401`, `403` or `404`.
    pub status: u16,
    /// GitHub's message, capped and on one line.
    pub github_message: String,
}

impl MissingPermission {
    /// A refusal of `action` with `status` and GitHub's (raw) `github_message`.
    pub fn new(action: &str, status: u16, github_message: &str, needed: Permission) -> Self {
        MissingPermission {
            action: action.to_owned(),
            needed,
            status,
            github_message: capped(github_message),
        }
    }

    /// The refusal in `error`, if it is one: a `401`, `403` or `404` answer. A rate limit
    /// answered with `403` is not (the retry layer told it apart).
    pub fn from_api(error: &ApiError, action: &str, needed: Permission) -> Option<Self> {
        let ApiError::Status { status, message } = error else {
            return None;
        };
        matches!(status, 401 | 403 | 404).then(|| MissingPermission {
            action: action.to_owned(),
            needed,
            status: *status,
            github_message: message.clone(),
        })
    }
}

/// A failed request as the error to show: [`MissingPermission`] where GitHub's answer (401,
/// 403, 404) means the token lacks `needed`, else the API error itself.
pub fn refused(error: ApiError, action: &str, needed: Permission) -> anyhow::Error {
    match MissingPermission::from_api(&error, action, needed) {
        Some(refusal) => anyhow::Error::new(refusal),
        None => anyhow::Error::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_names_the_permission_to_add() {
        let text = explain(
            "to create a deployment",
            403,
            "Resource not accessible by integration",
            Permission::DeploymentsWrite,
        );
        assert_eq!(
            text,
            "GitHub refused to create a deployment (403 Resource not accessible by \
             integration): give the workflow's token `permissions: deployments: write`"
        );
    }

    #[test]
    fn a_401_blames_the_token_not_a_permission() {
        let text = explain(
            "to set a commit status",
            401,
            "Bad credentials",
            Permission::StatusesWrite,
        );
        assert!(
            text.ends_with("(401 Bad credentials): the token is missing, expired or invalid"),
            "{text}"
        );
        assert!(!text.contains("permissions:"));
    }

    #[test]
    fn githubs_message_stays_short_and_on_one_line() {
        let hostile = format!("no\n::error::forged{}", "x".repeat(1000));
        let text = explain("to push", 403, &hostile, Permission::PackagesWrite);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 400, "{text}");
        assert!(text.ends_with("`permissions: packages: write`"));
    }

    #[test]
    fn only_refusals_are_missing_permissions() {
        let status = |status: u16| ApiError::Status {
            status,
            message: "m".into(),
        };
        for code in [401, 403, 404] {
            assert!(
                MissingPermission::from_api(&status(code), "to x", Permission::ChecksWrite)
                    .is_some()
            );
        }
        assert!(
            MissingPermission::from_api(&status(422), "to x", Permission::ChecksWrite).is_none()
        );
        let limited = ApiError::RateLimited {
            status: 403,
            message: "m".into(),
            resets_at: jiff::Timestamp::UNIX_EPOCH,
        };
        assert!(MissingPermission::from_api(&limited, "to x", Permission::ChecksWrite).is_none());
    }
}
