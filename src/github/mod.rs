//! Everything that talks to GitHub: the Actions runner's files and workflow commands, the
//! Packages API, deployment records, check runs and commit statuses, the REST client they
//! share and the permission errors they report.

pub mod actions;
pub mod checks;
pub mod deployments;
pub mod packages;
pub mod permissions;
pub mod rest;
pub mod statuses;

use crate::oci::auth::Secret;

/// GitHub's API when `GITHUB_API_URL` is not set.
pub const DEFAULT_API: &str = "https://api.github.com";

/// The run's repository on GitHub's API, as the runner's variables name it.
pub struct RepositoryApi {
    /// `GITHUB_API_URL` (GitHub Enterprise Server), else [`DEFAULT_API`].
    pub base: String,
    /// `GITHUB_TOKEN`, or the `github-token` input.
    pub token: Secret,
    /// `owner/name` (`GITHUB_REPOSITORY`).
    pub repository: String,
}

impl RepositoryApi {
    /// The API of the run's repository when the runner's variables allow it: a token and
    /// `GITHUB_REPOSITORY` set — never from an event payload, so a payload file handed to a
    /// local run cannot make it write to GitHub.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<RepositoryApi> {
        let token = env("GITHUB_TOKEN").or_else(|| env("INPUT_GITHUB-TOKEN"))?;
        let repository = env("GITHUB_REPOSITORY")?;
        Some(RepositoryApi {
            base: env("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API.to_owned()),
            token: Secret::new(token),
            repository,
        })
    }
}

/// `owner/name` as GitHub spells repositories (letters, digits, `-`, `_`, `.`): such a name
/// goes into API paths.
pub fn is_repository_name(text: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    text.split_once('/')
        .is_some_and(|(owner, name)| part(owner) && part(name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_names() {
        assert!(super::is_repository_name("jisu/platform.web_2-x"));
        for bad in [
            "jisu", "jisu/", "/x", "a/b/c", "a/../b", "a/.git", "a/b?x=1", "a/b c",
        ] {
            assert!(!super::is_repository_name(bad), "{bad}");
        }
    }
}
