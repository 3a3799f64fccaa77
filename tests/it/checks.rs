//! Check runs against a fake GitHub behind `prism proxy`, which validates every request and
//! response against GitHub's OpenAPI description: 1,000 findings reach GitHub in
//! ceil(1000 / 50) + 1 = 21 requests, no batch over 50 annotations, the conclusion last; a
//! 403 is told apart so the caller can fall back to workflow commands.

use jisu_deploy::findings::{Finding, Severity, Tool};
use jisu_deploy::github::checks::{CheckOutput, CheckRunsClient, ChecksError, Conclusion};
use jisu_deploy::oci::auth::Secret;
use serde_json::Value;

use crate::support::fake_github::FakeGitHub;
use crate::support::prism_proxy::PrismProxy;

const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";

fn findings(n: u32) -> Vec<Finding> {
    (1..=n)
        .map(|i| Finding {
            tool: Tool::Flake8,
            path: format!("app/module_{}.py", i % 7),
            line: Some(i),
            column: Some(1),
            code: Some("E501".into()),
            severity: Severity::Warning,
            message: format!("line too long ({} > 79 characters)", 80 + i),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_findings_reach_github_in_twenty_one_valid_requests() {
    let github = FakeGitHub::start().await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&github.server.uri()));
    let token = Secret::new("ghs_checks_test");
    let client = CheckRunsClient::new(&prism.url(), &token, "acme/app").unwrap();
    let id = client
        .start(
            "lint",
            SHA,
            Some("https://github.com/acme/app/actions/runs/42"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nprism:\n{}", prism.log()));
    let output = CheckOutput {
        title: "flake8: 1000 warnings".into(),
        summary: "1000 findings".into(),
        text: "x".repeat(70_000),
    };
    let all = findings(1000);
    let patches = client
        .finish(id, Conclusion::Failure, &output, &all)
        .await
        .unwrap_or_else(|e| panic!("{e}\nprism:\n{}", prism.log()));
    let seen: Vec<(String, Value)> = github
        .calls()
        .into_iter()
        .map(|c| (c.method, c.body))
        .collect();
    let requests = seen.len();
    println!(
        "check-run requests for {} findings: {requests} (ceil(N/50) + 1 = {}; reviewdog: ceil(N/50) + 2 = {})",
        all.len(),
        all.len().div_ceil(50) + 1,
        all.len().div_ceil(50) + 2
    );
    assert_eq!(patches + 1, requests);
    assert_eq!(requests, 21);
    assert_eq!(seen[0].1["status"], "in_progress");
    assert_eq!(seen[0].1["head_sha"], SHA);
    let mut sent = 0;
    for (index, (verb, body)) in seen.iter().enumerate().skip(1) {
        assert_eq!(verb, "PATCH");
        let annotations = body["output"]["annotations"].as_array().unwrap().len();
        assert!(annotations <= 50);
        sent += annotations;
        let last = index == seen.len() - 1;
        assert_eq!(
            body.get("conclusion").is_some(),
            last,
            "the conclusion comes last"
        );
        let text = body["output"]["text"].as_str().unwrap();
        assert!(text.chars().count() <= 65_535 && text.ends_with("characters left out"));
    }
    assert_eq!(sent, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_findings_take_two_requests_and_a_403_is_told_apart() {
    let github = FakeGitHub::start().await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&github.server.uri()));
    let token = Secret::new("ghs_checks_test");
    let client = CheckRunsClient::new(&prism.url(), &token, "acme/app").unwrap();
    let id = client.start("test", SHA, None).await.unwrap();
    let output = CheckOutput {
        title: "pytest: all passed".into(),
        summary: "no findings".into(),
        text: String::new(),
    };
    assert_eq!(
        client
            .finish(id, Conclusion::Success, &output, &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(github.calls().len(), 2);
    let fork = CheckRunsClient::new(&prism.url(), &token, "acme/fork").unwrap();
    let refused = fork.start("lint", SHA, None).await;
    assert!(
        matches!(refused, Err(ChecksError::Forbidden)),
        "{refused:?}\nprism:\n{}",
        prism.log()
    );
}
