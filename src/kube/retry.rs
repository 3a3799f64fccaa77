//! Retries for API calls that are safe to repeat (GET, LIST, server-side apply, DELETE).
//!
//! kube's client already retries 429, 503 and 504 (honouring `Retry-After`); a 500 or a
//! dropped connection it passes on. Those are what a busy API server or a restarting
//! apiserver replica answer, so repeatable calls get a few more tries here, each with a
//! deadline of its own.

use std::future::Future;
use std::time::Duration;

use kube::core::Status;

/// Attempts per call, the first included.
pub(crate) const ATTEMPTS: u32 = 5;
/// Deadline of one attempt: generous for a big apply, short of a hung connection.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// A call that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API answered with an error, or the transport failed, after retries.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// No answer within the per-call deadline.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

impl CallError {
    /// The API server's `Status`, when it answered with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            CallError::Kube(kube::Error::Api(status)) => Some(status),
            _ => None,
        }
    }

    /// The HTTP code of an API error.
    pub fn code(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }
}

/// Whether another attempt may succeed.
fn transient(error: &CallError) -> bool {
    match error {
        CallError::TimedOut(_) => true,
        CallError::Kube(kube::Error::Api(status)) => {
            matches!(status.code, 429 | 500 | 502 | 503 | 504)
        }
        CallError::Kube(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
        CallError::Kube(_) => false,
    }
}

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(CALL_DEADLINE, call()).await {
            Ok(result) => result.map_err(CallError::from),
            Err(_) => Err(CallError::TimedOut(CALL_DEADLINE)),
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error) if attempt < ATTEMPTS && transient(&error) => {
                tracing::warn!(%what, attempt, error = %error, "transient API error; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: "m".into(),
            reason: "r".into(),
            ..Status::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_is_retried_and_a_409_is_not() {
        let mut calls = 0;
        let value = retrying("get", || {
            calls += 1;
            let answer = if calls < 3 { Err(api(500)) } else { Ok(7) };
            async move { answer }
        })
        .await
        .unwrap();
        assert_eq!((value, calls), (7, 3));

        let mut calls = 0;
        let error = retrying("apply", || {
            calls += 1;
            async { Err::<(), _>(api(409)) }
        })
        .await
        .unwrap_err();
        assert_eq!((error.code(), calls), (Some(409), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let mut calls = 0;
        let error = retrying("get", || {
            calls += 1;
            async { Err::<(), _>(api(503)) }
        })
        .await
        .unwrap_err();
        assert_eq!((error.code(), calls), (Some(503), ATTEMPTS));
    }
}
