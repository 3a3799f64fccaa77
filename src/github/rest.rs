//! The one way a GitHub REST client is built: the API base (`GITHUB_API_URL`, or a test
//! server), the token, octocrab's retry layer for rate limits and server errors (honouring
//! `Retry-After` and `x-ratelimit-reset`), deadlines, and the TLS provider installed first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use octocrab::Octocrab;
use octocrab::service::middleware::retry::{NoOpRateLimitMetrics, RetryConfig};

use crate::oci::auth::Secret;

/// Retries of one request on rate limits and server errors.
const MAX_RETRIES: usize = 4;

/// A client for the API at `api_base` authenticated with `token`.
pub fn client(api_base: &str, token: &Secret) -> anyhow::Result<Octocrab> {
    crate::tls::ensure_provider();
    Octocrab::builder()
        .base_uri(api_base)
        .with_context(|| format!("GitHub API URL {api_base}"))?
        .personal_token(token.expose().to_owned())
        .add_retry_config(RetryConfig::HandleRateLimits {
            metrics: Arc::new(NoOpRateLimitMetrics),
            max_retries: MAX_RETRIES,
            min_wait_seconds: 1,
            // A 403 without rate-limit headers is a permission problem: report it.
            retry_on_forbidden: false,
        })
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(60)))
        .build()
        .context("building the GitHub client")
}
