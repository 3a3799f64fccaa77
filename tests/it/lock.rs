//! The deploy lock (a Lease per environment) with the real binary against kube-sim. Who
//! held the Lease when is read back from the simulator's change history (a watch from the
//! resourceVersion before the runs), so overlaps show up however the runs interleaved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{ImageBehavior, SimOptions};
use serde_json::json;

use crate::deploy::{Cluster, IMAGES, NS, assert_failed_with, binary, cluster, http_server};
use crate::support::{Run, repo_root};

const LEASE: &str = "jisu-deploy-staging";

/// The sha run `n` deploys (its `app.kubernetes.io/version` label).
fn sha(n: usize) -> String {
    format!("{n:0>40}")
}

/// The environment of GitHub run `n`.
fn github_run(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
        ("GITHUB_REPOSITORY", "jisu/platform".to_owned()),
        ("GITHUB_RUN_ID", n.to_string()),
        ("GITHUB_RUN_ATTEMPT", "1".to_owned()),
    ]
}

fn run_url(n: usize) -> String {
    format!("https://github.com/jisu/platform/actions/runs/{n}/attempts/1")
}

/// `deploy` of staging at `sha(n)` as GitHub run `n`, not yet waited for.
fn deploy_command(
    cluster: &Cluster,
    config: &Path,
    n: usize,
    extra: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary());
    command
        .env_clear()
        .current_dir(repo_root())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(github_run(n))
        .env(
            "GITHUB_OUTPUT",
            cluster.dir.path().join(format!("output-{n}")),
        )
        .args([
            "deploy",
            "--config",
            config.to_str().unwrap(),
            "--environment",
            "staging",
            "--sha",
            &sha(n),
            "--kubeconfig",
            cluster.kubeconfig.to_str().unwrap(),
        ])
        // A test that pins the backend itself gives only the frontend's digest here.
        .args(if extra.contains(&"--digests") {
            &IMAGES[..2]
        } else {
            &IMAGES[..]
        })
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn deploy(cluster: &Cluster, config: &Path, n: usize, extra: &[&str]) -> Run {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        deploy_command(cluster, config, n, extra).output(),
    )
    .await
    .expect("deploy finishes within two minutes")
    .expect("the binary runs");
    output.into()
}

/// The last run report run `n` wrote to its GITHUB_OUTPUT.
fn report(cluster: &Cluster, n: usize) -> serde_json::Value {
    let text = std::fs::read_to_string(cluster.dir.path().join(format!("output-{n}"))).unwrap();
    // The last one: a run may follow a dry run with the same outputs file.
    let mut last = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(value) = line.strip_prefix("report=") {
            last = Some(value.to_owned());
        }
        if let Some(delimiter) = line.strip_prefix("report<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            last = Some(value.join("\n"));
        }
    }
    serde_json::from_str(&last.unwrap_or_else(|| panic!("no report output in {text}"))).unwrap()
}

fn step<'r>(report: &'r serde_json::Value, id: &str) -> &'r serde_json::Value {
    report["jobs"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

/// A staging pipeline whose checks hit a local server answering 200.
async fn staging(cluster: &Cluster) -> PathBuf {
    let (url, _) = http_server(200).await;
    cluster.pipeline(&url, "k8s/app", "")
}

/// The stored Lease.
fn lease(cluster: &Cluster) -> Option<serde_json::Value> {
    cluster.sim.object("Lease", NS, LEASE)
}

/// The resourceVersion now: changes after it are in the history read later.
async fn now_rv(cluster: &Cluster) -> String {
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    leases
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

/// Every stored version of `K` in the namespace since `since`, in order, with its
/// resourceVersion (`None` object: deleted).
async fn history<K>(cluster: &Cluster, since: &str) -> Vec<(u64, Option<K>)>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), NS);
    let events: Vec<WatchEvent<K>> = api
        .watch(&WatchParams::default().timeout(1), since)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let rv = |o: &K| -> u64 { o.meta().resource_version.as_ref().unwrap().parse().unwrap() };
    events
        .into_iter()
        .filter_map(|event| match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => Some((rv(&o), Some(o))),
            WatchEvent::Deleted(o) => Some((rv(&o), None)),
            WatchEvent::Bookmark(_) => None,
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        })
        .collect()
}

/// One holder's time with the Lease: its identity, the resourceVersion that gave it the
/// Lease and the one that took it away (`None`: still held at the end).
#[derive(Debug)]
struct Hold {
    holder: String,
    from: u64,
    to: Option<u64>,
    /// The holder before it, when the Lease went from one holder to another directly (a
    /// takeover) rather than through a release.
    took_over: Option<String>,
}

/// The holds recorded in the Lease's history, in order.
fn holds(history: &[(u64, Option<Lease>)]) -> Vec<Hold> {
    let mut holds: Vec<Hold> = Vec::new();
    let mut current: Option<String> = None;
    for (rv, lease) in history {
        let holder = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        if holder == current {
            continue;
        }
        if current.is_some()
            && let Some(open) = holds.last_mut()
        {
            open.to = Some(*rv);
        }
        if let Some(holder) = &holder {
            holds.push(Hold {
                holder: holder.clone(),
                from: *rv,
                to: None,
                took_over: current.clone(),
            });
        }
        current = holder;
    }
    holds
}

fn transitions(lease: &serde_json::Value) -> i64 {
    lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0)
}

/// The resourceVersion of the first stored backend Deployment labelled with `sha`.
fn applied_at(history: &[(u64, Option<Deployment>)], sha: &str) -> Option<u64> {
    history.iter().find_map(|(rv, d)| {
        let labels = d.as_ref()?.metadata.labels.as_ref()?;
        (d.as_ref()?.metadata.name.as_deref() == Some("backend")
            && labels.get("app.kubernetes.io/version").map(String::as_str) == Some(sha))
        .then_some(*rv)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_takes_the_lock_and_gives_it_back() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = staging(&cluster).await;
    let since = now_rv(&cluster).await;
    let run = deploy(&cluster, &config, 1, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let leases = history::<Lease>(&cluster, &since).await;
    let holds = holds(&leases);
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(
        holds[0].holder.starts_with(&format!("{} (", run_url(1))),
        "{holds:?}"
    );
    let applied = applied_at(&history::<Deployment>(&cluster, &since).await, &sha(1)).unwrap();
    let released = holds[0].to.expect("released");
    assert!(
        holds[0].from < applied && applied < released,
        "{holds:?} {applied}"
    );
    let held = leases.iter().find_map(|(_, l)| {
        l.as_ref()
            .filter(|l| l.spec.as_ref().unwrap().holder_identity.is_some())
    });
    let annotations = held.unwrap().metadata.annotations.clone().unwrap();
    assert_eq!(annotations["jisu.dev/run-url"], run_url(1));

    let stored = lease(&cluster).unwrap();
    assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
    assert_eq!(transitions(&stored), 0);
    let report = report(&cluster, 1);
    assert_eq!(step(&report, "lock")["outputs"]["holder"], holds[0].holder);
    assert_eq!(step(&report, "unlock")["outputs"]["released"], "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_still_gives_the_lock_back() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = staging(&cluster).await;
    let since = now_rv(&cluster).await;
    let backend = format!("backend=ghcr.io/jisu/crashloop@sha256:{}", "4".repeat(64));
    let run = deploy(
        &cluster,
        &config,
        1,
        &["--digests", &backend, "--timeout", "60s"],
    )
    .await;
    assert_failed_with(&run, 1, &["Deployment/backend: rollout failed"]);
    let holds = holds(&history::<Lease>(&cluster, &since).await);
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(holds[0].to.is_some(), "released: {holds:?}");
    let stored = lease(&cluster).unwrap();
    assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
    let report = report(&cluster, 1);
    assert_eq!(step(&report, "wait")["status"], "failed");
    assert_eq!(step(&report, "unlock")["status"], "succeeded");
}

/// Stores a Lease held by `holder`, renewed at `renewed`, for `duration` seconds.
async fn held_by(cluster: &Cluster, holder: &str, renewed: jiff::Timestamp, duration: i32) {
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE, "annotations": {"jisu.dev/run-url": run_url(7)}},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": renewed.to_string(),
            "renewTime": renewed.to_string(),
            "leaseTransitions": 4
        }
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_makes_a_deploy_wait_then_fail_naming_it_with_nothing_applied() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = staging(&cluster).await;
    let other = format!("{} (other-runner/99)", run_url(7));
    held_by(&cluster, &other, jiff::Timestamp::now(), 3600).await;
    let before = lease(&cluster).unwrap();

    // A dry run says who holds it and takes nothing.
    let dry = deploy(&cluster, &config, 1, &["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stderr
            .contains(&format!("Lease {NS}/{LEASE} is held by {other}")),
        "{}",
        dry.stderr
    );
    assert_eq!(lease(&cluster).unwrap(), before);

    let run = deploy(&cluster, &config, 1, &["--lock-timeout", "1s"]).await;
    assert_failed_with(
        &run,
        1,
        &[
            &format!("the deploy lock (Lease {NS}/{LEASE}) is held by {other}"),
            "gave up after waiting 1s",
        ],
    );
    assert_eq!(
        lease(&cluster).unwrap(),
        before,
        "the holder's Lease is untouched"
    );
    for (kind, name) in [("Deployment", "backend"), ("ConfigMap", "backend-config")] {
        assert!(
            cluster.sim.object(kind, NS, name).is_none(),
            "{kind} applied"
        );
    }
    let report = report(&cluster, 1);
    assert_eq!(step(&report, "lock")["failure"], "lock");
    assert_eq!(step(&report, "apply")["status"], "not_reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stopped_renewing_is_taken_over() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = staging(&cluster).await;
    let stale = "crashed-runner/1234";
    let long_ago = "2020-01-01T00:00:00Z".parse().unwrap();
    let since = now_rv(&cluster).await;
    held_by(&cluster, stale, long_ago, 60).await;
    let run = deploy(&cluster, &config, 2, &["--lock-timeout", "0s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("took it over from crashed-runner/1234"),
        "{}",
        run.stderr
    );
    let holds = holds(&history::<Lease>(&cluster, &since).await);
    assert_eq!(holds.len(), 2, "the stale hold, then ours: {holds:?}");
    assert_eq!(holds[1].took_over.as_deref(), Some(stale));
    assert!(holds[1].holder.starts_with(&run_url(2)), "{holds:?}");
    assert!(holds[1].to.is_some(), "released: {holds:?}");
    assert_eq!(transitions(&lease(&cluster).unwrap()), 5);
    assert_eq!(
        step(&report(&cluster, 2), "lock")["outputs"]["taken_over_from"],
        stale
    );
}

/// `n` deploys of staging at once: every one succeeds, one at a time, each applying only
/// while it holds the Lease, and every hand-over counted.
async fn concurrent_deploys(n: usize) {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = staging(&cluster).await;
    let since = now_rv(&cluster).await;
    let runs = futures::future::join_all((1..=n).map(|i| deploy(&cluster, &config, i, &[]))).await;
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let holds = holds(&history::<Lease>(&cluster, &since).await);
    assert_eq!(holds.len(), n, "one hold per run: {holds:?}");
    let deployments = history::<Deployment>(&cluster, &since).await;
    let mut seen = BTreeMap::new();
    for hold in &holds {
        assert!(
            hold.took_over.is_none(),
            "a live holder was replaced: {holds:?}"
        );
        let to = hold.to.expect("every hold ends");
        let i = (1..=n)
            .find(|i| hold.holder.starts_with(&format!("{} (", run_url(*i))))
            .unwrap_or_else(|| panic!("whose hold is {hold:?}?"));
        assert!(
            seen.insert(i, ()).is_none(),
            "run {i} held it twice: {holds:?}"
        );
        let applied = applied_at(&deployments, &sha(i)).expect("run applied");
        assert!(
            hold.from < applied && applied < to,
            "run {i} applied at {applied} outside its hold {hold:?}"
        );
    }
    let stored = lease(&cluster).unwrap();
    assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
    assert_eq!(
        transitions(&stored),
        i64::try_from(n).unwrap() - 1,
        "a create, then one counted take per later run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_deploys_take_turns() {
    concurrent_deploys(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_deploys_take_turns() {
    concurrent_deploys(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_deploy_gives_the_lock_back() {
    let options = SimOptions::default()
        .time_scale(20.0)
        .image("ghcr.io/jisu/neverready", ImageBehavior::NeverReady);
    let cluster = cluster(options).await;
    let config = staging(&cluster).await;
    let backend = format!("backend=ghcr.io/jisu/neverready@sha256:{}", "5".repeat(64));
    let child = deploy_command(
        &cluster,
        &config,
        3,
        &["--digests", &backend, "--timeout", "90s"],
    )
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    // Applied, so the lock is held and the rollout wait is under way.
    while cluster.sim.object("Deployment", NS, "backend").is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = lease(&cluster).unwrap()["spec"]["holderIdentity"].clone();
    assert!(
        holder.as_str().is_some_and(|h| h.starts_with(&run_url(3))),
        "{holder}"
    );
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let run: Run = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops soon after SIGTERM")
        .unwrap()
        .into();
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("deploy lock {NS}/{LEASE}: released")),
        "{}",
        run.stderr
    );
    let stored = lease(&cluster).unwrap();
    assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
}
