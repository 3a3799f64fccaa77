//! `plan` output for every bundled event and for real webhook payloads, as snapshots.

use std::io::Write;

use crate::support::{example_config, example_event, plan, webhook_examples};

/// Runs `plan` in text and JSON form and snapshots both.
fn snapshot_plan(name: &str, event: &std::path::Path) {
    let text = plan(&example_config(), event, &[]);
    assert_eq!(text.code, 0, "plan {name} failed: {}", text.stderr);
    insta::assert_snapshot!(format!("{name}.text"), text.stdout);
    let json = plan(&example_config(), event, &["--output", "json"]);
    assert_eq!(
        json.code, 0,
        "plan {name} --output json failed: {}",
        json.stderr
    );
    let value: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("--output json prints JSON");
    assert_eq!(value["schema_version"], 1);
    insta::assert_snapshot!(format!("{name}.json"), json.stdout);
}

#[test]
fn push_develop_deploys_staging() {
    snapshot_plan("push-develop", &example_event("push-develop.json"));
}

#[test]
fn push_main_deploys_production_blue_green() {
    snapshot_plan("push-main", &example_event("push-main.json"));
    let out = plan(&example_config(), &example_event("push-main.json"), &[]).stdout;
    // The blue-green steps, in order.
    let order = [
        "live-color",
        "deploy-idle",
        "wait",
        "preview-checks",
        "switch",
        "verify",
        "keep-previous",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|step| {
            out.find(&format!("] {step}:"))
                .unwrap_or_else(|| panic!("no step {step}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "blue-green steps out of order:\n{out}"
    );
}

#[test]
fn pull_request_builds_without_push() {
    snapshot_plan("pull-request", &example_event("pull-request.json"));
}

#[test]
fn dispatch_promote_and_rollback() {
    snapshot_plan("dispatch-promote", &example_event("dispatch-promote.json"));
    snapshot_plan(
        "dispatch-rollback",
        &example_event("dispatch-rollback.json"),
    );
}

#[test]
fn schedule_prunes_and_backs_up() {
    snapshot_plan("schedule-prune", &example_event("schedule-prune.json"));
    snapshot_plan("schedule-backup", &example_event("schedule-backup.json"));
}

/// Writes one webhook example to a temporary file.
fn payload_file(payload: &serde_json::Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    serde_json::to_writer(&mut file, payload).unwrap();
    file.flush().unwrap();
    file
}

/// The example pipeline with production deploying from `master`, the branch the
/// webhook examples push to.
fn master_config() -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let text = text.replace("branch: main", "branch: master");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn webhook_plan(
    name: &str,
    event: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
    config: &std::path::Path,
) {
    let examples = webhook_examples(event);
    let payload = examples
        .iter()
        .find(|p| pick(p))
        .unwrap_or_else(|| panic!("no {event} example for {name}"));
    let file = payload_file(payload);
    let run = plan(config, file.path(), &["--event-name", event]);
    // Temporary file names differ per run; the snapshot shows placeholders.
    let shown = format!("exit {}\n{}{}", run.code, run.stdout, run.stderr)
        .replace(file.path().to_str().unwrap(), "<payload.json>")
        .replace(config.to_str().unwrap(), "<pipeline.yml>");
    insta::assert_snapshot!(format!("webhook-{name}"), shown);
}

#[test]
fn webhook_examples_push() {
    let master = master_config();
    webhook_plan(
        "push-master",
        "push",
        |p| p["ref"] == "refs/heads/master",
        master.path(),
    );
    webhook_plan(
        "push-tag",
        "push",
        |p| p["ref"] == "refs/tags/simple-tag" && p["deleted"] == false,
        &example_config(),
    );
    webhook_plan(
        "push-tag-deleted",
        "push",
        |p| p["deleted"] == true,
        &example_config(),
    );
    // The example pipeline has no environment for `master`: a clear error, exit 2.
    webhook_plan(
        "push-master-no-environment",
        "push",
        |p| p["ref"] == "refs/heads/master",
        &example_config(),
    );
}

#[test]
fn webhook_examples_pull_request() {
    webhook_plan(
        "pull-request-opened",
        "pull_request",
        |p| p["action"] == "opened",
        &example_config(),
    );
    webhook_plan(
        "pull-request-closed",
        "pull_request",
        |p| p["action"] == "closed",
        &example_config(),
    );
}

#[test]
fn webhook_examples_workflow_dispatch_without_inputs() {
    webhook_plan(
        "dispatch-no-inputs",
        "workflow_dispatch",
        |_| true,
        &example_config(),
    );
}

#[test]
fn every_pull_request_example_plans_from_its_head_sha() {
    for payload in webhook_examples("pull_request") {
        let file = payload_file(&payload);
        let run = plan(&example_config(), file.path(), &["--output", "json"]);
        assert_eq!(run.code, 0, "{}: {}", payload["action"], run.stderr);
        let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            plan["context"]["sha"],
            payload["pull_request"]["head"]["sha"]
        );
        assert_eq!(plan["context"]["event"]["name"], "pull_request");
    }
}
