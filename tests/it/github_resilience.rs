//! The retry policy of every GitHub REST request (`github::rest`), against a wiremock fake
//! that fails first and then answers: a 502 is retried after a backoff; a secondary rate
//! limit waits for its `Retry-After`; an exhausted primary limit waits for
//! `x-ratelimit-reset`; a limit that resets in an hour fails at once and says when; a 403
//! that is a permission is never retried. The fake counts requests to show the retries.
//! The two retried cases also run through `prism proxy`, which validates every request and
//! the final answers against GitHub's OpenAPI description.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use jisu_deploy::github::deployments::DeploymentsClient;
use jisu_deploy::github::rest::{ApiError, MAX_TOTAL_WAIT};
use jisu_deploy::github::statuses::{CommitState, StatusesClient, StatusesError};
use jisu_deploy::oci::auth::Secret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::prism_proxy::PrismProxy;

const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";

fn token() -> Secret {
    Secret::new("ghs_resilience_test")
}

/// A valid commit status answer, echoing the request.
fn created(request: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    ResponseTemplate::new(201).set_body_json(json!({
        "url": format!("https://api.github.com/repos/acme/app/statuses/{SHA}"),
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "id": 1, "node_id": "SC_1", "state": body["state"], "description": body["description"],
        "target_url": null, "context": body["context"],
        "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z",
        "creator": null
    }))
}

fn github_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    }))
}

/// Statuses of `acme/{repo}` answer `first` once, then 201.
async fn fails_once(server: &MockServer, repo: &str, first: ResponseTemplate) {
    let route = format!("^/repos/acme/{repo}/statuses/[0-9a-f]{{40}}$");
    Mock::given(method("POST"))
        .and(path_regex(route.as_str()))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(route.as_str()))
        .respond_with(created)
        .with_priority(2)
        .mount(server)
        .await;
}

/// Requests the fake received for `acme/{repo}`.
async fn requests_to(server: &MockServer, repo: &str) -> usize {
    let prefix = format!("/repos/acme/{repo}/");
    let all = server.received_requests().await.unwrap_or_default();
    all.iter()
        .filter(|r| r.url.path().starts_with(&prefix))
        .count()
}

async fn set_status(api: &str, repo: &str) -> Result<(), StatusesError> {
    let client = StatusesClient::new(api, &token(), &format!("acme/{repo}")).unwrap();
    client
        .set(SHA, CommitState::Success, "jisu/deploy", "deployed", None)
        .await
}

fn bad_gateway() -> ResponseTemplate {
    ResponseTemplate::new(502).set_body_string("<html>502 Bad Gateway</html>")
}

fn secondary_limit(retry_after: &str) -> ResponseTemplate {
    github_error(
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    )
    .insert_header("retry-after", retry_after)
}

#[tokio::test]
async fn a_502_is_retried_after_a_backoff() {
    let server = MockServer::start().await;
    fails_once(&server, "app", bad_gateway()).await;
    let started = Instant::now();
    set_status(&server.uri(), "app").await.unwrap();
    assert_eq!(requests_to(&server, "app").await, 2);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_secondary_rate_limit_waits_for_retry_after() {
    let server = MockServer::start().await;
    fails_once(&server, "app", secondary_limit("1")).await;
    let started = Instant::now();
    set_status(&server.uri(), "app").await.unwrap();
    let took = started.elapsed();
    assert_eq!(requests_to(&server, "app").await, 2);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_exhausted_primary_limit_waits_for_its_reset() {
    let server = MockServer::start().await;
    let reset = Timestamp::now().as_second() + 2;
    Mock::given(method("GET"))
        .and(path("/repos/acme/app/deployments"))
        .respond_with(
            github_error(403, "API rate limit exceeded for installation ID 1.")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/app/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(2)
        .mount(&server)
        .await;
    let client = DeploymentsClient::new(&server.uri(), &token(), "acme/app").unwrap();
    let started = Instant::now();
    let last = client.last("production").await.unwrap();
    let took = started.elapsed();
    assert_eq!(last, None);
    assert_eq!(requests_to(&server, "app").await, 2);
    assert!(
        Timestamp::now().as_second() >= reset,
        "retried before the reset"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test]
async fn a_limit_that_resets_in_an_hour_fails_at_once_and_says_when() {
    let server = MockServer::start().await;
    let hour = github_error(429, "API rate limit exceeded").insert_header("retry-after", "3600");
    fails_once(&server, "app", hour).await;
    let reset = Timestamp::now().as_second() + 3600;
    let primary = github_error(403, "API rate limit exceeded for installation ID 1.")
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", reset.to_string().as_str());
    fails_once(&server, "other", primary).await;

    let started = Instant::now();
    let before = Timestamp::now();
    let refused = set_status(&server.uri(), "app").await;
    let Err(StatusesError::Api(ApiError::RateLimited { resets_at, .. })) = &refused else {
        panic!("{refused:?}");
    };
    let resets_at = *resets_at;
    let in_an_hour = before.as_second() + 3600;
    assert!((in_an_hour..in_an_hour + 5).contains(&resets_at.as_second()));
    let text = format!("{:#}", anyhow::Error::new(refused.unwrap_err()));
    assert!(text.contains(&format!("resets at {resets_at}")), "{text}");
    assert!(text.contains("429 API rate limit exceeded"), "{text}");

    let refused = set_status(&server.uri(), "other").await;
    let Err(StatusesError::Api(error @ ApiError::RateLimited { resets_at, .. })) = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(resets_at.as_second(), reset, "the reset GitHub named");
    assert!(error.to_string().contains(&resets_at.to_string()));

    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(took < MAX_TOTAL_WAIT);
    assert_eq!(requests_to(&server, "app").await, 1);
    assert_eq!(requests_to(&server, "other").await, 1);
}

#[tokio::test]
async fn a_403_that_is_a_permission_is_not_retried() {
    let server = MockServer::start().await;
    let refusal = github_error(403, "Resource not accessible by integration");
    fails_once(&server, "fork", refusal).await;
    let refused = set_status(&server.uri(), "fork").await;
    assert!(
        matches!(refused, Err(StatusesError::Forbidden(_))),
        "{refused:?}"
    );
    assert_eq!(requests_to(&server, "fork").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_pass_through_prism_with_valid_requests() {
    let server = MockServer::start().await;
    fails_once(&server, "app", bad_gateway()).await;
    fails_once(&server, "other", secondary_limit("1")).await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&server.uri()));

    let started = Instant::now();
    set_status(&prism.url(), "app")
        .await
        .unwrap_or_else(|e| panic!("{e:?}\nprism:\n{}", prism.log()));
    set_status(&prism.url(), "other")
        .await
        .unwrap_or_else(|e| panic!("{e:?}\nprism:\n{}", prism.log()));
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(requests_to(&server, "app").await, 2);
    assert_eq!(requests_to(&server, "other").await, 2);

    let log = prism.log();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains('✖') || l.contains("Violation:"))
        .filter(|l| !l.contains("Unable to match the returned status code"))
        .collect();
    assert!(complaints.is_empty(), "prism:\n{log}");
}
