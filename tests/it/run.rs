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
        self.run_with("refs/heads/develop", extra, &[])
    }

    /// `run` for a push of SHA to `git_ref`, with the outputs file, extra flags and
    /// variables.
    fn run_with(&self, git_ref: &str, extra: &[&str], env: &[(&str, &str)]) -> (Run, String) {
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
            git_ref,
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
        let mut env = env.to_vec();
        env.push(("GITHUB_OUTPUT", output.to_str().unwrap()));
        let run = jisu(&args, &env);
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
    // The headline says what this is: the dry run itself, not a plan of one.
    assert!(
        run.stdout.starts_with(&format!(
            "Plan for push to branch `develop` at {} [dry run: nothing is changed]\n",
            &SHA[..7]
        )),
        "{}",
        run.stdout
    );
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

/// A bed whose lint gate reports one flake8 finding (`api/bad.py:1:1 F401`) and passes
/// (`--exit-zero`), and a fake GitHub behind prism.
async fn github_bed() -> (
    Bed,
    crate::support::fake_github::FakeGitHub,
    crate::support::prism_proxy::PrismProxy,
) {
    let bed = bed("[python3, -m, flake8, --exit-zero, api], reports: [{format: flake8}]").await;
    std::fs::write(bed.dir.path().join("api/bad.py"), "import os\n").unwrap();
    let github = crate::support::fake_github::FakeGitHub::start().await;
    let uri = github.server.uri();
    let prism =
        tokio::task::block_in_place(|| crate::support::prism_proxy::PrismProxy::start(&uri));
    (bed, github, prism)
}

/// The variables a GitHub-hosted run has, pointing at `api`.
fn github_env(api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_TOKEN", "ghs_run_test".to_owned()),
        ("GITHUB_REPOSITORY", "acme/app".to_owned()),
        ("GITHUB_API_URL", api.to_owned()),
        ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
        ("GITHUB_RUN_ID", "42".to_owned()),
        ("GITHUB_SHA", SHA.to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_reports_to_github_through_requests_valid_by_its_openapi_description() {
    let (bed, github, prism) = github_bed().await;
    // A planted bad request (no head_sha) is caught by the proxy.
    let planted = reqwest::Client::new()
        .post(format!("{}/repos/acme/app/check-runs", prism.url()))
        .header("User-Agent", "test")
        .header("Authorization", "token x")
        .json(&json!({"name": "lint", "status": "in_progress"}))
        .send()
        .await
        .unwrap();
    assert!(planted.status().is_client_error(), "{}", prism.log());
    github.clear();
    let api = prism.url();
    let env = github_env(&api);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = ["--kubeconfig", bed.kubeconfig.to_str().unwrap()];
    let common = [
        "--config",
        bed.config.to_str().unwrap(),
        "--workspace",
        bed.dir.path().to_str().unwrap(),
    ];

    // A push to main: the gate's check run, the build, the blue-green deploy's record.
    let (pushed, outputs) = tokio::task::block_in_place(|| {
        bed.run_with("refs/heads/main", &["--check-interval", "100ms"], &env)
    });
    assert_eq!(pushed.code, 0, "{}\nprism:\n{}", pushed.stderr, prism.log());
    let report: Value = serde_json::from_str(&output(&outputs, "report")).unwrap();
    let found = &step(&report, "lint", "style")["findings"];
    assert_eq!(found["warnings"], 1, "{report:#}");
    assert_eq!(found["first"][0]["path"], "api/bad.py");
    assert_eq!(found["first"][0]["code"], "F401");

    // Then a promotion by dispatch, a rollback and a switch, each recorded.
    let promote = tokio::task::block_in_place(|| {
        let mut args = vec![
            "run",
            "--event-name",
            "workflow_dispatch",
            "--ref",
            "refs/heads/main",
        ];
        args.extend(common);
        args.extend(cluster);
        let sha = format!("sha={SHA}");
        args.extend([
            "--input",
            "operation=promote",
            "--input",
            "environment=production",
            "--input",
            &sha,
            "--check-interval",
            "100ms",
        ]);
        jisu(&args, &env)
    });
    assert_eq!(
        promote.code,
        0,
        "{}\nprism:\n{}",
        promote.stderr,
        prism.log()
    );
    for command in ["rollback", "switch"] {
        let done = tokio::task::block_in_place(|| {
            let mut args = vec![
                command,
                "--environment",
                "production",
                "--check-interval",
                "100ms",
            ];
            args.extend(common);
            args.extend(cluster);
            jisu(&args, &env)
        });
        assert_eq!(
            done.code,
            0,
            "{command}: {}\nprism:\n{}",
            done.stderr,
            prism.log()
        );
    }

    let calls = github.calls();
    let kinds: Vec<&str> = calls
        .iter()
        .map(|c| c.kind())
        .filter(|k| *k != "list")
        .collect();
    assert_eq!(
        kinds,
        [
            "check_run",
            "check_run_update",
            "deployment",
            "deployment_status",
            "deployment_status",
            "deployment",
            "deployment_status",
            "deployment_status",
            "deployment",
            "deployment_status",
            "deployment_status",
            "deployment",
            "deployment_status",
            "deployment_status",
        ],
        "{calls:#?}\nprism:\n{}",
        prism.log()
    );
    let created = &calls[0].body;
    assert_eq!(created["head_sha"], SHA);
    assert_eq!(created["name"], "jisu-deploy lint");
    assert_eq!(
        created["details_url"],
        "https://github.com/acme/app/actions/runs/42"
    );
    let finished = &calls[1].body;
    assert_eq!(finished["conclusion"], "success");
    let annotation = &finished["output"]["annotations"][0];
    assert_eq!(annotation["path"], "api/bad.py");
    assert_eq!(annotation["start_line"], 1);
    assert_eq!(annotation["annotation_level"], "warning");
    assert_eq!(annotation["title"], "flake8: F401");
    let tasks: Vec<&str> = calls
        .iter()
        .filter(|c| c.kind() == "deployment")
        .map(|c| c.body["task"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["deploy", "promote", "rollback", "switch"]);
    let states: Vec<&str> = calls
        .iter()
        .filter(|c| c.kind() == "deployment_status")
        .map(|c| c.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["in_progress", "success"].repeat(4));
    for deployment in calls.iter().filter(|c| c.kind() == "deployment") {
        assert_eq!(deployment.body["ref"], SHA);
        assert_eq!(deployment.body["environment"], "production");
        assert_eq!(deployment.body["production_environment"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_become_annotations_and_a_commit_status_where_check_runs_are_refused() {
    let (bed, github, prism) = github_bed().await;
    let api = prism.url();
    for repository in ["acme/locked", "acme/fork"] {
        github.clear();
        let mut env = github_env(&api);
        env.retain(|(k, _)| *k != "GITHUB_REPOSITORY");
        env.push(("GITHUB_REPOSITORY", repository.to_owned()));
        env.push(("GITHUB_ACTIONS", "true".to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (run, _) = tokio::task::block_in_place(|| {
            bed.run_with("refs/heads/develop", &["--job", "lint"], &env)
        });
        assert_eq!(run.code, 0, "{repository}: {}", run.stderr);
        assert!(
            run.stdout
                .contains("::warning file=api/bad.py,line=1,col=1,title=flake8 F401::"),
            "{repository}: {}",
            run.stdout
        );
        assert_eq!(
            run.stderr.matches("checks: write").count(),
            1,
            "said once: {}",
            run.stderr
        );
        let statuses: Vec<(String, String)> = github
            .calls()
            .into_iter()
            .filter(|c| c.kind() == "commit_status")
            .map(|c| {
                (
                    c.body["state"].as_str().unwrap().to_owned(),
                    c.body["context"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let context = "jisu-deploy lint".to_owned();
        let expected = [
            ("pending".to_owned(), context.clone()),
            ("success".to_owned(), context),
        ];
        assert_eq!(statuses, expected, "{repository}\nprism:\n{}", prism.log());
    }
}
