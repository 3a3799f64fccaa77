//! `jisu-deploy run` end to end for a push to `develop`, against real parts: the real
//! binary, gates run as commands, buildah builds pushed to a real distribution registry on
//! loopback, and the staging deploy applied to kube-sim with exactly the pushed digests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube_sim::{KubeSim, SimOptions};
use serde_json::{Value, json};

use crate::images::jisu_in as jisu;
use crate::support::Run;
use crate::support::registry_server::RegistryServer;

const SHA: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const NS: &str = "team-staging";
const PROD: &str = "team-prod";

/// A checkout of a team's own service: two components (FROM scratch), manifests with the
/// placeholders, and a gate that either passes or fails.
fn workspace(dir: &Path, registry: &str, gate: &str) -> PathBuf {
    for component in ["api", "web"] {
        let context = dir.join(component);
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("hello.txt"), format!("{component}\n")).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY hello.txt /hello.txt\n",
        )
        .unwrap();
    }
    let manifests = dir.join("deploy");
    std::fs::create_dir_all(&manifests).unwrap();
    for (component, port) in [("api", 8080), ("web", 80)] {
        std::fs::write(
            manifests.join(format!("{component}.yaml")),
            format!(
                "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {component}, labels: {{app: {component}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {component}}}}}
  template:
    metadata: {{labels: {{app: {component}}}}}
    spec:
      containers:
        - name: {component}
          image: {registry}/acme/{component}:{component}
          ports: [{{containerPort: {port}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {component}}}
spec:
  selector: {{app: {component}}}
  ports: [{{port: {port}}}]
"
            ),
        )
        .unwrap();
    }
    let config = dir.join("pipeline.yml");
    std::fs::write(
        &config,
        format!(
            "version: 1
images: {{registry: '{registry}', scheme: per-component, owner: acme}}
components:
  api: {{context: api, dockerfile: api/Dockerfile, port: 8080}}
  web: {{context: web, dockerfile: web/Dockerfile, port: 80}}
environments:
  staging: {{branch: develop, namespace: {NS}, url: 'http://127.0.0.1:9', strategy: rolling, manifests: deploy, rollout_timeout: 2m}}
  production: {{branch: main, namespace: {PROD}, url: 'http://127.0.0.1:9', strategy: blue-green, manifests: deploy, rollout_timeout: 2m, blue_green: {{verify_for: 1s}}}}
gates:
  lint:
    - {{name: style, run: {gate}}}
"
        ),
    )
    .unwrap();
    config
}

struct Bed {
    registry: RegistryServer,
    sim: KubeSim,
    dir: tempfile::TempDir,
    config: PathBuf,
    kubeconfig: PathBuf,
    client: kube::Client,
}

async fn bed(gate: &str) -> Bed {
    jisu_deploy::tls::ensure_provider();
    let registry = RegistryServer::start();
    let sim = KubeSim::start(SimOptions::default().time_scale(20.0))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = workspace(dir.path(), &registry.host(), gate);
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    for name in [NS, PROD] {
        let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    Bed {
        registry,
        sim,
        dir,
        config,
        kubeconfig,
        client,
    }
}

impl Bed {
    /// `run` for a push of SHA to develop, with the outputs file; extra flags appended.
    fn run(&self, extra: &[&str]) -> (Run, String) {
        let output = self.dir.path().join("github_output");
        let _ = std::fs::remove_file(&output);
        let storage = self.dir.path().join("buildah");
        let mut args = vec![
            "run",
            "--config",
            self.config.to_str().unwrap(),
            "--workspace",
            self.dir.path().to_str().unwrap(),
            "--event-name",
            "push",
            "--ref",
            "refs/heads/develop",
            "--sha",
            SHA,
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
            "--builder",
            "buildah",
            "--storage-root",
            storage.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = jisu(&args, &[("GITHUB_OUTPUT", output.to_str().unwrap())]);
        let outputs = std::fs::read_to_string(&output).unwrap_or_default();
        (run, outputs)
    }

    async fn deployment_images(&self) -> Vec<String> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        let mut images = Vec::new();
        for name in ["api", "web"] {
            if let Some(deployment) = api.get_opt(name).await.unwrap() {
                let spec = deployment.spec.unwrap().template.spec.unwrap();
                images.push(spec.containers[0].image.clone().unwrap());
            }
        }
        images
    }

    fn pushes(&self) -> usize {
        self.registry
            .access_log()
            .iter()
            .filter(|l| l.method == "PUT")
            .count()
    }
}

/// An output written with the heredoc form or as `name=value`.
fn output(outputs: &str, name: &str) -> String {
    let mut lines = outputs.lines();
    while let Some(line) = lines.next() {
        if let Some(value) = line.strip_prefix(&format!("{name}=")) {
            return value.to_owned();
        }
        if let Some(delimiter) = line.strip_prefix(&format!("{name}<<")) {
            return lines
                .by_ref()
                .take_while(|l| *l != delimiter)
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    panic!("no output `{name}` in:\n{outputs}")
}

fn step<'r>(report: &'r Value, job: &str, step: &str) -> &'r Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == job)
        .and_then(|j| {
            j["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == step)
        })
        .unwrap_or_else(|| panic!("no step {job}/{step} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_develop_runs_gates_builds_pushes_and_deploys_the_pushed_digests() {
    let bed = bed("[test, -f, api/hello.txt]").await;
    let (run, outputs) = bed.run(&[]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let report: Value = serde_json::from_str(&output(&outputs, "report")).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["result"], "succeeded");
    for (job, id) in [
        ("lint", "style"),
        ("build", "api"),
        ("build", "web"),
        ("deploy-staging", "apply"),
        ("deploy-staging", "wait"),
    ] {
        assert_eq!(step(&report, job, id)["status"], "succeeded", "{job}/{id}");
    }
    assert_eq!(
        step(&report, "deploy-staging", "checks")["status"],
        "skipped"
    );
    for id in ["lock", "unlock"] {
        assert_eq!(
            step(&report, "deploy-staging", id)["status"],
            "succeeded",
            "{id}"
        );
    }

    // Both images were pushed, and staging runs exactly those digests.
    let digests: Value = serde_json::from_str(&output(&outputs, "digests")).unwrap();
    let host = bed.registry.host();
    let mut pushed = Vec::new();
    for component in ["api", "web"] {
        let pinned = digests[component].as_str().unwrap().to_owned();
        assert!(
            pinned.starts_with(&format!("{host}/acme/{component}@sha256:")),
            "{pinned}"
        );
        assert_eq!(
            step(&report, "build", component)["outputs"]["digest"],
            pinned
        );
        pushed.push(pinned);
    }
    assert_eq!(bed.deployment_images().await, pushed);
    assert_eq!(output(&outputs, "result"), "success");

    // The log names every job and step, with its duration.
    for line in [
        "step `lint/style` succeeded in",
        "step `build/api` succeeded in",
        "step `deploy-staging/apply` succeeded in",
    ] {
        assert!(run.stderr.contains(line), "{line} in:\n{}", run.stderr);
    }

    // The executor's own overhead: the run's wall time outside its steps.
    let total = report["duration_ms"].as_u64().unwrap();
    let steps: u64 = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["steps"].as_array().unwrap())
        .filter_map(|s| s["duration_ms"].as_u64())
        .sum();
    eprintln!(
        "executor overhead: {} ms of {total} ms outside the steps",
        total - steps
    );
    let _ = &bed.sim;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_stops_the_run_before_anything_is_pushed_or_applied() {
    let bed = bed("[sh, -c, 'echo style is off >&2; exit 3']").await;
    let (run, outputs) = bed.run(&[]);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains("lint/style"), "{}", run.stderr);
    assert!(run.stderr.contains("`style` failed"), "{}", run.stderr);
    let report: Value = serde_json::from_str(&output(&outputs, "report")).unwrap();
    assert_eq!(step(&report, "lint", "style")["failure"], "command");
    assert_eq!(step(&report, "build", "api")["status"], "not_reached");
    assert_eq!(
        step(&report, "deploy-staging", "apply")["status"],
        "not_reached"
    );
    assert_eq!(bed.pushes(), 0, "nothing pushed");
    assert!(bed.deployment_images().await.is_empty(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_invocation_deploys_what_an_earlier_one_built() {
    let bed = bed("[test, -f, api/hello.txt]").await;
    let (first, outputs) = bed.run(&["--job", "lint", "--job", "build"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(bed.deployment_images().await.is_empty());
    let digests = output(&outputs, "digests");
    let (second, outputs) = bed.run(&["--job", "deploy-staging", "--digests", &digests]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let report: Value = serde_json::from_str(&output(&outputs, "report")).unwrap();
    let jobs: Vec<&str> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["deploy-staging"]);
    let given: Value = serde_json::from_str(&digests).unwrap();
    assert_eq!(
        bed.deployment_images().await,
        vec![
            given["api"].as_str().unwrap().to_owned(),
            given["web"].as_str().unwrap().to_owned()
        ]
    );

    // An unknown job is bad input, naming the jobs there are.
    let (unknown, _) = bed.run(&["--job", "deploy-prod"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("deploy-staging"),
        "{}",
        unknown.stderr
    );
}

/// Accepts connections and counts them: a stand-in for the registry and the cluster that
/// proves a dry run sends them nothing.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (address, count)
}

#[test]
fn a_dry_run_prints_the_plan_and_contacts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, registry_hits) = counting_listener();
    let (cluster, cluster_hits) = counting_listener();
    let config = workspace(dir.path(), &registry, "[test, -f, api/hello.txt]");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kube_sim::kubeconfig_yaml(&format!("http://{cluster}")),
    )
    .unwrap();
    let run = jisu(
        &[
            "run",
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "--workspace",
            dir.path().to_str().unwrap(),
            "--event-name",
            "push",
            "--ref",
            "refs/heads/develop",
            "--sha",
            SHA,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in [
        "[run ] lint",
        "[run ] build",
        "[run ] deploy-staging",
        "unlock (always)",
    ] {
        assert!(run.stdout.contains(line), "{line} in:\n{}", run.stdout);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        registry_hits.load(Ordering::SeqCst),
        0,
        "registry contacted"
    );
    assert_eq!(cluster_hits.load(Ordering::SeqCst), 0, "cluster contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_promotion_deploys_exactly_the_promoted_digests_blue_green() {
    let bed = bed("[\"true\"]").await;
    // The push to develop builds and pushes SHA's images (and deploys staging).
    let (pushed, _) = bed.run(&[]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let built = bed.deployment_images().await;
    assert_eq!(built.len(), 2);
    let run = jisu(
        &[
            "run",
            "--config",
            bed.config.to_str().unwrap(),
            "--workspace",
            bed.dir.path().to_str().unwrap(),
            "--event-name",
            "workflow_dispatch",
            "--ref",
            "refs/heads/main",
            "--input",
            "operation=promote",
            "--input",
            "environment=production",
            "--input",
            &format!("sha={SHA}"),
            "--kubeconfig",
            bed.kubeconfig.to_str().unwrap(),
            "--check-interval",
            "100ms",
        ],
        &[],
    );
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), PROD);
    let mut promoted = Vec::new();
    for name in ["api-blue", "web-blue"] {
        let deployment = deployments.get(name).await.unwrap();
        let spec = deployment.spec.unwrap().template.spec.unwrap();
        promoted.push(spec.containers[0].image.clone().unwrap());
    }
    assert_eq!(
        promoted, built,
        "production runs the very digests that were built"
    );
    assert!(promoted.iter().all(|image| image.contains("@sha256:")));
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(bed.client.clone(), PROD);
    for name in ["api", "web"] {
        let selector = services
            .get(name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .selector
            .unwrap();
        assert_eq!(
            selector.get("color").map(String::as_str),
            Some("blue"),
            "{name}"
        );
    }
}
