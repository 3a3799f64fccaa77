//! The one way a GitHub REST client is built: the API base (`GITHUB_API_URL`, or a test
//! server), the token, deadlines, and the TLS provider installed first; and the retry
//! policy every request of a [`Client`] goes through.
//!
//! octocrab's own `RetryConfig::HandleRateLimits` retries server errors at once (no
//! backoff) and sleeps for whatever `Retry-After` or `x-ratelimit-reset` says, with no cap:
//! a `Retry-After: 3600` would hang a deploy for an hour. [`Client`] turns it off and
//! retries itself:
//!
//! - `500`, `502`, `503`, `504`: after 1, 2, 4, 8 s (longer if `Retry-After` says so);
//! - a rate limit (`403` or `429` with `Retry-After`, or with `x-ratelimit-remaining: 0`
//!   and `x-ratelimit-reset`, or a header-less `429` or `403` whose message names a rate
//!   limit, which GitHub says to wait a minute for): after the time GitHub asks for;
//! - no answer at all (connection or timeout): like a server error, but only for `GET`,
//!   since a `POST` or `PATCH` that timed out may have been carried out;
//! - anything else (`401`, a `403` that is a permission, `404`, `422`): never.
//!
//! One request retries at most [`MAX_RETRIES`] times and waits at most [`MAX_TOTAL_WAIT`]
//! in all. A wait that would pass the cap is not started: the request fails at once with
//! [`ApiError::RateLimited`], which says when the limit resets.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{FromResponse, Octocrab};
use serde::Serialize;

use crate::oci::auth::Secret;

/// Retries of one request after its first attempt.
pub const MAX_RETRIES: u32 = 4;
/// The most one request waits between its attempts, in all. GitHub asks for a minute
/// after a secondary rate limit without a header, so one such wait fits; a primary limit
/// resets hourly, and a deploy holding its lock must not sit out the hour.
pub const MAX_TOTAL_WAIT: Duration = Duration::from_secs(60);
/// The wait after the first server error; it doubles with each retry.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// GitHub's advice for a secondary rate limit that names no time.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Margin after `x-ratelimit-reset`, which has whole seconds.
const RESET_MARGIN: Duration = Duration::from_secs(1);
/// Longest GitHub message kept in an error: it is text from the server, kept on one line.
pub const MAX_MESSAGE: usize = 200;

/// Why a request to GitHub failed, after any retries.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// GitHub answered with an error status.
    #[error("GitHub answered {status} ({message}){}", status_note(*.status))]
    Status {
        /// The HTTP status.
        status: u16,
        /// GitHub's message, capped and on one line.
        message: String,
    },
    /// A rate limit that resets later than this tool waits for.
    #[error(
        "GitHub's rate limit refused the request ({status} {message}); it resets at {resets_at}, \
         later than this tool waits ({}s in all for one request): re-run the job after that",
        MAX_TOTAL_WAIT.as_secs()
    )]
    RateLimited {
        /// The HTTP status (`403` or `429`).
        status: u16,
        /// GitHub's message, capped and on one line.
        message: String,
        /// When GitHub said the limit resets.
        resets_at: Timestamp,
    },
    /// No usable answer: no connection, a timeout, or a body that could not be read.
    #[error("the request to GitHub failed")]
    Request(#[source] octocrab::Error),
}

impl ApiError {
    /// The HTTP status GitHub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } | ApiError::RateLimited { status, .. } => Some(*status),
            ApiError::Request(_) => None,
        }
    }

    /// GitHub's message (capped, one line), if it answered.
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } | ApiError::RateLimited { message, .. } => {
                Some(message)
            }
            ApiError::Request(_) => None,
        }
    }
}

fn status_note(status: u16) -> &'static str {
    if status == 401 {
        ": the token is missing, expired or invalid"
    } else {
        ""
    }
}

/// GitHub's message from a response body, capped at [`MAX_MESSAGE`] and on one line.
pub fn capped(message: &str) -> String {
    crate::output::escape_capped(message.trim(), MAX_MESSAGE)
}

/// A GitHub REST client whose requests go through this module's retry policy.
#[derive(Clone)]
pub struct Client {
    crab: Octocrab,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `api_base` (`GITHUB_API_URL`) authenticated with `token`.
    pub fn new(api_base: &str, token: &Secret) -> anyhow::Result<Self> {
        crate::tls::ensure_provider();
        let crab = Octocrab::builder()
            .base_uri(api_base)
            .with_context(|| format!("GitHub API URL {api_base}"))?
            .personal_token(token.expose().to_owned())
            // Retries are [`retrying`]'s, with a cap on the wait.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)))
            .build()
            .context("building the GitHub client")?;
        Ok(Client { crab })
    }

    /// The octocrab client underneath, without retries; wrap calls in [`retrying`].
    pub fn octocrab(&self) -> &Octocrab {
        &self.crab
    }

    /// `GET route?query`, decoded.
    pub async fn get<R, Q>(&self, route: impl AsRef<str>, query: Option<&Q>) -> Result<R, ApiError>
    where
        R: FromResponse,
        Q: Serialize + ?Sized,
    {
        let route = route.as_ref();
        retrying(Repeat::Safe, || self.crab.get(route, query)).await
    }

    /// `POST route` with a JSON body, decoded.
    pub async fn post<R, B>(&self, route: impl AsRef<str>, body: Option<&B>) -> Result<R, ApiError>
    where
        R: FromResponse,
        B: Serialize + ?Sized,
    {
        let route = route.as_ref();
        retrying(Repeat::OnlyIfAnswered, || self.crab.post(route, body)).await
    }

    /// `PATCH route` with a JSON body, decoded.
    pub async fn patch<R, B>(&self, route: impl AsRef<str>, body: Option<&B>) -> Result<R, ApiError>
    where
        R: FromResponse,
        B: Serialize + ?Sized,
    {
        let route = route.as_ref();
        retrying(Repeat::OnlyIfAnswered, || self.crab.patch(route, body)).await
    }
}

/// Whether a request may be sent again when no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Sending it twice does no harm (`GET`, `DELETE`).
    Safe,
    /// It may have been carried out although no answer came (`POST`, `PATCH`): retried
    /// only after an answer that says it was not (a server error, a rate limit).
    OnlyIfAnswered,
}

/// Runs `attempt` until it succeeds or the retry policy gives up (see the module docs).
pub async fn retrying<T, F, Fut>(repeat: Repeat, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, octocrab::Error>>,
{
    let mut waited = Duration::ZERO;
    let mut retries = 0;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let now = Timestamp::now();
        let failure = Failure::of(&error, now);
        match next_wait_at(&failure, retries, waited, repeat, now) {
            Some(wait) => {
                tracing::debug!(
                    status = ?failure.status,
                    wait_ms = wait.as_millis() as u64,
                    retries,
                    "retrying a GitHub request"
                );
                tokio::time::sleep(wait).await;
                waited += wait;
                retries += 1;
            }
            None => return Err(give_up(error, &failure, now)),
        }
    }
}

/// What a failed attempt tells the retry policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Failure {
    /// `None`: no answer.
    status: Option<u16>,
    /// GitHub's message, capped.
    message: String,
    /// `Retry-After`, as a wait from now.
    retry_after: Option<Duration>,
    /// `x-ratelimit-remaining`.
    remaining: Option<u64>,
    /// `x-ratelimit-reset`.
    reset: Option<Timestamp>,
    /// A connection failure or timeout (as opposed to, say, a body that is not JSON).
    transport: bool,
}

impl Failure {
    fn of(error: &octocrab::Error, now: Timestamp) -> Self {
        let octocrab::Error::GitHub { source, .. } = error else {
            let transport = matches!(
                error,
                octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. }
            );
            return Failure {
                transport,
                ..Failure::default()
            };
        };
        let header = |name: &str| {
            source
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        Failure {
            status: Some(source.status_code.as_u16()),
            message: capped(&source.message),
            retry_after: header("retry-after").and_then(|v| retry_after(v, now)),
            remaining: header("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset: header("x-ratelimit-reset")
                .and_then(|v| v.parse().ok())
                .and_then(|s| Timestamp::from_second(s).ok()),
            transport: false,
        }
    }
}

/// `Retry-After` as a wait from `now`: whole seconds, or an HTTP date.
fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(until(at, now))
}

/// The time from `now` to `at`, zero if `at` has passed.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now).max(SignedDuration::ZERO)).unwrap_or_default()
}

/// What kind of failure an attempt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A rate limit: wait this long before the next attempt.
    RateLimited(Duration),
    /// A server error GitHub may get over.
    Server,
    /// No answer.
    Transport,
    /// Retrying will not help.
    Final,
}

fn kind(failure: &Failure, now: Timestamp) -> Kind {
    match failure.status {
        None if failure.transport => Kind::Transport,
        None => Kind::Final,
        Some(403 | 429) => rate_limit_wait(failure, now).map_or(Kind::Final, Kind::RateLimited),
        Some(500 | 502 | 503 | 504) => Kind::Server,
        Some(_) => Kind::Final,
    }
}

/// How long a `403` or `429` asks to wait, if it is a rate limit at all.
fn rate_limit_wait(failure: &Failure, now: Timestamp) -> Option<Duration> {
    if let Some(wait) = failure.retry_after {
        return Some(wait);
    }
    if let (Some(0), Some(reset)) = (failure.remaining, failure.reset) {
        return Some(until(reset, now) + RESET_MARGIN);
    }
    let names_a_limit = failure.message.to_lowercase().contains("rate limit");
    (failure.status == Some(429) || names_a_limit).then_some(SECONDARY_LIMIT_WAIT)
}

/// The wait before the next attempt, or `None` to give up.
fn next_wait_at(
    failure: &Failure,
    retries: u32,
    waited: Duration,
    repeat: Repeat,
    now: Timestamp,
) -> Option<Duration> {
    if retries >= MAX_RETRIES {
        return None;
    }
    let backoff = FIRST_BACKOFF * 2u32.pow(retries);
    let wait = match kind(failure, now) {
        Kind::RateLimited(wait) => wait,
        Kind::Server => backoff.max(failure.retry_after.unwrap_or_default()),
        Kind::Transport if repeat == Repeat::Safe => backoff,
        Kind::Transport | Kind::Final => return None,
    };
    (waited + wait <= MAX_TOTAL_WAIT).then_some(wait)
}

/// The error once the policy gives up on `error`.
fn give_up(error: octocrab::Error, failure: &Failure, now: Timestamp) -> ApiError {
    let Some(status) = failure.status else {
        return ApiError::Request(error);
    };
    let message = failure.message.clone();
    match kind(failure, now) {
        Kind::RateLimited(wait) => ApiError::RateLimited {
            status,
            message,
            resets_at: resets_at(failure, wait, now),
        },
        _ => ApiError::Status { status, message },
    }
}

/// When a rate limit resets: `x-ratelimit-reset` if GitHub sent it, else now plus the wait.
fn resets_at(failure: &Failure, wait: Duration, now: Timestamp) -> Timestamp {
    let waited_out = now
        .checked_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    match (failure.retry_after, failure.remaining, failure.reset) {
        (None, Some(0), Some(reset)) => reset,
        // Whole seconds, as GitHub's own reset times are.
        _ => Timestamp::from_second(waited_out.as_second()).unwrap_or(waited_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_wait(
        failure: &Failure,
        retries: u32,
        waited: Duration,
        repeat: Repeat,
    ) -> Option<Duration> {
        next_wait_at(failure, retries, waited, repeat, Timestamp::now())
    }

    fn answered(status: u16) -> Failure {
        Failure {
            status: Some(status),
            message: "x".into(),
            ..Failure::default()
        }
    }

    #[test]
    fn server_errors_back_off_and_give_up_after_four_retries() {
        let failure = answered(502);
        let waits: Vec<_> = (0..5)
            .map(|n| next_wait(&failure, n, Duration::ZERO, Repeat::OnlyIfAnswered))
            .collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(waits, [secs(1), secs(2), secs(4), secs(8), None]);
        let slow = Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..answered(503)
        };
        assert_eq!(
            next_wait(&slow, 0, Duration::ZERO, Repeat::Safe),
            secs(5),
            "Retry-After wins over a shorter backoff"
        );
    }

    #[test]
    fn permissions_and_bad_requests_are_never_retried() {
        for status in [400, 401, 403, 404, 409, 422, 501] {
            assert_eq!(
                next_wait(&answered(status), 0, Duration::ZERO, Repeat::Safe),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn rate_limits_wait_as_asked_within_the_cap() {
        let limited = Failure {
            retry_after: Some(Duration::from_secs(2)),
            ..answered(403)
        };
        assert_eq!(
            next_wait(&limited, 0, Duration::ZERO, Repeat::OnlyIfAnswered),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            next_wait(&limited, 1, Duration::from_secs(59), Repeat::Safe),
            None,
            "the total wait is capped"
        );
        let hour = Failure {
            retry_after: Some(Duration::from_secs(3600)),
            ..answered(429)
        };
        assert_eq!(next_wait(&hour, 0, Duration::ZERO, Repeat::Safe), None);
        let bare = answered(429);
        assert_eq!(
            next_wait(&bare, 0, Duration::ZERO, Repeat::Safe),
            Some(SECONDARY_LIMIT_WAIT)
        );
        let secondary = Failure {
            message: "You have exceeded a secondary rate limit".into(),
            ..answered(403)
        };
        assert_eq!(
            next_wait(&secondary, 0, Duration::ZERO, Repeat::Safe),
            Some(SECONDARY_LIMIT_WAIT)
        );
    }

    #[test]
    fn an_exhausted_primary_limit_waits_until_its_reset() {
        let now = Timestamp::now();
        let reset = Timestamp::from_second(now.as_second() + 3).unwrap();
        let primary = Failure {
            remaining: Some(0),
            reset: Some(reset),
            ..answered(403)
        };
        let Kind::RateLimited(wait) = kind(&primary, now) else {
            panic!("not a rate limit");
        };
        assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(4));
        let later = Failure {
            reset: Some(Timestamp::from_second(now.as_second() + 7200).unwrap()),
            ..primary
        };
        let error = give_up(
            octocrab::Error::Installation {
                backtrace: std::backtrace::Backtrace::disabled(),
            },
            &later,
            now,
        );
        let ApiError::RateLimited { resets_at, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(Some(*resets_at), later.reset);
        assert!(
            error.to_string().contains(&resets_at.to_string()),
            "{error}"
        );
    }

    #[test]
    fn no_answer_is_retried_only_when_repeating_is_safe() {
        let lost = Failure {
            transport: true,
            ..Failure::default()
        };
        assert_eq!(
            next_wait(&lost, 0, Duration::ZERO, Repeat::Safe),
            Some(FIRST_BACKOFF)
        );
        assert_eq!(
            next_wait(&lost, 0, Duration::ZERO, Repeat::OnlyIfAnswered),
            None
        );
        assert_eq!(
            next_wait(&Failure::default(), 0, Duration::ZERO, Repeat::Safe),
            None,
            "an unreadable body is not a network problem"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&Timestamp::from_second(1_700_000_010).unwrap())
            .unwrap();
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn messages_from_github_are_capped_on_one_line() {
        let long = format!("line one\nline two {}", "y".repeat(500));
        let message = capped(&long);
        assert!(!message.contains('\n'));
        assert!(message.chars().count() < MAX_MESSAGE + 40, "{message}");
    }
}
