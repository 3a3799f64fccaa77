//! Commit statuses and deployment refusals against a fake GitHub behind `prism proxy`,
//! which validates every request and response against GitHub's OpenAPI description: each
//! state is set with a valid request, a description over 140 characters is cut, a 403 is
//! told apart, and a 403 on deployments names `deployments: write`. prism reports no
//! violation but the 403s themselves, which the description does not list.

use std::sync::{Arc, Mutex};

use jisu_deploy::github::deployments::{DeploymentState, DeploymentsClient, NewDeployment};
use jisu_deploy::github::permissions::{MissingPermission, Permission};
use jisu_deploy::github::statuses::{CommitState, StatusesClient, StatusesError};
use jisu_deploy::oci::auth::Secret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::prism_proxy::PrismProxy;

const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";

/// A commit status as the API returns it, echoing the request.
fn status(body: &Value) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/app/statuses/{SHA}"),
        "avatar_url": "https://github.com/images/error/octocat_happy.gif", "id": 1, "node_id": "SC_1",
        "state": body["state"], "description": body.get("description").cloned().unwrap_or(Value::Null),
        "target_url": body.get("target_url").cloned().unwrap_or(Value::Null),
        "context": body["context"],
        "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z",
        "creator": null
    })
}

fn refusal() -> ResponseTemplate {
    ResponseTemplate::new(403).set_body_json(json!({
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest"
    }))
}

/// The fake: statuses of acme/app are accepted and recorded; acme/fork's statuses and
/// acme/locked's deployments answer 403.
async fn fake_github() -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/acme/app/statuses/[0-9a-f]{40}$"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            log.lock().unwrap().push(body.clone());
            ResponseTemplate::new(201).set_body_json(status(&body))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/acme/fork/statuses/[0-9a-f]{40}$"))
        .respond_with(refusal())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/repos/acme/locked/deployments(/\d+/statuses)?$",
        ))
        .respond_with(refusal())
        .mount(&server)
        .await;
    (server, seen)
}

/// Lines where prism reports a request or response that breaks the description (with
/// `--errors` it also answers such a request with an error). A 403 draws a warning only:
/// GitHub sends it, but the description lists no 403 for these operations.
fn violations(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains('✖') || l.contains("Violation:"))
        .filter(|l| !l.contains("Unable to match the returned status code"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_reach_github_in_valid_requests() {
    let (github, seen) = fake_github().await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&github.uri()));
    let token = Secret::new("ghs_statuses_test");
    let client = StatusesClient::new(&prism.url(), &token, "acme/app").unwrap();
    let states = [
        CommitState::Pending,
        CommitState::Success,
        CommitState::Failure,
        CommitState::Error,
    ];
    for state in states {
        let link = Some("https://github.com/acme/app/actions/runs/42");
        client
            .set(SHA, state, "jisu/lint", "flake8: 3 warnings", link)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\nprism:\n{}", prism.log()));
    }
    let long = "a description that goes on ".repeat(10);
    client
        .set(SHA, CommitState::Failure, "jisu/test", &long, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\nprism:\n{}", prism.log()));

    let seen = seen.lock().unwrap().clone();
    let sent: Vec<&str> = seen.iter().map(|b| b["state"].as_str().unwrap()).collect();
    assert_eq!(sent, ["pending", "success", "failure", "error", "failure"]);
    assert_eq!(seen[0]["context"], "jisu/lint");
    assert_eq!(
        seen[0]["target_url"],
        "https://github.com/acme/app/actions/runs/42"
    );
    assert!(seen[4].get("target_url").is_none());
    let cut = seen[4]["description"].as_str().unwrap();
    assert_eq!(cut.chars().count(), 140, "{cut}");
    assert!(cut.ends_with('…'));
    let log = prism.log();
    assert!(violations(&log).is_empty(), "prism:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_permission_to_add() {
    let (github, seen) = fake_github().await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&github.uri()));
    let token = Secret::new("ghs_statuses_test");

    let fork = StatusesClient::new(&prism.url(), &token, "acme/fork").unwrap();
    let refused = fork
        .set(SHA, CommitState::Pending, "jisu/lint", "running", None)
        .await;
    let Err(StatusesError::Forbidden(refusal)) = &refused else {
        panic!("{refused:?}\nprism:\n{}", prism.log());
    };
    assert_eq!(refusal.needed, Permission::StatusesWrite);
    assert_eq!(refusal.status, 403);
    assert!(
        refusal
            .to_string()
            .contains("(403 Resource not accessible by integration): give the workflow's token `permissions: statuses: write`"),
        "{refusal}"
    );

    let locked = DeploymentsClient::new(&prism.url(), &token, "acme/locked").unwrap();
    let deployment = NewDeployment {
        git_ref: SHA.into(),
        environment: "production".into(),
        production_environment: true,
        transient_environment: false,
        description: "deploy".into(),
        payload: json!({"color": "green"}),
        auto_merge: false,
        required_contexts: Vec::new(),
        task: "deploy".into(),
    };
    let created = locked.create(&deployment).await;
    let error = created.expect_err("a 403 on deployments fails");
    let text = format!("{error:#}");
    assert!(
        text.contains("GitHub refused to create a deployment (403 Resource not accessible by integration): give the workflow's token `permissions: deployments: write`"),
        "{text}\nprism:\n{}",
        prism.log()
    );
    let refusal = error.downcast_ref::<MissingPermission>().unwrap();
    assert_eq!(refusal.needed, Permission::DeploymentsWrite);

    let status = locked
        .set_status(7, DeploymentState::InProgress, None, None, "deploying")
        .await
        .expect_err("a 403 on a deployment status fails");
    assert!(
        format!("{status:#}").contains("`permissions: deployments: write`"),
        "{status:#}"
    );
    assert!(seen.lock().unwrap().is_empty());
    let log = prism.log();
    assert_eq!(log.matches("has returned 403").count(), 3, "prism:\n{log}");
    assert!(violations(&log).is_empty(), "prism:\n{log}");
}
