//! `jisu-deploy deploy` against kube-sim (a simulated API server speaking the real wire
//! format): the real binary, the platform's own manifests in `k8s/app`, a local HTTP server
//! for the environment's checks. Every refusal is checked on the server: nothing created.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::{FaultRule, ImageBehavior, KubeSim, SimOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Run, repo_root};

pub(crate) const NS: &str = "jisu-staging";
pub(crate) const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const FRONTEND: &str =
    "ghcr.io/jisu/platform@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BACKEND: &str =
    "ghcr.io/jisu/platform@sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A simulated cluster with the staging namespace, a kubeconfig for it, and a temp dir.
pub(crate) struct Cluster {
    pub(crate) sim: KubeSim,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) client: kube::Client,
}

pub(crate) async fn cluster(options: SimOptions) -> Cluster {
    jisu_deploy::tls::ensure_provider();
    let sim = KubeSim::start(options).await.expect("kube-sim starts");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    Cluster {
        sim,
        dir,
        kubeconfig,
        client,
    }
}

impl Cluster {
    /// A pipeline file like the example's, with staging pointed at `url` and `manifests`.
    pub(crate) fn pipeline(&self, url: &str, manifests: &str, staging_extra: &str) -> PathBuf {
        let path = self.dir.path().join("pipeline.yml");
        let marker = self.dir.path().join("command-ran");
        let text = format!(
            r#"version: 1
images: {{registry: ghcr.io, scheme: component-prefix, repository: jisu/platform}}
components:
  frontend: {{context: examples/jisu/frontend, dockerfile: examples/jisu/frontend/Dockerfile, port: 80}}
  backend: {{context: examples/jisu/backend, dockerfile: examples/jisu/backend/Dockerfile, port: 8000}}
environments:
  staging:
    branch: develop
    namespace: {NS}
    url: {url}
    strategy: rolling
    manifests: {manifests}
    replicas: {{frontend: 1, backend: 2}}
    rollout_timeout: 2m
    checks:
      - {{name: backend health, url: /api/health, retries: 3, timeout: 2s}}
    command:
      name: integration tests
      run: [sh, -c, 'echo "$JISU_ENV_URL" > "$MARKER"']
      env: {{MARKER: "{marker}"}}
{staging_extra}
  production:
    branch: main
    namespace: jisu-prod
    url: https://jisu.example
    strategy: blue-green
    manifests: k8s/app
"#,
            marker = marker.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command_marker(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("command-ran")).ok()
    }

    /// Runs `deploy` with the kubeconfig and the given extra arguments.
    async fn deploy(&self, config: &Path, extra: &[&str]) -> (Run, Duration) {
        let kubeconfig = self.kubeconfig.to_str().unwrap().to_owned();
        let mut args = vec![
            "deploy",
            "--config",
            config.to_str().unwrap(),
            "--environment",
            "staging",
            "--sha",
            SHA,
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend_from_slice(extra);
        run(&args, &[]).await
    }

    fn objects(&self) -> usize {
        self.sim.object_count()
    }
}

/// The binary under test, copied once per test process. Worktrees that share one target
/// directory build to the same `target/debug/jisu-deploy` (cargo hashes path packages
/// relative to the workspace), so another worktree's build can replace it mid-run.
pub(crate) fn binary() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let worktree = repo_root()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let copy = dir.join(format!("jisu-deploy-under-test-{worktree}"));
        let partial = dir.join(format!(
            "jisu-deploy-under-test-{worktree}.{}",
            std::process::id()
        ));
        std::fs::copy(env!("CARGO_BIN_EXE_jisu-deploy"), &partial).unwrap();
        std::fs::rename(&partial, &copy).unwrap();
        let probe = std::process::Command::new(&copy)
            .args(["deploy", "--help"])
            .output()
            .unwrap();
        assert!(
            probe.status.success(),
            "{} has no `deploy` command: another worktree's build replaced it; rerun the tests",
            env!("CARGO_BIN_EXE_jisu-deploy")
        );
        copy
    })
}

/// The binary, with a clean environment (PATH kept for the environment's command).
pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> (Run, Duration) {
    let mut command = tokio::process::Command::new(binary());
    command
        .env_clear()
        .current_dir(repo_root())
        .args(args)
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("deploy finishes within two minutes")
        .expect("the binary runs");
    (output.into(), started.elapsed())
}

const UNKNOWN_COMPONENT: &str = "database=ghcr.io/jisu/db@sha256:7777777777777777777777777777777777777777777777777777777777777777";

pub(crate) const IMAGES: [&str; 4] = [
    "--digests",
    "frontend=ghcr.io/jisu/platform@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "--digests",
    "backend=ghcr.io/jisu/platform@sha256:2222222222222222222222222222222222222222222222222222222222222222",
];

/// A tiny HTTP server answering every request with `status`; returns its URL and the
/// request lines it saw.
pub(crate) async fn http_server(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // By name: an environment URL names an Ingress host, which cannot be an IP address.
    let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                let reply = format!(
                    "HTTP/1.1 {status} Status\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

pub(crate) fn assert_failed_with(run: &Run, code: i32, needles: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "`{needle}` not in stderr:\n{}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_deploy_applies_pinned_labelled_objects_waits_checks_and_runs_the_command() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, requests) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let (run, _) = cluster.deploy(&config, &IMAGES).await;
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stdout
            .contains("Run of push to branch `develop` at 3f2c1e0: succeeded"),
        "{}",
        run.stdout
    );

    let backend = cluster
        .sim
        .object("Deployment", NS, "backend")
        .expect("backend applied");
    assert_eq!(
        backend["spec"]["template"]["spec"]["containers"][0]["image"],
        BACKEND
    );
    for labels in [
        &backend["metadata"]["labels"],
        &backend["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["app.kubernetes.io/managed-by"], "jisu-deploy");
        assert_eq!(labels["app.kubernetes.io/version"], SHA);
        assert_eq!(labels["app.kubernetes.io/part-of"], "jisu");
    }
    let managers: Vec<&str> = backend["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"jisu-deploy"), "{managers:?}");
    let frontend = cluster.sim.object("Deployment", NS, "frontend").unwrap();
    assert_eq!(
        frontend["spec"]["template"]["spec"]["containers"][0]["image"],
        FRONTEND
    );
    // Replicas go to the HPA minimum; the Deployment has none of its own in the manifest.
    assert_eq!(
        cluster
            .sim
            .object("HorizontalPodAutoscaler", NS, "backend")
            .unwrap()["spec"]["minReplicas"],
        2
    );
    assert!(
        cluster
            .sim
            .object("ConfigMap", NS, "backend-config")
            .is_some()
    );
    let hash = &backend["spec"]["template"]["metadata"]["annotations"]["jisu.dev/config-hash"];
    assert!(
        hash.as_str().is_some_and(|h| h.len() == 32),
        "config hash on the pod template: {hash}"
    );
    // The Ingress host is the environment URL's; staging has no preview URL, so the
    // preview Ingress is left out.
    let ingress = cluster
        .sim
        .object("Ingress", NS, "jisu")
        .expect("Ingress applied");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "localhost");
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "localhost");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "jisu-tls");
    assert!(cluster.sim.object("Ingress", NS, "jisu-preview").is_none());
    assert_eq!(
        backend["status"]["availableReplicas"], 1,
        "a new Deployment starts at 1; the HPA raises it"
    );

    assert!(
        run.stderr
            .contains("Deployment/backend: rolled out, 1/1 replicas available"),
        "{}",
        run.stderr
    );
    assert_eq!(
        requests.lock().unwrap().as_slice(),
        ["GET /api/health HTTP/1.1"]
    );
    assert_eq!(
        cluster.command_marker().as_deref().map(str::trim),
        Some(url.as_str()),
        "JISU_ENV_URL given to the command"
    );

    // The same deploy again changes nothing; a dry run of a new image shows the change
    // and writes nothing.
    let (again, _) = cluster
        .deploy(&config, &[&IMAGES[..], &["--dry-run"]].concat())
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("= Deployment/backend (unchanged)"),
        "{}",
        again.stdout
    );
    let new_backend = format!("backend={}", BACKEND.replace("2222", "3333"));
    let (dry, _) = cluster
        .deploy(
            &config,
            &[
                "--digests",
                IMAGES[1],
                "--digests",
                &new_backend,
                "--dry-run",
            ],
        )
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("~ Deployment/backend (configured)"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains(&format!(
            ".spec.template.spec.containers[0].image: \"{BACKEND}\" -> "
        )),
        "{}",
        dry.stdout
    );
    assert_eq!(
        cluster.sim.object("Deployment", NS, "backend").unwrap()["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        BACKEND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_http_checks_fail_the_deploy_after_their_retries() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, requests) = http_server(503).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let (run, _) = cluster
        .deploy(
            &config,
            &[&IMAGES[..], &["--check-interval", "0s"]].concat(),
        )
        .await;
    assert_failed_with(
        &run,
        1,
        &[
            "1 of 1 HTTP check(s) failed",
            "`backend health`",
            "HTTP 503 (expected 200)",
        ],
    );
    assert_eq!(requests.lock().unwrap().len(), 3, "three attempts");
    assert!(
        cluster.command_marker().is_none(),
        "the command runs only after the checks pass"
    );
    assert!(
        run.stdout
            .contains("Run of push to branch `develop` at 3f2c1e0: failed"),
        "{}",
        run.stdout
    );
}

/// Deploys a backend image whose name scripts a failure in kube-sim, under a 60 s deadline.
async fn failing_backend(image: &str) -> (Cluster, Run, Duration) {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let backend = format!(
        "backend={image}@sha256:4444444444444444444444444444444444444444444444444444444444444444"
    );
    let (run, took) = cluster
        .deploy(
            &config,
            &[
                "--digests",
                IMAGES[1],
                "--digests",
                &backend,
                "--timeout",
                "60s",
            ],
        )
        .await;
    (cluster, run, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_fails_the_deploy_fast_with_its_own_message() {
    let (cluster, run, took) = failing_backend("ghcr.io/jisu/crashloop").await;
    assert_failed_with(
        &run,
        1,
        &[
            "Deployment/backend: rollout failed",
            "CrashLoopBackOff",
            "container `backend`",
            "last exit code 1",
        ],
    );
    assert!(
        took < Duration::from_secs(30),
        "failed fast, not at the deadline: {took:?}"
    );
    assert!(cluster.command_marker().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpullable_image_fails_the_deploy_fast() {
    let (_cluster, run, took) = failing_backend("ghcr.io/jisu/imagepullbackoff").await;
    assert_failed_with(
        &run,
        1,
        &["Deployment/backend: rollout failed", "container `backend`"],
    );
    assert!(
        run.stderr.contains("ErrImagePull") || run.stderr.contains("ImagePullBackOff"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ready_pod_fails_at_the_deadline_with_the_pods_reason() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let backend = format!("backend=ghcr.io/jisu/neverready@sha256:{}", "5".repeat(64));
    let (run, took) = cluster
        .deploy(
            &config,
            &[
                "--digests",
                IMAGES[1],
                "--digests",
                &backend,
                "--timeout",
                "4s",
            ],
        )
        .await;
    assert_failed_with(
        &run,
        1,
        &[
            "rollout not complete after 4s",
            "Deployment/backend: 0 of 1 updated replicas are available",
            "ContainersNotReady",
        ],
    );
    assert!(
        !run.stderr.contains("Deployment/frontend:")
            || run.stderr.contains("Deployment/frontend: rolled out"),
        "{}",
        run.stderr
    );
    assert!(
        took < Duration::from_secs(15),
        "the deadline holds: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_is_resumed() {
    deploy_while_watches_drop(SimOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_after_its_history_expired_relists() {
    // Two retained events: a resumed watch's resourceVersion is soon too old (410 Gone).
    let run = deploy_while_watches_drop(SimOptions::default().watch_history(2)).await;
    assert!(
        run.stderr.contains("watch interrupted; resuming"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("too old resource version"),
        "{}",
        run.stderr
    );
}

/// Deploys while every watch is cut every 50 ms: pods become ready 3 simulated seconds
/// in (300 ms here), so the completing events arrive on resumed watches.
async fn deploy_while_watches_drop(options: SimOptions) -> Run {
    let options = options.time_scale(10.0).image(
        "ghcr.io/jisu/platform",
        ImageBehavior::Ready {
            after: Duration::from_secs(3),
        },
    );
    let cluster = Arc::new(cluster(options).await);
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let cutter = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                cluster.sim.faults().drop_watches();
            }
        })
    };
    let (run, _) = cluster.deploy(&config, &IMAGES).await;
    cutter.abort();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("Deployment/backend: rolled out"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Deployment/frontend: rolled out"),
        "{}",
        run.stderr
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_owned_by_another_manager_is_a_conflict_unless_forced() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    assert_eq!(cluster.deploy(&config, &IMAGES).await.0.code, 0);
    // Someone takes over a field the manifests set (revisionHistoryLimit: 5).
    let deployments: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    let edit = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"}, "spec": {"revisionHistoryLimit": 2}});
    deployments
        .patch(
            "backend",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(&edit),
        )
        .await
        .unwrap();

    let new_frontend = format!("frontend={}", FRONTEND.replace("1111", "6666"));
    let (run, _) = cluster
        .deploy(
            &config,
            &["--digests", &new_frontend, "--digests", IMAGES[3]],
        )
        .await;
    assert_failed_with(
        &run,
        1,
        &[
            "Deployment/backend: server-side apply conflicts",
            "field .spec.revisionHistoryLimit is owned by manager \"kubectl-edit\"",
            "--force-conflicts",
        ],
    );
    // The dry run caught it before any write: not even the frontend changed.
    assert_eq!(
        cluster.sim.object("Deployment", NS, "frontend").unwrap()["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        FRONTEND
    );
    assert_eq!(
        cluster.sim.object("Deployment", NS, "backend").unwrap()["spec"]["revisionHistoryLimit"],
        2
    );

    let (forced, _) = cluster
        .deploy(
            &config,
            &[
                "--digests",
                &new_frontend,
                "--digests",
                IMAGES[3],
                "--force-conflicts",
            ],
        )
        .await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(
        cluster.sim.object("Deployment", NS, "backend").unwrap()["spec"]["revisionHistoryLimit"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_500_503_and_429_are_retried() {
    let options = SimOptions::default()
        .time_scale(20.0)
        .fault(FaultRule::error(500).verb("patch").times(2))
        .fault(FaultRule::error(503).verb("get").times(2))
        .fault(FaultRule::too_many_requests(1).verb("list").times(2))
        .fault(FaultRule::error(500).verb("watch").times(1));
    let cluster = cluster(options).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let (run, _) = cluster.deploy(&config, &IMAGES).await;
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("transient API error; retrying"),
        "{}",
        run.stderr
    );
    assert!(cluster.sim.object("Deployment", NS, "backend").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_what_the_manifests_dropped() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    assert_eq!(cluster.deploy(&config, &IMAGES).await.0.code, 0);
    // A ConfigMap jisu-deploy applied earlier, and one it did not.
    let configmaps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap")),
    );
    for (name, manager) in [("old-config", "jisu-deploy"), ("someone-elses", "helm")] {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "jisu-deploy"}}});
        configmaps
            .patch(name, &PatchParams::apply(manager), &Patch::Apply(&object))
            .await
            .unwrap();
    }
    let (run, _) = cluster
        .deploy(&config, &[&IMAGES[..], &["--prune"]].concat())
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(cluster.sim.object("ConfigMap", NS, "old-config").is_none());
    assert!(
        cluster
            .sim
            .object("ConfigMap", NS, "someone-elses")
            .is_some()
    );
    assert!(
        cluster
            .sim
            .object("ConfigMap", NS, "backend-config")
            .is_some()
    );
}

/// Runs a deploy that must be refused as bad input, and checks the server is untouched.
async fn refused(manifests: &str, extra: &[&str], needles: &[&str]) {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = cluster.pipeline("http://localhost:9", manifests, "");
    let before = cluster.objects();
    let (run, _) = cluster.deploy(&config, extra).await;
    assert_failed_with(&run, 2, needles);
    assert_eq!(cluster.objects(), before, "nothing was created");
    for (kind, name) in [
        ("Deployment", "backend"),
        ("ConfigMap", "before-the-broken-file"),
        ("ConfigMap", "before-the-mutable-image"),
        ("ConfigMap", "backend-config"),
    ] {
        assert!(
            cluster.sim.object(kind, NS, name).is_none(),
            "{kind}/{name} exists"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_manifest_is_refused_before_anything_is_applied() {
    refused(
        "tests/it/deploy/malformed",
        &IMAGES,
        &["tests/it/deploy/malformed/10-broken.yaml", "not valid YAML"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_a_mutable_tag_is_refused_before_anything_is_applied() {
    refused(
        "tests/it/deploy/mutable",
        &IMAGES,
        &[
            "tests/it/deploy/mutable/10-backend.yaml",
            "Deployment/backend",
            "log-shipper",
            "mutable tag `latest`",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_before_anything_is_applied() {
    refused(
        "k8s/app",
        &[
            "--digests",
            "backend=ghcr.io/jisu/platform:latest",
            "--digests",
            IMAGES[1],
        ],
        &["--digests", "mutable tag", "give the digest"],
    )
    .await;
    refused(
        "k8s/app",
        &["--digests", UNKNOWN_COMPONENT, "--digests", IMAGES[1]],
        &["`database` is not a component"],
    )
    .await;
    refused(
        "k8s/app",
        &[
            "--context",
            "nope",
            "--digests",
            IMAGES[1],
            "--digests",
            IMAGES[3],
        ],
        &["context `nope` not found", "kube-sim"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_environment_is_refused() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = cluster.pipeline("http://localhost:9", "k8s/app", "");
    let before = cluster.objects();
    let kubeconfig = cluster.kubeconfig.to_str().unwrap();
    let base = [
        "deploy",
        "--config",
        config.to_str().unwrap(),
        "--sha",
        SHA,
        "--kubeconfig",
        kubeconfig,
        IMAGES[0],
        IMAGES[1],
        IMAGES[2],
        IMAGES[3],
    ];
    let (unknown, _) = run(&[&base[..], &["--environment", "qa"]].concat(), &[]).await;
    assert_failed_with(&unknown, 2, &["no environment `qa`", "production, staging"]);
    assert_eq!(cluster.objects(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_kubeconfig_is_bad_input() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let config = cluster.pipeline("http://localhost:9", "k8s/app", "");
    let config = config.to_str().unwrap();
    let before = cluster.objects();
    let base = [
        "deploy",
        "--config",
        config,
        "--environment",
        "staging",
        "--sha",
        SHA,
        IMAGES[0],
        IMAGES[1],
        IMAGES[2],
        IMAGES[3],
    ];
    let (none, _) = run(&base, &[]).await;
    assert_failed_with(&none, 2, &["no cluster to deploy to", "--kubeconfig"]);
    let (missing, _) = run(
        &[&base[..], &["--kubeconfig", "/nonexistent/kubeconfig"]].concat(),
        &[],
    )
    .await;
    assert_failed_with(&missing, 2, &["/nonexistent/kubeconfig does not exist"]);
    let broken = cluster.dir.path().join("broken");
    std::fs::write(&broken, "clusters: [this is: not, a kubeconfig").unwrap();
    let (broken_run, _) = run(&base, &[("KUBECONFIG", broken.to_str().unwrap())]).await;
    assert_failed_with(&broken_run, 2, &["unusable kubeconfig"]);
    // The action input carries the content; its token is masked before anything else.
    let content = cluster
        .sim
        .kubeconfig_yaml()
        .replace("token: kube-sim", "token: s3cr3t-t0ken");
    let (input, _) = run(
        &[&base[..], &["--dry-run"]].concat(),
        &[("INPUT_KUBECONFIG", &content), ("GITHUB_ACTIONS", "true")],
    )
    .await;
    assert_eq!(input.code, 0, "{}", input.stderr);
    assert!(
        input.stdout.starts_with("::add-mask::s3cr3t-t0ken"),
        "{}",
        input.stdout
    );
    assert_eq!(cluster.objects(), before, "a dry run creates nothing");
}

/// How long after a Deployment becomes complete the tool notices, next to
/// `kubectl rollout status` watching the same Deployment in the same run. "Complete" is
/// read straight from the simulator's store (no HTTP), polled every millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored"]
async fn benchmark_rollout_notice_latency_against_kubectl() {
    use jisu_deploy::kube::rollout::{Progress, deployment_progress};
    use tokio::io::AsyncBufReadExt;

    let cluster = Arc::new(cluster(SimOptions::default().time_scale(1.0)).await);
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_owned();
    // JISU_BENCH_BIN points at another build (e.g. target/release/jisu-deploy).
    let bin = std::env::var_os("JISU_BENCH_BIN").map_or_else(|| binary().to_owned(), PathBuf::from);
    println!("binary: {}", bin.display());
    let mut tool = Vec::new();
    let mut kubectl = Vec::new();
    for round in 0..11u32 {
        let image = format!("ghcr.io/jisu/platform@sha256:{:064x}", 0xbe00 + round);
        let backend = format!("backend={image}");
        // Wait for completion of this round's template, read from the store directly.
        let completed = {
            let cluster = cluster.clone();
            let image = image.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(object) = cluster.sim.object("Deployment", NS, "backend") {
                        let same = object["spec"]["template"]["spec"]["containers"][0]["image"]
                            == image.as_str();
                        let deployment = serde_json::from_value(object).unwrap();
                        if same && deployment_progress(&deployment) == Progress::Complete {
                            return Instant::now();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let mut deploy = tokio::process::Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(repo_root())
            .args([
                "deploy",
                "--config",
                config.to_str().unwrap(),
                "--environment",
                "staging",
                "--sha",
                SHA,
                "--kubeconfig",
                &kubeconfig,
            ])
            .args(["--digests", IMAGES[1], "--digests", &backend])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(deploy.stderr.take().unwrap()).lines();
        let mut kubectl_child = None;
        let mut tool_saw = None;
        let mut log = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push(line.clone());
            if line.contains("waiting for") && kubectl_child.is_none() {
                // Applied: kubectl starts watching the same Deployment now.
                let mut child = tokio::process::Command::new("kubectl")
                    .args([
                        "--kubeconfig",
                        &kubeconfig,
                        "-n",
                        NS,
                        "rollout",
                        "status",
                        "deployment/backend",
                        "--timeout",
                        "60s",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("kubectl on PATH");
                let out = child.stdout.take().unwrap();
                kubectl_child = Some(tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(out).lines();
                    while let Some(line) = lines.next_line().await.unwrap() {
                        if line.contains("successfully rolled out") {
                            let at = Instant::now();
                            child.wait().await.unwrap();
                            return Some(at);
                        }
                    }
                    None
                }));
            }
            if line.contains("Deployment/backend: rolled out") {
                tool_saw = Some(Instant::now());
            }
        }
        assert!(deploy.wait().await.unwrap().success(), "{}", log.join("\n"));
        let done = tokio::time::timeout(Duration::from_secs(60), completed)
            .await
            .unwrap()
            .unwrap();
        let kubectl_saw = kubectl_child
            .expect("kubectl started")
            .await
            .unwrap()
            .expect("kubectl saw it");
        // Signed: the store is polled every millisecond, so a watcher can beat the poller.
        let ms = |at: Instant| match at.checked_duration_since(done) {
            Some(after) => after.as_secs_f64() * 1000.0,
            None => -(done.duration_since(at).as_secs_f64() * 1000.0),
        };
        let tool_ms = ms(tool_saw.expect("tool saw it"));
        let kubectl_ms = ms(kubectl_saw);
        println!(
            "round {round}: jisu-deploy noticed after {tool_ms:.1} ms, kubectl rollout status after {kubectl_ms:.1} ms"
        );
        tool.push(tool_ms);
        kubectl.push(kubectl_ms);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (tool_max, kubectl_max) = (
        tool.iter().cloned().fold(f64::MIN, f64::max),
        kubectl.iter().cloned().fold(f64::MIN, f64::max),
    );
    println!(
        "notice latency after completion, {} rounds: jisu-deploy median {:.1} ms (max {tool_max:.1}); kubectl rollout status median {:.1} ms (max {kubectl_max:.1})",
        tool.len(),
        median(&mut tool),
        median(&mut kubectl)
    );
}

/// A workspace of its own whose manifests name images on a local registry (the
/// placeholder is `<registry>/<repository>:<component>`, as for ghcr.io in k8s/app).
fn registry_workspace(cluster: &Cluster, registry: &str) -> (PathBuf, PathBuf) {
    let workspace = cluster.dir.path().join("workspace");
    std::fs::create_dir_all(workspace.join("app")).unwrap();
    for component in ["frontend", "backend"] {
        std::fs::create_dir_all(workspace.join(component)).unwrap();
        std::fs::write(
            workspace.join(component).join("Dockerfile"),
            "FROM scratch\n",
        )
        .unwrap();
        let manifest =
            std::fs::read_to_string(repo_root().join(format!("k8s/app/{component}.yaml"))).unwrap();
        let manifest = manifest.replace(
            "ghcr.io/jisu/platform:",
            &format!("{registry}/jisu/platform:"),
        );
        std::fs::write(
            workspace.join("app").join(format!("{component}.yaml")),
            manifest,
        )
        .unwrap();
    }
    let config = workspace.join("pipeline.yml");
    std::fs::write(
        &config,
        format!(
            r#"version: 1
images: {{registry: "{registry}", scheme: component-prefix, repository: jisu/platform}}
components:
  frontend: {{context: frontend, dockerfile: frontend/Dockerfile, port: 80}}
  backend: {{context: backend, dockerfile: backend/Dockerfile, port: 8000}}
environments:
  staging: {{branch: develop, namespace: {NS}, url: "http://127.0.0.1:9", strategy: rolling, manifests: app}}
"#
        ),
    )
    .unwrap();
    (workspace, config)
}

/// Pushes a minimal OCI image (empty config, no layers) under `tag`; returns its digest.
async fn push_minimal_image(
    client: &jisu_deploy::oci::RegistryClient,
    registry: &str,
    tag: &str,
    label: &str,
) -> String {
    use jisu_deploy::oci::{Digest, Reference};
    let config = bytes::Bytes::from(format!(
        r#"{{"config":{{"Labels":{{"component":"{label}"}}}}}}"#
    ));
    let config_digest = client
        .push_blob("jisu/platform", config.clone())
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [],
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let reference = Reference::parse(&format!("{registry}/jisu/platform:{tag}")).unwrap();
    client
        .put_manifest(
            &reference,
            bytes.clone(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .unwrap();
    Digest::of(&bytes).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha_tags_are_resolved_to_digests_on_the_registry_and_a_missing_one_is_refused() {
    use jisu_deploy::oci::{ClientOptions, RegistryClient};
    let registry =
        tokio::task::spawn_blocking(crate::support::registry_server::RegistryServer::start)
            .await
            .unwrap();
    let host = registry.host();
    let client = RegistryClient::new(
        &host,
        ClientOptions {
            allow_http: true,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (workspace, config) = registry_workspace(&cluster, &host);
    let frontend = push_minimal_image(&client, &host, &format!("frontend-{SHA}"), "frontend").await;
    let backend = push_minimal_image(&client, &host, &format!("backend-{SHA}"), "backend").await;
    let kubeconfig = cluster.kubeconfig.to_str().unwrap();
    let base = [
        "deploy",
        "--workspace",
        workspace.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--environment",
        "staging",
        "--kubeconfig",
        kubeconfig,
        "--registry-allow-http",
    ];

    // Another commit was never pushed: refused as bad input, nothing applied.
    let other = "0123456789abcdef0123456789abcdef01234567";
    let (missing, _) = run(&[&base[..], &["--sha", other]].concat(), &[]).await;
    assert_failed_with(
        &missing,
        2,
        &[
            &format!("backend: no image {host}/jisu/platform:backend-{other}"),
            &format!("frontend: no image {host}/jisu/platform:frontend-{other}"),
        ],
    );
    assert!(cluster.sim.object("Deployment", NS, "backend").is_none());

    let (deployed, _) = run(&[&base[..], &["--sha", SHA]].concat(), &[]).await;
    assert_eq!(deployed.code, 0, "{}", deployed.stderr);
    let image = |name: &str| {
        cluster.sim.object("Deployment", NS, name).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(
        image("backend"),
        format!("{host}/jisu/platform@{backend}").as_str()
    );
    assert_eq!(
        image("frontend"),
        format!("{host}/jisu/platform@{frontend}").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_progress_deadline_fails_the_deploy() {
    // 600 simulated seconds (backend's progressDeadlineSeconds) pass in 3 real ones.
    let cluster = cluster(SimOptions::default().time_scale(200.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let backend = format!("backend=ghcr.io/jisu/neverready@sha256:{}", "8".repeat(64));
    let (run, took) = cluster
        .deploy(
            &config,
            &[
                "--digests",
                IMAGES[1],
                "--digests",
                &backend,
                "--timeout",
                "60s",
            ],
        )
        .await;
    assert_failed_with(
        &run,
        1,
        &["Deployment/backend: deployment \"backend\" exceeded its progress deadline"],
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// The API server goes away while the tool waits for a rollout that cannot finish: the
/// tool says so after a few failed reconnects (counted in its log), well before the
/// rollout deadline, and does not blame the Pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_gone_mid_rollout_is_reported_unreachable_after_a_few_attempts() {
    let cluster = cluster(SimOptions::default().time_scale(20.0)).await;
    let (url, _) = http_server(200).await;
    let config = cluster.pipeline(&url, "k8s/app", "");
    let Cluster {
        sim,
        dir: _dir,
        kubeconfig,
        ..
    } = cluster;
    let server = format!("{}/", sim.url());
    let backend = format!("backend=ghcr.io/jisu/neverready@sha256:{}", "9".repeat(64));
    let deploy = tokio::spawn(async move {
        run(
            &[
                "deploy",
                "--config",
                config.to_str().unwrap(),
                "--environment",
                "staging",
                "--sha",
                SHA,
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--digests",
                IMAGES[1],
                "--digests",
                &backend,
                "--timeout",
                "100s",
            ],
            &[],
        )
        .await
    });
    // Applied: the tool is waiting for the never-ready backend now.
    while sim.object("Deployment", NS, "backend").is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(sim);
    let (run, _) = deploy.await.unwrap();
    assert_failed_with(
        &run,
        1,
        &[
            &format!("the API server at {server} is unreachable"),
            "attempts in a row to reach it failed",
        ],
    );
    assert!(
        !run.stderr.contains("rollout not complete"),
        "{}",
        run.stderr
    );
    // Two watches (Deployments, Pods), each giving up at its fifth failure in a row.
    let attempts = run.stderr.matches("watch interrupted; resuming").count();
    assert!(
        (1..=10).contains(&attempts),
        "{attempts} failed attempts logged:\n{}",
        run.stderr
    );
}
