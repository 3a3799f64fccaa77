//! A fake GitHub REST API for the repositories `acme/app` (everything allowed),
//! `acme/fork` (check runs and commit statuses refused with 403, as for a pull request
//! from a fork) and `acme/locked` (a token that may set commit statuses but not create
//! check runs): check runs, deployments with their statuses, and commit statuses.
//! Answers have the shape GitHub's OpenAPI description requires, so `prism proxy` in
//! front of it passes them; every request is kept for assertions.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// `POST`, `PATCH`, `GET`.
    pub method: String,
    /// The URL path.
    pub path: String,
    /// The JSON body (`null` for none).
    pub body: Value,
}

impl Call {
    /// What the call did: `check_run`, `check_run_update`, `deployment`,
    /// `deployment_status`, `commit_status`, or `list`.
    pub fn kind(&self) -> &'static str {
        match (self.method.as_str(), self.path.as_str()) {
            ("GET", _) => "list",
            ("POST", p) if p.ends_with("/check-runs") => "check_run",
            ("PATCH", _) => "check_run_update",
            ("POST", p) if p.ends_with("/deployments") => "deployment",
            ("POST", p) if p.contains("/deployments/") => "deployment_status",
            ("POST", p) if p.contains("/statuses/") => "commit_status",
            _ => "other",
        }
    }
}

/// The fake and what it saw.
pub struct FakeGitHub {
    /// The server (its `uri()` is the API base).
    pub server: MockServer,
    calls: Arc<Mutex<Vec<Call>>>,
}

const BASE: &str = "https://api.github.com/repos/acme/app";
const AT: &str = "2026-12-01T12:00:00Z";

impl FakeGitHub {
    /// Starts the fake.
    pub async fn start() -> FakeGitHub {
        let server = MockServer::start().await;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fake = FakeGitHub { server, calls };
        fake.refuse(r"^/repos/acme/(fork/(check-runs|statuses/[0-9a-f]+)|locked/check-runs)$")
            .await;
        fake.answer("POST", r"^/repos/acme/app/check-runs$", 201, check_run)
            .await;
        fake.answer("PATCH", r"^/repos/acme/app/check-runs/\d+$", 200, check_run)
            .await;
        fake.answer("POST", r"^/repos/acme/app/deployments$", 201, deployment)
            .await;
        fake.answer(
            "POST",
            r"^/repos/acme/app/deployments/\d+/statuses$",
            201,
            deployment_status,
        )
        .await;
        fake.answer(
            "POST",
            r"^/repos/acme/(app|locked)/statuses/[0-9a-f]{40}$",
            201,
            commit_status,
        )
        .await;
        fake.answer(
            "GET",
            r"^/repos/acme/app/deployments$",
            200,
            newest_deployment,
        )
        .await;
        fake.answer(
            "GET",
            r"^/repos/acme/app/deployments/\d+/statuses$",
            200,
            newest_status,
        )
        .await;
        fake
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// Answers `verb` on `path` with `status` and the body `reply` makes from the request
    /// and the calls before it.
    async fn answer(
        &self,
        verb: &str,
        path: &str,
        status: u16,
        reply: fn(&Call, &[Call]) -> Value,
    ) {
        let calls = self.calls.clone();
        Mock::given(method(verb))
            .and(path_regex(path))
            .respond_with(move |request: &Request| {
                let call = Call {
                    method: request.method.to_string(),
                    path: request.url.path().to_owned(),
                    body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
                };
                let mut calls = calls.lock().unwrap();
                let body = reply(&call, &calls);
                calls.push(call);
                ResponseTemplate::new(status).set_body_json(body)
            })
            .mount(&self.server)
            .await;
    }

    async fn refuse(&self, path: &str) {
        let calls = self.calls.clone();
        Mock::given(method("POST"))
            .and(path_regex(path))
            .respond_with(move |request: &Request| {
                calls.lock().unwrap().push(Call {
                    method: "POST".into(),
                    path: request.url.path().to_owned(),
                    body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
                });
                ResponseTemplate::new(403).set_body_json(json!({
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest"
                }))
            })
            .mount(&self.server)
            .await;
    }
}

fn check_run(call: &Call, calls: &[Call]) -> Value {
    let id = calls.iter().filter(|c| c.kind() == "check_run").count() + 1;
    let conclusion = call.body.get("conclusion").cloned().unwrap_or(Value::Null);
    let status = if conclusion.is_null() {
        "in_progress"
    } else {
        "completed"
    };
    json!({
        "id": id, "node_id": "CR_1", "head_sha": call.body.get("head_sha").cloned().unwrap_or(json!("0")),
        "name": call.body.get("name").cloned().unwrap_or(json!("check")),
        "url": format!("{BASE}/check-runs/{id}"), "html_url": null, "details_url": null,
        "status": status, "conclusion": conclusion, "started_at": null, "completed_at": null,
        "external_id": null, "check_suite": null,
        "output": {"title": null, "summary": null, "text": null, "annotations_count": 0,
                   "annotations_url": format!("{BASE}/check-runs/{id}/annotations")},
        "app": null, "pull_requests": []
    })
}

fn deployment_body(id: usize, body: &Value) -> Value {
    json!({
        "id": id, "node_id": "DE_1", "sha": body["ref"], "ref": body["ref"],
        "task": body["task"], "environment": body["environment"], "creator": null,
        "payload": body["payload"], "description": body["description"],
        "statuses_url": format!("{BASE}/deployments/{id}/statuses"),
        "repository_url": BASE, "url": format!("{BASE}/deployments/{id}"),
        "created_at": AT, "updated_at": AT
    })
}

fn deployment(call: &Call, calls: &[Call]) -> Value {
    let id = calls.iter().filter(|c| c.kind() == "deployment").count() + 1;
    deployment_body(id, &call.body)
}

fn status_body(body: &Value) -> Value {
    json!({
        "id": 1, "node_id": "DES_1", "state": body["state"], "creator": null,
        "description": body["description"], "deployment_url": format!("{BASE}/deployments/1"),
        "target_url": "https://github.com/acme/app/actions/runs/42", "repository_url": BASE,
        "url": format!("{BASE}/deployments/1/statuses/1"),
        "created_at": AT, "updated_at": AT
    })
}

fn deployment_status(call: &Call, _: &[Call]) -> Value {
    status_body(&call.body)
}

fn commit_status(call: &Call, _: &[Call]) -> Value {
    json!({
        "url": format!("{BASE}/statuses/1"), "avatar_url": null, "id": 1, "node_id": "SC_1",
        "state": call.body["state"], "description": call.body.get("description").cloned().unwrap_or(Value::Null),
        "target_url": call.body.get("target_url").cloned().unwrap_or(Value::Null),
        "context": call.body.get("context").cloned().unwrap_or(json!("default")),
        "created_at": AT, "updated_at": AT, "creator": null
    })
}

/// The newest deployment created, as a one-item list.
fn newest_deployment(_: &Call, calls: &[Call]) -> Value {
    let created: Vec<&Call> = calls.iter().filter(|c| c.kind() == "deployment").collect();
    match created.last() {
        Some(last) => json!([deployment_body(created.len(), &last.body)]),
        None => json!([]),
    }
}

/// The newest deployment status set, as a one-item list.
fn newest_status(_: &Call, calls: &[Call]) -> Value {
    calls
        .iter()
        .rev()
        .find(|c| c.kind() == "deployment_status")
        .map(|c| json!([status_body(&c.body)]))
        .unwrap_or_else(|| json!([]))
}
