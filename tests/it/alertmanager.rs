//! The Alertmanager configuration of `k8s/monitoring/alertmanager.yaml`, run by the real
//! Alertmanager (Debian's `prometheus-alertmanager`) on loopback: alerts posted to its API
//! reach a Slack-style webhook (wiremock) routed by severity, a warning is inhibited while
//! the critical alert of the same environment and component fires, and the message names
//! the environment, the component and the color.
//!
//! Only what cannot run here is changed in the copy it runs: the webhook URL file's path
//! (the Secret's mount) and the group waits (30 s and 10 s, so a test need not wait them).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{free_port, repo_root, yaml_documents};

const MANIFEST: &str = "k8s/monitoring/alertmanager.yaml";
const WEBHOOK_FILE: &str = "/etc/alertmanager/secrets/webhook-url";

/// The ConfigMap's files, written into `dir`, with the webhook file and waits made local.
fn write_config(dir: &Path, webhook_url_file: &Path) {
    let text = std::fs::read_to_string(repo_root().join(MANIFEST)).unwrap();
    let config_map = yaml_documents(&text)
        .into_iter()
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("a ConfigMap in the manifest");
    for (key, value) in config_map["data"].as_object().unwrap() {
        let mut content = value.as_str().unwrap().to_owned();
        if key == "alertmanager.yml" {
            assert_eq!(
                content.matches(WEBHOOK_FILE).count(),
                2,
                "both receivers read the Secret"
            );
            content = content.replace(WEBHOOK_FILE, webhook_url_file.to_str().unwrap());
            for wait in ["group_wait: 30s", "group_wait: 10s"] {
                assert!(content.contains(wait), "{wait}");
                content = content.replace(wait, "group_wait: 1s");
            }
        }
        std::fs::write(dir.join(key), content).unwrap();
    }
}

struct Alertmanager {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start(dir: &Path) -> Alertmanager {
    let port = free_port();
    let child = tokio::process::Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus-alertmanager (apt install prometheus-alertmanager)");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Alertmanager { child, url };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Alertmanager did not become ready on {url}");
}

fn alert(name: &str, labels: Value, summary: &str) -> Value {
    let mut all = labels;
    all["alertname"] = name.into();
    json!({
        "labels": all,
        "annotations": {"summary": summary, "description": format!("{name} test alert")},
        "generatorURL": "http://prometheus.monitoring.svc:9090/graph",
    })
}

/// The Slack payloads the webhook received so far: (title, text, color) of each attachment.
async fn received(webhook: &MockServer) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for request in webhook.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for attachment in body["attachments"].as_array().into_iter().flatten() {
            let field = |k: &str| attachment[k].as_str().unwrap_or_default().to_owned();
            out.push((field("title"), field("text"), field("color")));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn alerts_are_routed_inhibited_and_name_environment_component_and_color() {
    jisu_deploy::tls::ensure_provider();
    let dir = tempfile::tempdir().unwrap();
    let webhook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&webhook)
        .await;
    let url_file = dir.path().join("webhook-url");
    std::fs::write(
        &url_file,
        format!("{}/services/T000/B000/secret", webhook.uri()),
    )
    .unwrap();
    write_config(dir.path(), &url_file);
    let alertmanager = start(dir.path()).await;

    let alerts = json!([
        alert(
            "JisuDatabaseConnectionsExhausted",
            json!({"severity": "critical", "namespace": "jisu-prod", "app": "postgres-exporter"}),
            "PostgreSQL in jisu-prod is out of connections",
        ),
        // Inhibited: the critical alert above has the same namespace and app.
        alert(
            "JisuDatabaseConnectionsNearMax",
            json!({"severity": "warning", "namespace": "jisu-prod", "app": "postgres-exporter"}),
            "PostgreSQL in jisu-prod uses over 80% of max_connections",
        ),
        // Not inhibited: another environment.
        alert(
            "JisuDatabaseConnectionsNearMax",
            json!({"severity": "warning", "namespace": "jisu-staging", "app": "postgres-exporter"}),
            "PostgreSQL in jisu-staging uses over 80% of max_connections",
        ),
        alert(
            "JisuBackendHigh5xxRate",
            json!({"severity": "critical", "namespace": "jisu-prod", "app": "backend", "color": "green"}),
            "Backend 5xx ratio above 5% in jisu-prod",
        ),
    ]);
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{}/api/v2/alerts", alertmanager.url))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{:?}", posted.text().await);

    let mut notifications = Vec::new();
    for _ in 0..300 {
        notifications = received(&webhook).await;
        if notifications.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let titles: Vec<&str> = notifications.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        titles,
        [
            "[FIRING:1] JisuBackendHigh5xxRate (critical) in jisu-prod",
            "[FIRING:1] JisuDatabaseConnectionsExhausted (critical) in jisu-prod",
            "[FIRING:1] JisuDatabaseConnectionsNearMax (warning) in jisu-staging",
        ],
        "{notifications:#?}"
    );
    let (_, text, color) = &notifications[0];
    assert!(
        text.contains("*Backend 5xx ratio above 5% in jisu-prod*")
            && text.contains("environment jisu-prod, component backend, color green"),
        "{text}"
    );
    assert_eq!(color, "danger");
    let (_, text, color) = &notifications[2];
    assert!(
        text.contains("environment jisu-staging, component postgres-exporter")
            && !text.contains("color"),
        "{text}"
    );
    assert_eq!(color, "warning");

    // Alertmanager itself says why the fourth alert was not sent.
    let state: Value = client
        .get(format!("{}/api/v2/alerts", alertmanager.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inhibited: Vec<(&str, &str)> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["namespace"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(inhibited, [("JisuDatabaseConnectionsNearMax", "jisu-prod")]);
    // The webhook URL came from the file; Alertmanager does not show it.
    let status = client
        .get(format!("{}/api/v2/status", alertmanager.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains("/services/T000/B000/secret"), "{status}");
}
