//! The environment's HTTP checks after a rollout: each URL (absolute, or a path joined to
//! the environment URL) must answer the expected status within `retries` attempts, each
//! with its own timeout. A failed check is a result to report, not an error.

use std::time::Duration;

use crate::config::pipeline::HttpCheck;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// The URL it asked.
    pub url: String,
    /// Whether the expected status came back.
    pub passed: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer: `HTTP 200`, `HTTP 503 (expected 200)`, or the transport error.
    pub detail: String,
}

/// Some HTTP checks did not pass (a typed failure: blue-green switches back on it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} of {total} HTTP check(s) failed: {}", .failed.len(), describe(.failed))]
pub struct ChecksFailed {
    /// How many checks ran.
    pub total: usize,
    /// The ones that failed.
    pub failed: Vec<CheckResult>,
}

fn describe(failed: &[CheckResult]) -> String {
    failed
        .iter()
        .map(|r| format!("`{}` ({}: {})", r.name, r.url, r.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs the checks and fails with [`ChecksFailed`] unless every one passed.
pub async fn require_http_checks(
    base: &str,
    checks: &[HttpCheck],
    retry_delay: Duration,
) -> anyhow::Result<()> {
    let results = run_http_checks(base, checks, retry_delay).await?;
    let failed: Vec<CheckResult> = results.iter().filter(|r| !r.passed).cloned().collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ChecksFailed {
            total: results.len(),
            failed,
        }
        .into())
    }
}

/// The URL a check asks: absolute URLs as they are, paths under `base`.
pub fn check_url(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            url.trim_start_matches('/')
        )
    }
}

/// Runs `checks` in order against `base`, waiting `retry_delay` between attempts.
pub async fn run_http_checks(
    base: &str,
    checks: &[HttpCheck],
    retry_delay: Duration,
) -> anyhow::Result<Vec<CheckResult>> {
    crate::tls::ensure_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("jisu-deploy/", env!("CARGO_PKG_VERSION")))
        // A redirect to a login page would otherwise pass as 200.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut results = Vec::new();
    for check in checks {
        let result = run_one(&client, base, check, retry_delay).await;
        if result.passed {
            tracing::info!(
                "check `{}` passed: {} answered {} (attempt {})",
                result.name,
                result.url,
                result.detail,
                result.attempts
            );
        } else {
            tracing::error!(
                "check `{}` failed after {} attempt(s): {} answered {}",
                result.name,
                result.attempts,
                result.url,
                result.detail
            );
        }
        results.push(result);
    }
    Ok(results)
}

async fn run_one(
    client: &reqwest::Client,
    base: &str,
    check: &HttpCheck,
    retry_delay: Duration,
) -> CheckResult {
    let url = check_url(base, &check.url);
    let attempts = check.retries.max(1);
    let mut detail = String::new();
    for attempt in 1..=attempts {
        let answer = client.get(&url).timeout(check.timeout.0).send().await;
        match answer {
            Ok(response) if response.status().as_u16() == check.expect_status => {
                return CheckResult {
                    name: check.name.clone(),
                    url,
                    passed: true,
                    attempts: attempt,
                    detail: format!("HTTP {}", response.status().as_u16()),
                };
            }
            Ok(response) => {
                detail = format!(
                    "HTTP {} (expected {})",
                    response.status().as_u16(),
                    check.expect_status
                )
            }
            Err(error) if error.is_timeout() => {
                detail = format!("no answer within {}", check.timeout)
            }
            Err(error) => detail = format!("request failed: {}", without_url(error)),
        }
        tracing::warn!(
            "check `{}` attempt {attempt}/{attempts}: {detail}",
            check.name
        );
        if attempt < attempts {
            tokio::time::sleep(retry_delay).await;
        }
    }
    CheckResult {
        name: check.name.clone(),
        url,
        passed: false,
        attempts,
        detail,
    }
}

/// reqwest's message repeats the URL (which may carry credentials); the check's own URL
/// is already shown.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_environment_url_and_absolute_urls_stay() {
        assert_eq!(
            check_url("https://staging.jisu.example", "/api/health"),
            "https://staging.jisu.example/api/health"
        );
        assert_eq!(
            check_url("https://staging.jisu.example/", "ready"),
            "https://staging.jisu.example/ready"
        );
        assert_eq!(
            check_url("https://a.example", "http://b.example/x"),
            "http://b.example/x"
        );
    }
}
