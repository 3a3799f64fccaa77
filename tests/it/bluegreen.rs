//! Blue-green production deploys against kube-sim with the real binary and the platform's
//! own manifests (`k8s/app`): the first deploy, switches back and forth, an idle color that
//! never gets ready, failing preview checks, a verification that fails after the switch
//! (traffic goes back), and Services that disagree on the live color.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::{FaultRule, ImageBehavior, KubeSim, SimOptions};
use serde_json::json;

use crate::support::{Run, repo_root};

const NS: &str = "jisu-prod";
const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const ROUTED: [&str; 2] = ["backend", "frontend"];

/// Digest-pinned images for both components; `tag` tells one deploy's from another's, and
/// an image whose repository names a kube-sim behaviour (`crashing`) gets it.
fn images(tag: u8, backend_repository: &str) -> Vec<String> {
    let digest = |n: u8| format!("{:02x}", n).repeat(32);
    vec![
        "--digests".into(),
        format!("frontend=ghcr.io/jisu/platform@sha256:{}", digest(tag)),
        "--digests".into(),
        format!("backend={backend_repository}@sha256:{}", digest(tag + 1)),
    ]
}

/// The invariant every scenario is watched for, on every change the simulator stores: no
/// routed Service ever selects a color with zero ready Pods, and one that has served never
/// stops (an adopted, un-colored Service included).
#[derive(Default)]
struct Invariant {
    /// Routed Service -> its selector.
    services: BTreeMap<String, BTreeMap<String, String>>,
    /// Pod -> (labels, ready and not being deleted).
    pods: BTreeMap<String, (BTreeMap<String, String>, bool)>,
    /// Changes seen.
    changes: usize,
    /// Services in violation now (a violation is recorded when one enters it).
    violating: std::collections::BTreeSet<String>,
    /// Services that have had a ready Pod.
    served: std::collections::BTreeSet<String>,
    /// Each violation: the change, the Service and what it selected.
    violations: Vec<String>,
}

impl Invariant {
    fn see(&mut self, change: &kube_sim::StoredChange) {
        if change.namespace != NS {
            return;
        }
        self.changes += 1;
        let labels = |pointer: &str| -> BTreeMap<String, String> {
            change
                .object
                .pointer(pointer)
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let deleted = matches!(change.verb, kube_sim::EventType::Deleted);
        match change.kind {
            "Service" if ROUTED.contains(&change.name.as_str()) => {
                if deleted {
                    self.services.remove(&change.name);
                } else {
                    self.services
                        .insert(change.name.clone(), labels("/spec/selector"));
                }
            }
            "Pod" => {
                let ready = !deleted
                    && change
                        .object
                        .pointer("/metadata/deletionTimestamp")
                        .is_none()
                    && change
                        .object
                        .pointer("/status/conditions")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        });
                self.pods
                    .insert(change.name.clone(), (labels("/metadata/labels"), ready));
            }
            _ => return,
        }
        for (service, selector) in &self.services {
            // An un-colored selector (before the first switch, or an adopted Service)
            // must keep serving once it has served.
            let color = selector.get("color").map_or("no color", String::as_str);
            let ready = self
                .pods
                .values()
                .filter(|(labels, ready)| {
                    *ready && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .count();
            let watched = selector.contains_key("color") || self.served.contains(service);
            if ready > 0 {
                self.violating.remove(service);
                self.served.insert(service.clone());
            } else if watched && self.violating.insert(service.clone()) {
                self.violations.push(format!(
                    "rv {}: {} {}/{} left Service {service} selecting {color} with no ready Pod",
                    change.resource_version, change.kind, change.namespace, change.name
                ));
            }
        }
    }
}

struct Bed {
    invariant: std::sync::Arc<std::sync::Mutex<Invariant>>,
    sim: KubeSim,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    client: kube::Client,
}

async fn bed() -> Bed {
    jisu_deploy::tls::ensure_provider();
    let options = SimOptions::default().time_scale(50.0).image(
        "crashing",
        ImageBehavior::CrashLoop {
            run_for: Duration::from_secs(2),
        },
    );
    let sim = KubeSim::start(options).await.expect("kube-sim starts");
    let invariant = std::sync::Arc::new(std::sync::Mutex::new(Invariant::default()));
    let watched = invariant.clone();
    sim.on_change(move |change| watched.lock().unwrap().see(change));
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
    Bed {
        invariant,
        sim,
        dir,
        kubeconfig,
        client,
    }
}

impl Bed {
    /// A pipeline file whose production environment is blue-green on `k8s/app`, with its
    /// public URL and preview URL served by the given check servers.
    fn pipeline(&self, public: &str, preview: &str) -> PathBuf {
        self.pipeline_with("blue-green", public, preview)
    }

    /// The same pipeline file with another strategy for production.
    fn pipeline_with(&self, strategy: &str, public: &str, preview: &str) -> PathBuf {
        let path = self.dir.path().join("pipeline.yml");
        let blue_green = if strategy == "blue-green" {
            format!(
                "    blue_green: {{preview_url: {preview}, verify_for: 1s, keep_previous_for: 1h}}\n"
            )
        } else {
            String::new()
        };
        std::fs::write(
            &path,
            format!(
                r#"version: 1
images: {{registry: ghcr.io, scheme: component-prefix, repository: jisu/platform}}
components:
  frontend: {{context: examples/jisu/frontend, dockerfile: examples/jisu/frontend/Dockerfile, port: 80}}
  backend: {{context: examples/jisu/backend, dockerfile: examples/jisu/backend/Dockerfile, port: 8000}}
environments:
  production:
    branch: main
    namespace: {NS}
    url: {public}
    strategy: {strategy}
    manifests: k8s/app
    rollout_timeout: 2m
    checks:
      - {{name: backend health, url: /api/health, retries: 2, timeout: 2s}}
{blue_green}"#
            ),
        )
        .unwrap();
        path
    }

    async fn deploy(&self, config: &Path, images: &[String]) -> Run {
        let mut args: Vec<String> = ["deploy", "--sha", SHA]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend_from_slice(images);
        self.jisu(config, args).await
    }

    /// `status --output json`, parsed.
    async fn status(&self, config: &Path) -> serde_json::Value {
        let args = ["status", "--output", "json"].map(String::from).to_vec();
        let run = self.jisu(config, args).await;
        assert_code(&run, 0);
        serde_json::from_str(&run.stdout).unwrap()
    }

    async fn rollback(&self, config: &Path) -> Run {
        self.jisu(config, vec!["rollback".to_owned()]).await
    }

    /// The binary with `args`, the production environment, the kubeconfig and a short
    /// check interval.
    async fn jisu(&self, config: &Path, args: Vec<String>) -> Run {
        let mut command = self.command(config, args);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .expect("deploy finishes within two minutes")
            .expect("the binary runs");
        output.into()
    }

    /// The command line [`Bed::jisu`] runs, not started. A killed run's lock stays claimed
    /// for `--lock-lease` (2 s here), so the next run waits that long at most.
    fn command(&self, config: &Path, args: Vec<String>) -> tokio::process::Command {
        self.command_with(
            Path::new(env!("CARGO_BIN_EXE_jisu-deploy")),
            config,
            &self.kubeconfig,
            args,
        )
    }

    /// [`Bed::command`] with another binary and kubeconfig.
    fn command_with(
        &self,
        binary: &Path,
        config: &Path,
        kubeconfig: &Path,
        mut args: Vec<String>,
    ) -> tokio::process::Command {
        args.extend(
            [
                "--config",
                config.to_str().unwrap(),
                "--environment",
                "production",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        if args[0] != "status" {
            args.extend(["--check-interval", "100ms", "--lock-lease", "2s"].map(String::from));
        }
        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .current_dir(repo_root())
            .args(&args)
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        command
    }

    /// The color each routed Service selects.
    async fn routing(&self) -> BTreeMap<String, Option<String>> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), NS);
        let mut found = BTreeMap::new();
        for name in ROUTED {
            let color = services
                .get_opt(name)
                .await
                .unwrap()
                .and_then(|s| s.spec?.selector?.get("color").cloned());
            found.insert(name.to_owned(), color);
        }
        found
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        api.get_opt(name).await.unwrap()
    }

    /// The digest the colored backend Deployment runs.
    async fn backend_image(&self, color: &str) -> String {
        let deployment = self.deployment(&format!("backend-{color}")).await.unwrap();
        deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }
}

impl Bed {
    /// Forgets the violations so far: the test itself broke the routing on purpose.
    fn forgive_hand_edit(&self) {
        self.invariant.lock().unwrap().violations.clear();
    }
}

impl Drop for Bed {
    /// Every scenario ends by checking the invariant over all it changed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let invariant = self.invariant.lock().unwrap();
        assert!(invariant.changes > 0, "the invariant watched no change");
        assert!(
            invariant.violations.is_empty(),
            "{} violation(s) in {} changes:\n{}",
            invariant.violations.len(),
            invariant.changes,
            invariant.violations.join("\n")
        );
    }
}

/// A bed whose production environment had one deploy (blue is live), with checks that
/// pass, and its pipeline file.
async fn blue_is_live() -> (Bed, PathBuf) {
    let bed = bed().await;
    let (url, _) = crate::deploy::http_server(200).await;
    let config = bed.pipeline(&url, &url);
    assert_code(
        &bed.deploy(&config, &images(0x10, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    (bed, config)
}

fn all_on(color: &str) -> BTreeMap<String, Option<String>> {
    ROUTED
        .iter()
        .map(|s| ((*s).to_owned(), Some(color.to_owned())))
        .collect()
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_deploy_goes_blue_and_later_ones_alternate() {
    let bed = bed().await;
    let (url, _) = crate::deploy::http_server(200).await;
    let config = bed.pipeline(&url, &url);

    let first = bed
        .deploy(&config, &images(0x10, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&first, 0);
    assert_eq!(bed.routing().await, all_on("blue"));
    assert!(bed.deployment("backend-green").await.is_none());
    let preview: Api<Service> = Api::namespaced(bed.client.clone(), NS);
    let preview = preview.get("backend-preview").await.unwrap();
    assert_eq!(
        preview
            .spec
            .unwrap()
            .selector
            .unwrap()
            .get("color")
            .map(String::as_str),
        Some("blue")
    );
    // The public Ingress routes to the switched Services, the preview one to the idle
    // color's; both hosts come from the pipeline file's URLs.
    let ingresses: Api<Ingress> = Api::namespaced(bed.client.clone(), NS);
    for (name, services) in [
        ("jisu", ["backend", "frontend"]),
        ("jisu-preview", ["backend-preview", "frontend-preview"]),
    ] {
        let spec = ingresses.get(name).await.unwrap().spec.unwrap();
        let tls = spec.tls.unwrap();
        assert_eq!(tls[0].hosts.as_deref(), Some(&["localhost".to_owned()][..]));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("localhost"), "{name}");
        let backends: Vec<String> = rule
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| p.backend.service.as_ref().unwrap().name.clone())
            .collect();
        assert_eq!(backends, services, "{name}");
    }

    let second = bed
        .deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&second, 0);
    assert_eq!(bed.routing().await, all_on("green"));
    assert!(bed.backend_image("green").await.ends_with(&"21".repeat(32)));
    // The previous color keeps running, marked with when it may be scaled down.
    let blue = bed.deployment("backend-blue").await.unwrap();
    assert!(bed.backend_image("blue").await.ends_with(&"11".repeat(32)));
    let annotations = blue.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("jisu.dev/scale-down-after"),
        "{annotations:?}"
    );
    // The idle color was sized to what the live one ran.
    let live_replicas = blue.spec.unwrap().replicas;
    let green = bed.deployment("backend-green").await.unwrap();
    assert_eq!(green.spec.unwrap().replicas, live_replicas);

    let status = bed.status(&config).await;
    assert_eq!(status["live"], "green", "{status:#}");
    assert_eq!(status["previous"], "blue", "{status:#}");
    assert!(status["live_since"].is_string(), "{status:#}");
    assert_eq!(
        status["workloads"][0]["name"], "backend-green",
        "{status:#}"
    );
    assert_eq!(status["workloads"][0]["sha"], SHA, "{status:#}");
    assert!(status["previous_workloads"][0]["scale_down_after"].is_string());
    assert!(status["lock"].is_null(), "the lock is free: {status:#}");

    let third = bed
        .deploy(&config, &images(0x30, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&third, 0);
    assert_eq!(bed.routing().await, all_on("blue"));
    assert!(bed.backend_image("blue").await.ends_with(&"31".repeat(32)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_color_that_never_gets_ready_is_never_switched_to() {
    let (bed, config) = blue_is_live().await;
    let failed = bed
        .deploy(&config, &images(0x20, "ghcr.io/jisu/crashing"))
        .await;
    assert_code(&failed, 1);
    assert!(failed.stderr.contains("backend-green"), "{}", failed.stderr);
    assert_eq!(bed.routing().await, all_on("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_preview_checks_leave_traffic_where_it_is() {
    let bed = bed().await;
    let (good, _) = crate::deploy::http_server(200).await;
    let (bad, seen) = crate::deploy::http_server(500).await;
    assert_code(
        &bed.deploy(
            &bed.pipeline(&good, &good),
            &images(0x10, "ghcr.io/jisu/platform"),
        )
        .await,
        0,
    );
    let failed = bed
        .deploy(
            &bed.pipeline(&good, &bad),
            &images(0x20, "ghcr.io/jisu/platform"),
        )
        .await;
    assert_code(&failed, 1);
    assert!(!seen.lock().unwrap().is_empty(), "the preview was checked");
    assert_eq!(bed.routing().await, all_on("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_switches_traffic_back() {
    let bed = bed().await;
    let (good, _) = crate::deploy::http_server(200).await;
    let (bad, seen) = crate::deploy::http_server(503).await;
    assert_code(
        &bed.deploy(
            &bed.pipeline(&good, &good),
            &images(0x10, "ghcr.io/jisu/platform"),
        )
        .await,
        0,
    );
    // The idle color passes its preview checks; the public URL fails once traffic moved.
    let failed = bed
        .deploy(
            &bed.pipeline(&bad, &good),
            &images(0x20, "ghcr.io/jisu/platform"),
        )
        .await;
    assert_code(&failed, 1);
    assert!(
        !seen.lock().unwrap().is_empty(),
        "the public URL was checked"
    );
    assert!(
        failed
            .stderr
            .contains("verification after the switch to green failed")
            && failed.stderr.contains("switched back to blue"),
        "{}",
        failed.stderr
    );
    assert_eq!(bed.routing().await, all_on("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_that_disagree_stop_the_deploy_before_anything_changes() {
    let (bed, config) = blue_is_live().await;
    let services: Api<Service> = Api::namespaced(bed.client.clone(), NS);
    services
        .patch(
            "frontend",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"color": "green"}}})),
        )
        .await
        .unwrap();
    bed.forgive_hand_edit();
    let failed = bed
        .deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&failed, 2);
    assert!(
        failed.stderr.contains("disagree") && failed.stderr.contains("frontend: green"),
        "{}",
        failed.stderr
    );
    assert!(
        bed.deployment("backend-green").await.is_none(),
        "nothing was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_to_the_previous_color_warm_or_scaled_down() {
    let (bed, config) = blue_is_live().await;
    // Only one color exists: nothing to roll back to, nothing changed.
    let nothing = bed.rollback(&config).await;
    assert_code(&nothing, 2);
    assert!(
        nothing
            .stderr
            .contains("no other color to switch or roll back to"),
        "{}",
        nothing.stderr
    );
    assert_eq!(bed.routing().await, all_on("blue"));

    assert_code(
        &bed.deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    assert_eq!(bed.routing().await, all_on("green"));
    let started = std::time::Instant::now();
    let warm = bed.rollback(&config).await;
    let took = started.elapsed();
    assert_code(&warm, 0);
    assert_eq!(bed.routing().await, all_on("blue"));
    println!("rollback while warm (process start included): {took:?}");

    // Green is now the previous color; scale it down as a cleanup would.
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), NS);
    for name in ["backend-green", "frontend-green"] {
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await
            .unwrap();
    }
    let cold = bed.rollback(&config).await;
    assert_code(&cold, 0);
    assert!(
        cold.stderr.contains("scaled the previous color back up"),
        "{}",
        cold.stderr
    );
    assert_eq!(bed.routing().await, all_on("green"));
    let green = bed.deployment("backend-green").await.unwrap();
    assert!(green.spec.unwrap().replicas.unwrap_or(0) > 0);
}

/// Every step of a production deploy, in order (the plan's `deploy-production` job).
const STEPS: [&str; 10] = [
    "lock",
    "live-color",
    "deploy-idle",
    "wait",
    "preview-checks",
    "switch",
    "verify",
    "keep-previous",
    "record",
    "unlock",
];

impl Bed {
    /// Starts a deploy and kills it (SIGKILL) when it logs the start of `step`, or
    /// `after` that.
    async fn deploy_killed_at(
        &self,
        config: &Path,
        images: &[String],
        step: &str,
        after: Duration,
    ) {
        use tokio::io::AsyncBufReadExt as _;
        let mut args: Vec<String> = vec!["deploy".into(), "--sha".into(), SHA.into()];
        args.extend_from_slice(images);
        let mut command = self.command(config, args);
        command
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let marker = format!("step `deploy-production/{step}`");
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&marker) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(found, "the deploy never reached {step}");
        tokio::time::sleep(after).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// All routed Services on one color whose Pods are ready, the lock free, and no
    /// Deployment besides the two colors of each component.
    async fn assert_settled(&self, case: &str) {
        let routing = self.routing().await;
        let colors: std::collections::BTreeSet<_> = routing.values().cloned().collect();
        assert_eq!(colors.len(), 1, "{case}: Services disagree: {routing:?}");
        let color = colors
            .into_iter()
            .next()
            .flatten()
            .expect("a color is live");
        for base in ["backend", "frontend"] {
            let live = self.deployment(&format!("{base}-{color}")).await.unwrap();
            let ready = live.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            assert!(ready > 0, "{case}: {base}-{color} has no ready Pod");
        }
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), NS);
        for lease in leases.list(&Default::default()).await.unwrap() {
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .unwrap_or_default();
            assert!(
                holder.is_empty(),
                "{case}: the lock is still held by {holder}"
            );
        }
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        let names: Vec<String> = deployments
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect();
        for name in &names {
            assert!(
                [
                    "backend-blue",
                    "backend-green",
                    "frontend-blue",
                    "frontend-green"
                ]
                .contains(&name.as_str()),
                "{case}: orphaned Deployment {name} in {names:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_step_is_finished_or_undone_by_the_next_one() {
    let (bed, config) = blue_is_live().await;
    // At every step boundary, then at points inside the long steps.
    let mut cases: Vec<(&str, Duration)> = STEPS.iter().map(|s| (*s, Duration::ZERO)).collect();
    cases.extend([
        ("deploy-idle", Duration::from_millis(30)),
        ("wait", Duration::from_millis(150)),
        ("switch", Duration::from_millis(5)),
        ("verify", Duration::from_millis(300)),
    ]);
    for (n, (step, after)) in cases.into_iter().enumerate() {
        let tag = 0x20 + 2 * u8::try_from(n).unwrap();
        let images = images(tag, "ghcr.io/jisu/platform");
        bed.deploy_killed_at(&config, &images, step, after).await;
        let rerun = bed.deploy(&config, &images).await;
        let case = format!("killed at {step} (+{after:?})");
        assert_code(&rerun, 0);
        bed.assert_settled(&case).await;
        let live = bed.routing().await["backend"].clone().unwrap();
        assert!(
            bed.backend_image(&live)
                .await
                .ends_with(&format!("{:02x}", tag + 1).repeat(32)),
            "{case}: the re-run's images are live"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_left_halfway_is_undone_by_the_next_run() {
    let (bed, config) = blue_is_live().await;
    assert_code(
        &bed.deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    // Green is live; a killed switch back to blue had moved only the backend.
    let services: Api<Service> = Api::namespaced(bed.client.clone(), NS);
    services
        .patch(
            "backend",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"jisu.dev/switch": "green->blue@99999999999999-1"}},
                "spec": {"selector": {"color": "blue"}}
            })),
        )
        .await
        .unwrap();
    let rerun = bed
        .deploy(&config, &images(0x30, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&rerun, 0);
    assert!(
        rerun.stderr.contains("halfway through a switch"),
        "{}",
        rerun.stderr
    );
    // Undone back to green, then this deploy went to blue.
    assert_eq!(bed.routing().await, all_on("blue"));
    assert!(bed.backend_image("blue").await.ends_with(&"31".repeat(32)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_on_every_verb_leave_traffic_on_a_ready_color() {
    let (bed, config) = blue_is_live().await;
    let mut outcomes = Vec::new();
    for round in 0..6u8 {
        // One request in five, of every verb, fails: half with 500, half with 503.
        bed.sim.faults().add(FaultRule::error(500).probability(0.1));
        bed.sim.faults().add(FaultRule::error(503).probability(0.1));
        let run = bed
            .deploy(&config, &images(0x20 + 2 * round, "ghcr.io/jisu/platform"))
            .await;
        bed.sim.faults().clear();
        assert!(
            [0, 1].contains(&run.code),
            "round {round}: exit {}\n{}",
            run.code,
            run.stderr
        );
        outcomes.push(run.code);
        // Whatever happened, every routed Service selects a color with ready Pods.
        for (service, color) in bed.routing().await {
            let color = color.unwrap_or_else(|| panic!("round {round}: {service} has no color"));
            let live = bed.deployment(&format!("{service}-{color}")).await.unwrap();
            let ready = live.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            assert!(
                ready > 0,
                "round {round}: {service} selects {color}, which has no ready Pod"
            );
        }
        if run.code == 0 {
            let live = bed.routing().await["backend"].clone().unwrap();
            assert!(
                bed.backend_image(&live)
                    .await
                    .ends_with(&format!("{:02x}", 0x21 + 2 * round).repeat(32)),
                "round {round}: a successful deploy's images are live"
            );
        }
    }
    println!("deploys under 20% API faults: exit codes {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn un_colored_deployments_are_adopted_without_downtime() {
    let bed = bed().await;
    let (url, _) = crate::deploy::http_server(200).await;
    // Today's production: plain `frontend` and `backend`, deployed rolling.
    let rolling = bed.pipeline_with("rolling", &url, &url);
    assert_code(
        &bed.deploy(&rolling, &images(0x10, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    assert!(bed.deployment("backend").await.is_some());
    assert_eq!(
        bed.routing().await,
        ROUTED.iter().map(|s| ((*s).to_owned(), None)).collect()
    );
    // The first blue-green deploy creates the colors beside them and moves traffic.
    let blue_green = bed.pipeline(&url, &url);
    let first = bed
        .deploy(&blue_green, &images(0x20, "ghcr.io/jisu/platform"))
        .await;
    assert_code(&first, 0);
    assert_eq!(bed.routing().await, all_on("blue"));
    // The old Deployments are untouched (their selectors are immutable) and kept until the
    // rollback window has passed.
    let old = bed.deployment("backend").await.unwrap();
    assert!(
        !old.spec
            .clone()
            .unwrap()
            .selector
            .match_labels
            .unwrap()
            .contains_key("color"),
        "the old selector is never mutated"
    );
    assert!(
        old.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jisu.dev/scale-down-after")
    );
    let invariant = bed.invariant.lock().unwrap();
    assert!(
        invariant.served.contains("backend"),
        "the watch saw the adopted Service serve"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_no_switch_then_switch_is_a_manual_gate() {
    let (bed, config) = blue_is_live().await;
    let mut gated = images(0x20, "ghcr.io/jisu/platform");
    gated.push("--no-switch".into());
    let staged = bed.deploy(&config, &gated).await;
    assert_code(&staged, 0);
    assert!(staged.stdout.contains("--no-switch"), "{}", staged.stdout);
    // Green is up and checked beside blue; traffic has not moved.
    assert_eq!(bed.routing().await, all_on("blue"));
    assert!(bed.backend_image("green").await.ends_with(&"21".repeat(32)));
    let switched = bed.jisu(&config, vec!["switch".into()]).await;
    assert_code(&switched, 0);
    assert_eq!(bed.routing().await, all_on("green"));
    let blue = bed.deployment("backend-blue").await.unwrap();
    assert!(
        blue.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jisu.dev/scale-down-after")
    );
    // A rolling environment has nothing to switch.
    let rolling = bed.pipeline_with("rolling", "http://localhost:9", "http://localhost:9");
    let refused = bed.jisu(&rolling, vec!["switch".into()]).await;
    assert_code(&refused, 2);
    assert!(
        refused.stderr.contains("deploys rolling"),
        "{}",
        refused.stderr
    );
}

impl Bed {
    /// Moves the `scale-down-after` time of `deployments` into the past.
    async fn expire(&self, deployments: &[&str]) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        for name in deployments {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "jisu.dev/scale-down-after": "2020-01-01T00:00:00Z"
                }}})),
            )
            .await
            .unwrap();
        }
    }

    async fn hpa(
        &self,
        name: &str,
    ) -> Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> {
        let api: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
            Api::namespaced(self.client.clone(), NS);
        api.get_opt(name).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_scales_down_the_previous_color_only_past_its_time_and_rollback_restores_it() {
    let (bed, config) = blue_is_live().await;
    assert_code(
        &bed.deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    let hpa_before = bed.hpa("backend-blue").await.unwrap().spec.unwrap();
    // Inside the keep time: nothing changes.
    let early = bed.jisu(&config, vec!["cleanup".into()]).await;
    assert_code(&early, 0);
    let blue = bed.deployment("backend-blue").await.unwrap();
    assert_ne!(blue.spec.unwrap().replicas, Some(0));
    // Past it: the previous color goes to zero, its HPA lowered first; the live one stays.
    bed.expire(&["backend-blue", "frontend-blue"]).await;
    let due = bed.jisu(&config, vec!["cleanup".into()]).await;
    assert_code(&due, 0);
    for name in ["backend-blue", "frontend-blue"] {
        let deployment = bed.deployment(name).await.unwrap();
        assert_eq!(deployment.spec.unwrap().replicas, Some(0), "{name}");
    }
    let lowered = bed.hpa("backend-blue").await.unwrap();
    assert_eq!(lowered.spec.as_ref().unwrap().max_replicas, 1);
    assert!(
        lowered
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jisu.dev/held-max-replicas")
    );
    assert_eq!(bed.routing().await, all_on("green"));
    let green = bed.deployment("backend-green").await.unwrap();
    assert_ne!(green.spec.unwrap().replicas, Some(0));
    // A rollback brings blue back up with its HPA's bounds.
    assert_code(&bed.rollback(&config).await, 0);
    assert_eq!(bed.routing().await, all_on("blue"));
    let restored = bed.hpa("backend-blue").await.unwrap().spec.unwrap();
    assert_eq!(restored.min_replicas, hpa_before.min_replicas);
    assert_eq!(restored.max_replicas, hpa_before.max_replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_adopted_deployments_past_their_time() {
    let bed = bed().await;
    let (url, _) = crate::deploy::http_server(200).await;
    let rolling = bed.pipeline_with("rolling", &url, &url);
    assert_code(
        &bed.deploy(&rolling, &images(0x10, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    let config = bed.pipeline(&url, &url);
    assert_code(
        &bed.deploy(&config, &images(0x20, "ghcr.io/jisu/platform"))
            .await,
        0,
    );
    assert!(bed.hpa("backend").await.is_some());
    bed.expire(&["backend", "frontend"]).await;
    assert_code(&bed.jisu(&config, vec!["cleanup".into()]).await, 0);
    assert!(bed.deployment("backend").await.is_none());
    assert!(bed.deployment("frontend").await.is_none());
    assert!(bed.hpa("backend").await.is_none(), "its HPA went with it");
    assert_eq!(bed.routing().await, all_on("blue"));
    assert!(bed.deployment("backend-blue").await.is_some());
}

/// Figures for the closing note: the switch window for two Services, the wall time of a
/// warm `rollback` (process start included), and the API requests a switch makes, next to
/// the seed's way of switching (`kubectl rollout status` of each new Deployment, then one
/// `kubectl patch` per Service) on the same simulator. `JISU_BENCH_BIN` picks another build
/// (e.g. target/release/jisu-deploy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn benchmark_switch_window_rollback_time_and_requests() {
    use crate::support::counting_proxy::CountingProxy;
    let bed = bed().await;
    let (url, _) = crate::deploy::http_server(200).await;
    let config = bed.pipeline(&url, &url);
    let bin = std::env::var_os("JISU_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_jisu-deploy")),
        PathBuf::from,
    );
    println!("binary: {}", bin.display());
    let proxy =
        CountingProxy::start(bed.sim.url().trim_start_matches("http://").parse().unwrap()).await;
    let counted = bed.dir.path().join("counted-kubeconfig");
    std::fs::write(&counted, kube_sim::kubeconfig_yaml(&proxy.url)).unwrap();
    let outputs = bed.dir.path().join("outputs");
    let jisu = |args: Vec<String>| {
        let mut command = bed.command_with(&bin, &config, &counted, args);
        command.env("GITHUB_OUTPUT", &outputs);
        command
    };
    assert_code(
        &bed.deploy(&config, &images(0x10, "ghcr.io/jisu/platform"))
            .await,
        0,
    );

    // Our whole deploy, then our switch alone (after a --no-switch deploy).
    let before = proxy.requests();
    let mut args: Vec<String> = vec!["deploy".into(), "--sha".into(), SHA.into()];
    args.extend(images(0x20, "ghcr.io/jisu/platform"));
    let run: Run = jisu(args).output().await.unwrap().into();
    assert_code(&run, 0);
    let deploy_requests = proxy.requests() - before;
    let mut args: Vec<String> = vec![
        "deploy".into(),
        "--sha".into(),
        SHA.into(),
        "--no-switch".into(),
    ];
    args.extend(images(0x30, "ghcr.io/jisu/platform"));
    let run: Run = jisu(args).output().await.unwrap().into();
    assert_code(&run, 0);
    let _ = std::fs::remove_file(&outputs);
    let before = proxy.requests();
    let run: Run = jisu(vec!["switch".into()]).output().await.unwrap().into();
    assert_code(&run, 0);
    let switch_requests = proxy.requests() - before;
    let text = std::fs::read_to_string(&outputs).unwrap();
    let report = text
        .split("report<<")
        .nth(1)
        .and_then(|rest| rest.split_once('\n'))
        .map(|(delimiter, body)| body.split(delimiter).next().unwrap_or_default().to_owned())
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let window = report["jobs"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "switch")
        .map(|s| s["outputs"]["switch_window_ms"].clone())
        .unwrap();

    // The seed's way, from the same state: wait for the new color, patch both Services.
    let live = bed.routing().await["backend"].clone().unwrap();
    let target = if live == "blue" { "green" } else { "blue" };
    let before = proxy.requests();
    for command in [
        vec![
            "rollout".to_owned(),
            "status".into(),
            format!("deployment/backend-{target}"),
        ],
        vec![
            "rollout".into(),
            "status".into(),
            format!("deployment/frontend-{target}"),
        ],
        vec![
            "patch".into(),
            "service".into(),
            "backend".into(),
            "-p".into(),
            format!(r#"{{"spec":{{"selector":{{"color":"{target}"}}}}}}"#),
        ],
        vec![
            "patch".into(),
            "service".into(),
            "frontend".into(),
            "-p".into(),
            format!(r#"{{"spec":{{"selector":{{"color":"{target}"}}}}}}"#),
        ],
    ] {
        let status = tokio::process::Command::new("kubectl")
            .args(["--kubeconfig", counted.to_str().unwrap(), "-n", NS])
            .args(&command)
            .output()
            .await
            .unwrap();
        assert!(
            status.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let seed_requests = proxy.requests() - before;
    bed.forgive_hand_edit();

    // Warm rollbacks, back and forth, process start included.
    let mut rollbacks = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let run: Run = jisu(vec!["rollback".into()]).output().await.unwrap().into();
        rollbacks.push(started.elapsed());
        assert_code(&run, 0);
    }
    rollbacks.sort();
    println!("switch window (first to last Service patch, 2 Services): {window} ms");
    println!(
        "API requests: whole blue-green deploy {deploy_requests}; `switch` {switch_requests} (lock, live color, ready checks, 2 guarded patches, verify, keep-previous, unlock); seed's way (2 rollout status + 2 patch, via kubectl) {seed_requests}"
    );
    println!(
        "warm rollback wall time, process start included: median {:?} (min {:?}, max {:?})",
        rollbacks[2], rollbacks[0], rollbacks[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_fails_mid_switch_puts_the_moved_services_back() {
    let (bed, config) = blue_is_live().await;
    let mut staged = images(0x20, "ghcr.io/jisu/platform");
    staged.push("--no-switch".into());
    assert_code(&bed.deploy(&config, &staged).await, 0);
    // Now the API refuses every patch of the frontend Service (a 422 is not retried); the
    // backend, patched first, must go back.
    bed.sim.faults().add(
        FaultRule::error(422)
            .verb("patch")
            .path_contains("/services/frontend"),
    );
    let failed = bed.jisu(&config, vec!["switch".into()]).await;
    bed.sim.faults().clear();
    assert_code(&failed, 1);
    assert!(
        failed.stderr.contains("patching Service `frontend` failed")
            && failed.stderr.contains("switched back [\"backend\"]"),
        "{}",
        failed.stderr
    );
    assert_eq!(bed.routing().await, all_on("blue"));
}

/// `n` deploys of one environment at once: each waits for the lock, so one switch happens
/// at a time and every deploy succeeds; the last one's images end up live.
async fn concurrent_deploys(n: u8) {
    let (bed, config) = blue_is_live().await;
    let runs = futures::future::join_all((0..n).map(|i| {
        let images = images(0x20 + 2 * i, "ghcr.io/jisu/platform");
        let config = config.clone();
        let bed = &bed;
        async move { bed.deploy(&config, &images).await }
    }))
    .await;
    for run in &runs {
        assert_code(run, 0);
    }
    // Every deploy switched once, and no two switches interleaved: the Services carry the
    // mark of one switch, and the live color runs the images of some deploy in full.
    let (colors, marks) = {
        let services: Api<Service> = Api::namespaced(bed.client.clone(), NS);
        let mut marks = std::collections::BTreeSet::new();
        let mut colors = std::collections::BTreeSet::new();
        for name in ROUTED {
            let service = services.get(name).await.unwrap();
            marks.insert(
                service.metadata.annotations.unwrap_or_default()["jisu.dev/switch"].clone(),
            );
            colors.insert(service.spec.unwrap().selector.unwrap()["color"].clone());
        }
        (colors, marks)
    };
    assert_eq!(colors.len(), 1, "{colors:?}");
    assert_eq!(marks.len(), 1, "one switch set every Service: {marks:?}");
    let live = colors.into_iter().next().unwrap();
    let backend = bed.backend_image(&live).await;
    let deployment: Api<Deployment> = Api::namespaced(bed.client.clone(), NS);
    let frontend = deployment
        .get(&format!("frontend-{live}"))
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    // frontend digest n, backend digest n + 1: the same deploy's pair.
    let front = u8::from_str_radix(&frontend[frontend.len() - 2..], 16).unwrap();
    assert!(
        backend.ends_with(&format!("{:02x}", front + 1).repeat(32)),
        "{frontend} / {backend}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_deploys_switch_one_at_a_time() {
    concurrent_deploys(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_deploys_switch_one_at_a_time() {
    concurrent_deploys(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_are_recorded_on_github_with_requests_valid_by_its_openapi_description() {
    use crate::support::prism_proxy::PrismProxy;
    let (bed, config) = blue_is_live().await;
    let github = crate::support::fake_github::FakeGitHub::start().await;
    let prism = tokio::task::block_in_place(|| PrismProxy::start(&github.server.uri()));
    // A planted bad request is caught by the proxy.
    let planted = reqwest::Client::new()
        .post(format!("{}/repos/acme/app/deployments", prism.url()))
        .header("User-Agent", "test")
        .header("Authorization", "token x")
        .json(&json!({"ref": "main", "required_contexts": "none"}))
        .send()
        .await
        .unwrap();
    assert!(
        planted.status().is_client_error(),
        "{} {}",
        planted.status(),
        prism.log()
    );
    github.clear();
    let api = prism.url();
    let github_env = [
        ("GITHUB_TOKEN", "ghs_records_test"),
        ("GITHUB_REPOSITORY", "acme/app"),
        ("GITHUB_API_URL", api.as_str()),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_RUN_ID", "42"),
    ];
    let deploy = |images: Vec<String>| {
        let mut args: Vec<String> = vec!["deploy".into(), "--sha".into(), SHA.into()];
        args.extend(images);
        let mut command = bed.command(&config, args);
        for (name, value) in &github_env {
            command.env(name, value);
        }
        command
    };
    let ok: Run = deploy(images(0x20, "ghcr.io/jisu/platform"))
        .output()
        .await
        .unwrap()
        .into();
    assert_code(&ok, 0);
    let failed: Run = deploy(images(0x30, "ghcr.io/jisu/crashing"))
        .output()
        .await
        .unwrap()
        .into();
    assert_code(&failed, 1);
    let seen: Vec<(String, serde_json::Value)> = github
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .map(|c| (c.kind().to_owned(), c.body))
        .collect();
    let kinds: Vec<String> = seen
        .iter()
        .map(|(what, body)| match what.as_str() {
            "deployment" => "create".to_owned(),
            _ => body["state"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "create",
            "in_progress",
            "success",
            "create",
            "in_progress",
            "failure"
        ],
        "{seen:#?}\nprism:\n{}",
        prism.log()
    );
    let created = &seen[0].1;
    assert_eq!(created["ref"], SHA);
    assert_eq!(created["environment"], "production");
    assert_eq!(created["production_environment"], true);
    assert_eq!(created["auto_merge"], false);
    assert_eq!(created["required_contexts"], json!([]));
    assert!(
        created["payload"]["digests"]["backend"]
            .as_str()
            .unwrap()
            .contains("@sha256:")
    );
    let success = &seen[2].1;
    assert_eq!(
        success["log_url"],
        "https://github.com/acme/app/actions/runs/42"
    );
    assert!(
        success["environment_url"]
            .as_str()
            .unwrap()
            .starts_with("http://localhost:")
    );
    assert!(
        success["description"]
            .as_str()
            .unwrap()
            .contains("green live (was blue)")
    );
    assert_eq!(success["auto_inactive"], true);
    // `status` shows the newest record next to what runs.
    let mut command = bed.command(
        &config,
        ["status", "--output", "json"].map(String::from).to_vec(),
    );
    for (name, value) in &github_env {
        command.env(name, value);
    }
    let run: Run = command.output().await.unwrap().into();
    assert_code(&run, 0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["record"]["id"], 2, "{status:#}");
    assert_eq!(status["record"]["state"], "failure", "{status:#}");
    assert_eq!(status["live"], "green", "{status:#}");
}
