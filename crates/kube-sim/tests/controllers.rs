//! The emulated controllers, observed through the `kube` crate: Deployment rollouts and
//! their status, scripted container behaviour, Endpoints, garbage collection, and the
//! scale and status subresources.

mod common;

use std::time::Duration;

use common::{eventually, opts, start};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_sim::{ImageBehavior, KubeSim};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn setup(sim_opts: kube_sim::SimOptions) -> (KubeSim, kube::Client, Api<Deployment>) {
    let (sim, client) = start(sim_opts).await;
    let deploys = Api::namespaced(client.clone(), "default");
    (sim, client, deploys)
}

async fn apply(deploys: &Api<Deployment>, d: &serde_json::Value) -> Deployment {
    let name = d["metadata"]["name"].as_str().unwrap();
    deploys
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(d))
        .await
        .unwrap()
}

fn condition(d: &Deployment, ty: &str) -> Option<(String, String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// kubectl's rule for a finished rollout.
fn complete(d: &Deployment) -> bool {
    let (Some(st), Some(spec)) = (d.status.as_ref(), d.spec.as_ref()) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) == want
        && st.replicas.unwrap_or(0) == want
        && st.available_replicas.unwrap_or(0) == want
}

async fn wait_complete(deploys: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("{name} to roll out"), WAIT, || async {
        deploys.get(name).await.ok().filter(complete)
    })
    .await
}

#[tokio::test]
async fn rollout_creates_a_replicaset_and_reports_kubectl_status() {
    let (_sim, client, deploys) = setup(opts()).await;
    apply(&deploys, &common::deployment("web", 3, "nginx:1.27")).await;
    let d = wait_complete(&deploys, "web").await;
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(
        condition(&d, "Available").unwrap(),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    let (status, reason, message) = condition(&d, "Progressing").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "NewReplicaSetAvailable")
    );
    assert!(
        message.starts_with("ReplicaSet \"web-")
            && message.ends_with("\" has successfully progressed."),
        "{message}"
    );

    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rss
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pods = pods
        .list(&ListParams::default().labels(&format!("pod-template-hash={hash}")))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    );
}

#[tokio::test]
async fn rolling_update_stays_within_surge_and_unavailability() {
    let (_sim, client, deploys) = setup(opts()).await;
    let mut d = common::deployment("web", 4, "app:v1");
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    apply(&deploys, &d).await;
    wait_complete(&deploys, "web").await;

    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:v2");
    apply(&deploys, &d).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (mut max_pods, mut min_ready) = (0, usize::MAX);
    loop {
        // Terminating pods no longer count, as for the real controller.
        let list: Vec<Pod> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = list
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        max_pods = max_pods.max(list.len());
        min_ready = min_ready.min(ready);
        let dep = deploys.get("web").await.unwrap();
        if complete(&dep)
            && dep.status.as_ref().unwrap().observed_generation == Some(2)
            && list.len() == 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(max_pods <= 5, "surge exceeded: {max_pods} pods");
    assert!(min_ready >= 4, "availability dropped to {min_ready}");
    let rss: Api<ReplicaSet> = Api::namespaced(client, "default");
    let mut counts: Vec<(String, i32)> = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| {
            (
                r.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"].clone(),
                r.spec.unwrap().replicas.unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [("1".to_string(), 0), ("2".to_string(), 4)]);
}

#[tokio::test]
async fn crash_looping_pods_exceed_the_progress_deadline() {
    let (_sim, client, deploys) = setup(opts()).await;
    let mut d = common::deployment("api", 2, "ghcr.io/jisu/backend:crashloop");
    d["spec"]["progressDeadlineSeconds"] = json!(120);
    // With a readiness probe the crashing container never becomes ready.
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/ready", "port": 8000}});
    apply(&deploys, &d).await;
    let dep = eventually("ProgressDeadlineExceeded", WAIT, || async {
        deploys.get("api").await.ok().filter(|d| {
            condition(d, "Progressing").is_some_and(|c| c.1 == "ProgressDeadlineExceeded")
        })
    })
    .await;
    let (status, _, message) = condition(&dep, "Progressing").unwrap();
    assert_eq!(status, "False");
    assert!(message.ends_with("has timed out progressing."), "{message}");
    assert_eq!(
        condition(&dep, "Available").unwrap().1,
        "MinimumReplicasUnavailable"
    );

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod = eventually("a CrashLoopBackOff pod with restarts", WAIT, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| {
                        cs[0].restart_count >= 2
                            && cs[0]
                                .state
                                .as_ref()
                                .and_then(|s| s.waiting.as_ref())
                                .and_then(|w| w.reason.as_deref())
                                == Some("CrashLoopBackOff")
                    })
            })
    })
    .await;
    let cs = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        cs.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert!(!cs.ready);
}

#[tokio::test]
async fn scripted_images_fail_to_pull_never_ready_or_flap() {
    let sim_opts = opts()
        .image("registry.local/never", ImageBehavior::NeverReady)
        .image(
            "registry.local/flap",
            ImageBehavior::Flapping {
                after: Duration::from_secs(1),
                period: Duration::from_secs(20),
            },
        );
    let (_sim, client, deploys) = setup(sim_opts).await;
    apply(
        &deploys,
        &common::deployment("pull", 1, "ghcr.io/jisu/no-such-image:1"),
    )
    .await;
    apply(
        &deploys,
        &common::deployment("never", 1, "registry.local/never:1"),
    )
    .await;
    apply(
        &deploys,
        &common::deployment("flap", 1, "registry.local/flap:1"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let waiting = |p: &Pod| {
        p.status.as_ref()?.container_statuses.as_ref()?[0]
            .state
            .as_ref()?
            .waiting
            .as_ref()?
            .reason
            .clone()
    };
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c[0].ready)
    };
    let first = |app: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        }
    };
    let pull = eventually("ErrImagePull then ImagePullBackOff", WAIT, || async {
        first("pull")
            .await
            .filter(|p| waiting(p).as_deref() == Some("ImagePullBackOff"))
    })
    .await;
    assert_eq!(pull.status.unwrap().phase.as_deref(), Some("Pending"));

    // Flapping: ready, then not ready, then ready again.
    for want in [true, false, true] {
        eventually(&format!("flapping pod ready={want}"), WAIT, || async {
            first("flap").await.filter(|p| ready(p) == want)
        })
        .await;
    }
    let never = first("never").await.unwrap();
    assert!(!ready(&never));
    assert_eq!(never.status.unwrap().phase.as_deref(), Some("Running"));
    let d = deploys.get("never").await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, None);
}

#[tokio::test]
async fn endpoints_and_slices_follow_ready_pods_and_service_selectors() {
    let (_sim, client, deploys) = setup(opts().image("never", ImageBehavior::NeverReady)).await;
    let mut blue = common::deployment("web-blue", 2, "app:1");
    blue["spec"]["selector"]["matchLabels"] = json!({"app": "web", "color": "blue"});
    blue["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "color": "blue"});
    let mut green = common::deployment("web-green", 1, "app:never");
    green["spec"]["selector"]["matchLabels"] = json!({"app": "web", "color": "green"});
    green["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "color": "green"});
    apply(&deploys, &blue).await;
    apply(&deploys, &green).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web", "color": "blue"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = eventually("two ready blue addresses", WAIT, || async {
        eps.get("web").await.ok().filter(|e| {
            e.subsets
                .as_ref()
                .is_some_and(|s| s[0].addresses.as_ref().is_some_and(|a| a.len() == 2))
        })
    })
    .await;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(
        subset.ports.as_ref().unwrap()[0].port,
        8000,
        "named targetPort resolves to the container port"
    );
    assert!(subset.addresses.as_ref().unwrap().iter().all(|a| {
        a.target_ref
            .as_ref()
            .unwrap()
            .name
            .as_deref()
            .unwrap()
            .starts_with("web-blue-")
    }));

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().unwrap().ready == Some(true))
            .count(),
        2
    );

    // Switch to green, whose only pod never becomes ready.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"selector": {"color": "green"}}})),
    )
    .await
    .unwrap();
    let ep = eventually("green, not ready", WAIT, || async {
        eps.get("web").await.ok().filter(|e| {
            e.subsets.as_ref().is_some_and(|s| {
                s[0].not_ready_addresses
                    .as_ref()
                    .is_some_and(|a| a.len() == 1)
            })
        })
    })
    .await;
    assert!(ep.subsets.unwrap()[0].addresses.is_none());

    // Deleting the Service removes its Endpoints and slices.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("endpoints gone", WAIT, || async {
        eps.get("web").await.err()
    })
    .await;
    eventually("slices gone", WAIT, || async {
        slices
            .list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
    })
    .await;
}

#[tokio::test]
async fn delete_propagates_to_owned_objects_by_policy() {
    let (_sim, client, deploys) = setup(opts()).await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&deploys, &common::deployment("bg", 2, "app:1")).await;
    wait_complete(&deploys, "bg").await;
    deploys
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    eventually("replicasets and pods collected", WAIT, || async {
        let rs = rss.list(&ListParams::default()).await.ok()?;
        let p = pods.list(&ListParams::default()).await.ok()?;
        (rs.items.is_empty() && p.items.is_empty()).then_some(())
    })
    .await;

    apply(&deploys, &common::deployment("orphan", 1, "app:1")).await;
    wait_complete(&deploys, "orphan").await;
    deploys
        .delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 1, "orphaned ReplicaSet stays");
    assert!(
        left[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    );

    apply(&deploys, &common::deployment("fg", 1, "app:1")).await;
    wait_complete(&deploys, "fg").await;
    deploys
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let left = rss
        .list(&ListParams::default().labels("app=fg"))
        .await
        .unwrap()
        .items;
    assert!(
        left.is_empty(),
        "foreground deletion removes dependents first"
    );
}

#[tokio::test]
async fn scale_and_status_subresources() {
    let (_sim, _client, deploys) = setup(opts()).await;
    apply(&deploys, &common::deployment("web", 1, "app:1")).await;
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let d = wait_complete(&deploys, "web").await;
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));

    // Status written through the main resource is ignored; through /status it sticks
    // (until the controller corrects it).
    let mut d = deploys.get("web").await.unwrap();
    let gen_before = d.metadata.generation;
    d.status.as_mut().unwrap().replicas = Some(42);
    let out = deploys
        .replace("web", &PostParams::default(), &d)
        .await
        .unwrap();
    assert_ne!(out.status.unwrap().replicas, Some(42));
    assert_eq!(
        out.metadata.generation, gen_before,
        "no spec change, no new generation"
    );
    let out = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 42}})),
        )
        .await
        .unwrap();
    assert_eq!(out.status.unwrap().replicas, Some(42));
}

#[tokio::test]
async fn default_progress_deadline_passes_in_simulated_time() {
    // 600 simulated seconds at 1000x is 0.6 s of real time.
    let (_sim, _client, deploys) = setup(opts().time_scale(1000.0)).await;
    apply(&deploys, &common::deployment("slow", 1, "app:neverready")).await;
    let started = std::time::Instant::now();
    eventually("deadline", WAIT, || async {
        deploys.get("slow").await.ok().filter(|d| {
            condition(d, "Progressing").is_some_and(|c| c.1 == "ProgressDeadlineExceeded")
        })
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "deadline came too early: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn recreate_strategy_stops_old_pods_before_starting_new_ones() {
    let (_sim, client, deploys) = setup(opts()).await;
    let mut d = common::deployment("db-migrator", 2, "app:v1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    apply(&deploys, &d).await;
    wait_complete(&deploys, "db-migrator").await;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:v2");
    apply(&deploys, &d).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let images: std::collections::BTreeSet<String> = list
            .iter()
            .map(|p| {
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap()
            })
            .collect();
        assert!(
            images.len() <= 1,
            "old and new pods ran together: {images:?}"
        );
        let dep = deploys.get("db-migrator").await.unwrap();
        if complete(&dep)
            && dep.status.unwrap().observed_generation == Some(2)
            && images.contains("app:v2")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn kube_runtime_waiters_and_watchers_work_against_the_simulator() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
    let (_sim, client, deploys) = setup(opts()).await;
    apply(&deploys, &common::deployment("web", 2, "app:1")).await;
    let done = tokio::time::timeout(
        WAIT,
        await_condition(
            deploys.clone(),
            "web",
            conditions::is_deployment_completed(),
        ),
    )
    .await;
    assert!(done.expect("completed in time").unwrap().is_some());

    for cfg in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let mut stream = watcher(pods, cfg.labels("app=web"))
            .applied_objects()
            .boxed();
        let first = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an object in time")
            .unwrap()
            .unwrap();
        assert!(first.metadata.name.unwrap().starts_with("web-"));
    }
}

#[tokio::test]
async fn crash_looping_pods_without_a_readiness_probe_flicker_ready_and_keep_progressing() {
    let (_sim, client, deploys) = setup(opts()).await;
    let mut d = common::deployment("noprobe", 1, "ghcr.io/jisu/backend:crashloop");
    d["spec"]["progressDeadlineSeconds"] = json!(60);
    apply(&deploys, &d).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c[0].ready)
    };
    // Ready while the first run lasts, not ready in back-off, ready again on the restart.
    for want in [true, false, true] {
        eventually(&format!("ready={want}"), WAIT, || async {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| ready(p) == want)
        })
        .await;
    }
    // Each restart counts as progress, so 60 simulated seconds of crashing have not timed out.
    let dep = deploys.get("noprobe").await.unwrap();
    assert_ne!(
        condition(&dep, "Progressing").unwrap().1,
        "ProgressDeadlineExceeded"
    );
}

#[tokio::test]
async fn ready_delays_are_measured_in_simulated_time() {
    // 30 simulated seconds at 100x: about 300 ms of real time.
    let sim_opts = opts().image(
        "registry.local/slow-start",
        ImageBehavior::Ready {
            after: Duration::from_secs(30),
        },
    );
    let (_sim, client, deploys) = setup(sim_opts).await;
    let started = std::time::Instant::now();
    apply(
        &deploys,
        &common::deployment("slow", 1, "registry.local/slow-start:1"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually("a running, not yet ready pod", WAIT, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| {
                        !c[0].ready && c[0].state.as_ref().is_some_and(|s| s.running.is_some())
                    })
            })
    })
    .await;
    wait_complete(&deploys, "slow").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290),
        "ready too early: {took:?}"
    );
}

#[tokio::test]
async fn advancing_the_clock_and_rescripting_images_at_run_time() {
    // Real time (scale 1): without `advance` this would take ten minutes.
    let (sim, client, deploys) = setup(kube_sim::SimOptions::default()).await;
    apply(
        &deploys,
        &common::deployment("stuck", 1, "registry.local/app:neverready"),
    )
    .await;
    // Wait until everything that counts as progress has happened (the pod exists and
    // has a status), so the deadline clock is running before the jump.
    eventually("the rollout to stall", WAIT, || async {
        deploys.get("stuck").await.ok().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.updated_replicas == Some(1) && s.replicas == Some(1))
                && condition(d, "Progressing").is_some_and(|c| c.1 == "ReplicaSetUpdated")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.advance(Duration::from_secs(601));
    eventually("ProgressDeadlineExceeded after the jump", WAIT, || async {
        deploys.get("stuck").await.ok().filter(|d| {
            condition(d, "Progressing").is_some_and(|c| c.1 == "ProgressDeadlineExceeded")
        })
    })
    .await;

    // A healthy pod starts failing when its image is re-scripted.
    apply(
        &deploys,
        &common::deployment("healthy", 1, "registry.local/app:1"),
    )
    .await;
    sim.advance(Duration::from_secs(5));
    wait_complete(&deploys, "healthy").await;
    sim.script_image("registry.local/app:1", ImageBehavior::NeverReady);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually("the pod to turn unready", WAIT, || async {
        pods.list(&ListParams::default().labels("app=healthy"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| !c[0].ready)
            })
    })
    .await;
}

#[tokio::test]
async fn pods_terminate_gracefully_and_leave_endpoints_first() {
    let (_sim, client, deploys) = setup(opts()).await;
    apply(&deploys, &common::deployment("web", 2, "app:1")).await;
    wait_complete(&deploys, "web").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let victim = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0)
        .metadata
        .name
        .unwrap();
    // A pod held by a finalizer shows its terminating phase for as long as it is held.
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["jisu.dev/hold"]}})),
    )
    .await
    .unwrap();
    let deleted = pods
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let marked = deleted
        .left()
        .expect("a pod comes back from delete as an object");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    // The ReplicaSet replaces it at once; the terminating pod no longer counts.
    let all = eventually(
        "a replacement next to the terminating pod",
        WAIT,
        || async {
            let items = pods.list(&ListParams::default()).await.ok()?.items;
            (items.len() == 3).then_some(items)
        },
    )
    .await;
    assert_eq!(
        all.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .count(),
        1
    );
    // Endpoints drop it from the ready set; the slice says it is terminating.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let on_victim = |e: &k8s_openapi::api::discovery::v1::Endpoint| {
        e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some(victim.as_str())
    };
    let slice = eventually("a slice with the terminating pod", WAIT, || async {
        slices
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|s| s.endpoints.iter().any(on_victim))
    })
    .await;
    let c = slice
        .endpoints
        .iter()
        .find(|e| on_victim(e))
        .unwrap()
        .conditions
        .clone()
        .unwrap();
    assert_eq!((c.ready, c.terminating), (Some(false), Some(true)));
    let d = wait_complete(&deploys, "web").await;
    assert_eq!(
        d.status.unwrap().replicas,
        Some(2),
        "terminating pods are not counted"
    );
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the terminated pod to go", WAIT, || async {
        pods.get(&victim).await.err()
    })
    .await;
    // Without finalizers a pod goes by itself once its containers stop; --grace-period=0 at once.
    let next = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0)
        .metadata
        .name
        .unwrap();
    pods.delete(&next, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get(&next).await.is_err());
}

#[tokio::test]
async fn change_hooks_see_every_rollout_write_in_order_without_gaps() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let (sim, client, deploys) = setup(opts()).await;
    let changes = sim.subscribe();
    // An invariant checked at every change, against the hook's own model of the store:
    // a Deployment never reports more ready replicas than there are ready Pods.
    let violations = Arc::new(Mutex::new(Vec::new()));
    let ready_pods = Arc::new(Mutex::new(HashMap::<String, bool>::new()));
    {
        let violations = violations.clone();
        sim.on_change(move |c| {
            let mut ready = ready_pods.lock().unwrap();
            match c.kind {
                "Pod" => {
                    let is_ready = c.verb != kube_sim::EventType::Deleted
                        && c.object["status"]["conditions"]
                            .as_array()
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
                            });
                    ready.insert(c.name.clone(), is_ready);
                }
                "Deployment" => {
                    let reported = c.object["status"]["readyReplicas"].as_u64().unwrap_or(0);
                    let actual = ready.values().filter(|r| **r).count() as u64;
                    if reported > actual {
                        violations.lock().unwrap().push(format!(
                            "rv {}: {reported} ready reported, {actual} ready pods",
                            c.resource_version
                        ));
                    }
                }
                _ => {}
            }
        });
    }
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    apply(&deploys, &common::deployment("web", 3, "nginx:1.27")).await;
    let done = wait_complete(&deploys, "web").await;
    // The endpoint controller runs in the same pass as the status updates; wait for it.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = eventually("three ready endpoints", WAIT, || async {
        slices
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .count()
                    == 3
            })
    })
    .await;
    let last_rv = done
        .metadata
        .resource_version
        .unwrap()
        .parse::<u64>()
        .unwrap()
        .max(slice.metadata.resource_version.unwrap().parse().unwrap());
    let last_rv: u64 = last_rv;

    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|c: &kube_sim::StoredChange| c.resource_version < last_rv)
    {
        seen.push(changes.recv_timeout(WAIT).expect("a change"));
    }
    for pair in seen.windows(2) {
        assert_eq!(
            pair[1].resource_version,
            pair[0].resource_version + 1,
            "no gaps: {} {} then {} {}",
            pair[0].kind,
            pair[0].name,
            pair[1].kind,
            pair[1].name
        );
    }
    let position = |pred: &dyn Fn(&kube_sim::StoredChange) -> bool, what: &str| {
        seen.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no change: {what}"))
    };
    let added = kube_sim::EventType::Added;
    let d_added = position(
        &|c| c.kind == "Deployment" && c.verb == added,
        "Deployment added",
    );
    let rs_added = position(
        &|c| c.kind == "ReplicaSet" && c.verb == added,
        "ReplicaSet added",
    );
    let pods_added: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == "Pod" && c.verb == added)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pods_added.len(), 3);
    let first_pod_ready = position(
        &|c| {
            c.kind == "Pod"
                && c.object["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|x| x["type"] == "Ready" && x["status"] == "True")
                    })
        },
        "a pod ready",
    );
    let all_available = position(
        &|c| c.kind == "Deployment" && c.object["status"]["availableReplicas"] == 3,
        "Deployment available",
    );
    let slice_ready = position(
        &|c| {
            c.kind == "EndpointSlice"
                && c.object["endpoints"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["conditions"]["ready"] == true))
        },
        "an EndpointSlice with a ready endpoint",
    );
    assert!(
        d_added < rs_added && rs_added < pods_added[0],
        "{d_added} {rs_added} {pods_added:?}"
    );
    assert!(pods_added[2] < first_pod_ready && first_pod_ready < all_available);
    assert_eq!(seen[all_available].api_version, "apps/v1");
    assert_eq!(seen[all_available].namespace, "default");
    // Controller writes are seen too: kubelet status writes and endpoint slices.
    assert!(first_pod_ready < slice_ready);
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
}
