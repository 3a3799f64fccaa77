//! `jisu-deploy rollback` of a rolling environment against kube-sim: every Deployment
//! goes back to its previous revision (its older ReplicaSet's template), the rollout is
//! waited for and the checks run; the next `deploy` still applies cleanly.

use std::path::Path;

use kube_sim::SimOptions;
use serde_json::Value;

use crate::deploy::{Cluster, IMAGES, NS, SHA, assert_failed_with, cluster, http_server, run};
use crate::support::Run;

/// `--digests` for both components with the digest's hex made of `digit`.
fn images(digit: char) -> Vec<String> {
    let hex: String = std::iter::repeat_n(digit, 64).collect();
    ["frontend", "backend"]
        .iter()
        .flat_map(|c| {
            [
                "--digests".to_owned(),
                format!("{c}=ghcr.io/jisu/platform@sha256:{hex}"),
            ]
        })
        .collect()
}

fn image(cluster: &Cluster, deployment: &str) -> String {
    let found = cluster
        .sim
        .object("Deployment", NS, deployment)
        .expect("the Deployment exists");
    found["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn revision(cluster: &Cluster, deployment: &str) -> Value {
    cluster.sim.object("Deployment", NS, deployment).unwrap()["metadata"]["annotations"]
        ["deployment.kubernetes.io/revision"]
        .clone()
}

async fn jisu(cluster: &Cluster, config: &Path, command: &str, extra: &[String]) -> Run {
    let kubeconfig = cluster.kubeconfig.to_str().unwrap();
    let mut args = vec![
        command,
        "--config",
        config.to_str().unwrap(),
        "--environment",
        "staging",
        "--kubeconfig",
        kubeconfig,
        "--check-interval",
        "0s",
    ];
    if command == "deploy" {
        args.extend(["--sha", SHA]);
    }
    args.extend(extra.iter().map(String::as_str));
    run(&args, &[]).await.0
}

fn succeeded(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_runs_the_previous_digests_and_the_next_deploy_applies_cleanly() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, requests) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let v1 = IMAGES.map(str::to_owned).to_vec();
    succeeded(&jisu(&cluster, &config, "deploy", &v1).await);
    let v1_images = (image(&cluster, "frontend"), image(&cluster, "backend"));
    succeeded(&jisu(&cluster, &config, "deploy", &images('5')).await);
    assert!(image(&cluster, "backend").ends_with("5555"));
    assert_eq!(revision(&cluster, "backend"), "2");

    // A dry run names the revision and changes nothing.
    let dry = jisu(&cluster, &config, "rollback", &["--dry-run".to_owned()]).await;
    succeeded(&dry);
    let said = format!("{}{}", dry.stdout, dry.stderr);
    assert!(
        said.contains("backend to revision 1") && said.contains("frontend to revision 1"),
        "{said}"
    );
    assert!(image(&cluster, "backend").ends_with("5555"));
    assert_eq!(revision(&cluster, "backend"), "2");

    let checks_before = requests.lock().unwrap().len();
    let rollback = jisu(&cluster, &config, "rollback", &[]).await;
    succeeded(&rollback);
    assert_eq!(
        (image(&cluster, "frontend"), image(&cluster, "backend")),
        v1_images
    );
    assert!(
        rollback
            .stderr
            .contains("Deployment/backend: rolled out, 1/1 replicas available"),
        "the rollout was waited for:\n{}",
        rollback.stderr
    );
    assert!(
        rollback
            .stderr
            .contains("Deployment backend went back from revision 2 to revision 1"),
        "{}",
        rollback.stderr
    );
    assert!(
        requests.lock().unwrap().len() > checks_before,
        "the checks ran after the rollback"
    );
    // The controller made the old ReplicaSet the newest revision, as for kubectl.
    assert_eq!(revision(&cluster, "backend"), "3");
    let backend = cluster.sim.object("Deployment", NS, "backend").unwrap();
    assert_eq!(backend["status"]["updatedReplicas"], 1);
    let hash_label = &backend["spec"]["template"]["metadata"]["labels"]["pod-template-hash"];
    assert!(hash_label.is_null(), "{hash_label}");

    // The rolled-back fields are jisu-deploy's applied fields again: a new deploy
    // applies without a conflict and without --force-conflicts.
    let v3 = jisu(&cluster, &config, "deploy", &images('7')).await;
    succeeded(&v3);
    assert!(image(&cluster, "backend").ends_with("7777"));
    assert!(image(&cluster, "frontend").ends_with("7777"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_without_an_earlier_revision_is_bad_input_and_changes_nothing() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, requests) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let v1 = IMAGES.map(str::to_owned).to_vec();
    succeeded(&jisu(&cluster, &config, "deploy", &v1).await);
    let before = (
        cluster.sim.object("Deployment", NS, "frontend").unwrap(),
        cluster.sim.object("Deployment", NS, "backend").unwrap(),
    );
    let checks_before = requests.lock().unwrap().len();

    let rollback = jisu(&cluster, &config, "rollback", &[]).await;
    assert_failed_with(
        &rollback,
        2,
        &["Deployment backend has no earlier revision to roll back to"],
    );
    let after = (
        cluster.sim.object("Deployment", NS, "frontend").unwrap(),
        cluster.sim.object("Deployment", NS, "backend").unwrap(),
    );
    assert_eq!(
        after.0["metadata"]["resourceVersion"],
        before.0["metadata"]["resourceVersion"]
    );
    assert_eq!(
        after.1["metadata"]["resourceVersion"],
        before.1["metadata"]["resourceVersion"]
    );
    assert_eq!(
        requests.lock().unwrap().len(),
        checks_before,
        "no checks ran"
    );
}
