//! The simulator driven through the `kube` crate over HTTP: verbs, selectors,
//! pagination, patches, server-side apply, dry run, watches and errors.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{api_error, opts, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"}
    }))
    .unwrap()
}

#[tokio::test]
async fn discovery_lists_every_served_group() {
    let (_sim, client) = start(opts()).await;
    let d = kube::discovery::Discovery::new(client).run().await.unwrap();
    let kinds: Vec<String> = d
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(r, _)| format!("{}/{}", r.api_version, r.kind))
        .collect();
    for want in [
        "v1/Pod",
        "apps/v1/Deployment",
        "autoscaling/v2/HorizontalPodAutoscaler",
        "coordination.k8s.io/v1/Lease",
        "discovery.k8s.io/v1/EndpointSlice",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn crud_with_optimistic_concurrency_and_real_errors() {
    let (_sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Like a fresh cluster, the simulator starts with the system namespaces.
    let names: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let created = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());

    let dup = api_error(
        cms.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (dup.code, dup.reason.as_str(), dup.message.as_str()),
        (409, "AlreadyExists", "configmaps \"a\" already exists")
    );

    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("k".into(), "new".into())]));
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // Replaying the old resourceVersion is a conflict.
    let stale = api_error(
        cms.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let gone = api_error(cms.get("a").await.unwrap_err());
    assert_eq!(
        (gone.code, gone.reason.as_str(), gone.message.as_str()),
        (404, "NotFound", "configmaps \"a\" not found")
    );

    let missing_ns: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let e = api_error(
        missing_ns
            .create(&PostParams::default(), &cm("b", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
}

async fn with_namespace(client: &kube::Client, ns: &str) {
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_filter_by_label_and_field_and_paginate() {
    let (_sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        let color = if i % 2 == 0 { "blue" } else { "green" };
        cms.create(
            &PostParams::default(),
            &cm(&format!("cm-{i}"), &[("color", color), ("app", "web")]),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("color=green"))
                .await
                .unwrap()
        ),
        ["cm-1", "cm-3", "cm-5"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("color in (blue),app"))
                .await
                .unwrap()
        )
        .len(),
        4
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=cm-4"))
                .await
                .unwrap()
        ),
        ["cm-4"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name!=cm-4"))
                .await
                .unwrap()
        )
        .len(),
        6
    );

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        let token = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        seen.extend(names(page));
        match token {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());

    let bad = api_error(
        cms.list(&ListParams::default().labels("a in b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (_sim, client) = start(opts()).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = common::deployment("web", 1, "nginx:1");
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy:1"}));
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();

    // Strategic merge: containers merge by name, so the sidecar survives.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    let out = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let images: Vec<String> = out
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.image.unwrap())
        .collect();
    assert_eq!(images, ["nginx:2", "envoy:1"]);

    // Merge patch replaces lists wholesale.
    let mp = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:3"}]}}}});
    let out = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(mp))
        .await
        .unwrap();
    assert_eq!(
        out.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .len(),
        1
    );
    assert_eq!(out.metadata.generation, Some(3));

    // JSON patch, including a failing test operation.
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .unwrap();
    let out = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(4));
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    let e = api_error(
        deploys
            .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
}

#[tokio::test]
async fn server_side_apply_tracks_owners_and_reports_conflicts() {
    let (sim, client) = start(opts()).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = common::deployment("web", 2, "nginx:1");
    let created = deploys
        .patch("web", &PatchParams::apply("alice"), &Patch::Apply(&d))
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("alice"), Some("Apply"))
    );
    let fields = serde_json::to_string(&mf[0].fields_v1).unwrap();
    assert!(
        fields.contains(r#"k:{\"name\":\"app\"}"#)
            && fields.contains(r#"k:{\"containerPort\":8000,\"protocol\":\"TCP\"}"#),
        "{fields}"
    );

    // Same values from a second manager: shared, no conflict.
    deploys
        .patch("web", &PatchParams::apply("bob"), &Patch::Apply(&d))
        .await
        .unwrap();
    let mut changed = d.clone();
    changed["spec"]["replicas"] = json!(5);
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let e = api_error(
        deploys
            .patch("web", &PatchParams::apply("bob"), &Patch::Apply(&changed))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.replicas");

    let forced = deploys
        .patch(
            "web",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&changed),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(5));

    // A manager that stops applying a field it alone owns removes it.
    let labelled = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "front"}}});
    let out = deploys
        .patch(
            "web",
            &PatchParams::apply("carol"),
            &Patch::Apply(&labelled),
        )
        .await
        .unwrap();
    assert_eq!(
        out.metadata.labels.unwrap().get("tier").map(String::as_str),
        Some("front")
    );
    let unlabelled =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let out = deploys
        .patch(
            "web",
            &PatchParams::apply("carol"),
            &Patch::Apply(&unlabelled),
        )
        .await
        .unwrap();
    let labels = out.metadata.labels.unwrap();
    assert!(
        !labels.contains_key("tier") && labels.contains_key("app"),
        "{labels:?}"
    );

    // An update (not apply) takes ownership; a later apply conflicts with it.
    let scale = json!({"spec": {"replicas": 7}});
    deploys
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("hpa-controller".into()),
                ..Default::default()
            },
            &Patch::Merge(scale),
        )
        .await
        .unwrap();
    let mut back = changed.clone();
    back["spec"]["replicas"] = json!(3);
    let e = api_error(
        deploys
            .patch("web", &PatchParams::apply("alice"), &Patch::Apply(&back))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"hpa-controller\" using apps/v1: .spec.replicas"
    );

    // Apply requires a field manager.
    let body = serde_json::to_string(&d).unwrap();
    let (code, _, text) = common::raw_http(
        sim.addr(),
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "application/apply-patch+yaml",
        &body,
    )
    .await;
    assert_eq!(code, 400, "{text}");
}

#[tokio::test]
async fn dry_run_validates_without_storing() {
    let (_sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let out = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry", &[]),
        )
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_error(cms.get("dry").await.unwrap_err()).code, 404);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut bad = common::deployment("bad", 1, "nginx");
    bad["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    let pp = PatchParams::apply("me").dry_run();
    let e = api_error(
        deploys
            .patch("bad", &pp, &Patch::Apply(&bad))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .contains("`selector` does not match template `labels`"),
        "{}",
        e.message
    );
    deploys
        .patch(
            "good",
            &pp,
            &Patch::Apply(&common::deployment("good", 1, "nginx")),
        )
        .await
        .unwrap();
    assert_eq!(api_error(deploys.get("good").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_and_expires_old_versions() {
    let (sim, client) = start(opts().watch_history(20)).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("w", &[("app", "web")]))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("other", &[("app", "db")]))
        .await
        .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        kinds.push(match ev {
            WatchEvent::Added(c) => format!("ADDED {}", c.metadata.name.unwrap()),
            WatchEvent::Modified(c) => format!("MODIFIED {}", c.data.unwrap()["k"]),
            WatchEvent::Deleted(c) => format!("DELETED {}", c.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(kinds, ["ADDED w", "MODIFIED 2", "DELETED w"]);

    // Push the starting version out of the retained history: 410 Gone as an ERROR event.
    for i in 0..30 {
        cms.create(&PostParams::default(), &cm(&format!("x{i}"), &[]))
            .await
            .unwrap();
    }
    let mut events = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    // A continue token from before the window is expired too.
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    for i in 0..30 {
        cms.create(&PostParams::default(), &cm(&format!("y{i}"), &[]))
            .await
            .unwrap();
    }
    let e = api_error(
        cms.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
    drop(sim);
}

#[tokio::test]
async fn secrets_hpas_and_leases_are_stored_as_the_server_would() {
    let (_sim, client) = start(opts()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let out = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(out.data.unwrap()["password"].0, b"hunter2");
    assert_eq!(out.type_.as_deref(), Some("Opaque"));

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}
    }))
    .unwrap();
    let out = hpas
        .patch("web", &PatchParams::apply("me"), &Patch::Apply(&hpa))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().min_replicas, Some(2));

    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "deploy-lock"}, "spec": {"holderIdentity": "run-1", "leaseDurationSeconds": 60}})).unwrap();
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut take = held.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("run-2".into());
    leases
        .replace("deploy-lock", &PostParams::default(), &take)
        .await
        .unwrap();
    // A second contender with the same stale version loses.
    let e = api_error(
        leases
            .replace("deploy-lock", &PostParams::default(), &take)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
}

#[tokio::test]
async fn services_get_cluster_ips_and_defaults() {
    let (_sim, client) = start(opts()).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})).unwrap();
    let out = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = out.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let e = api_error(
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "noports"}, "spec": {}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            422,
            "Service \"noports\" is invalid: spec.ports: Required value"
        )
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let (sim, client) = start(opts()).await;
    with_namespace(&client, "gone").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    assert!(sim.object("ConfigMap", "gone", "a").is_none());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed_and_deletecollection_honours_selectors() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["jisu.dev/cleanup"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "marked for deletion, still there"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(cms.get("held").await.unwrap_err()).code, 404);

    for (name, color) in [("a", "blue"), ("b", "blue"), ("c", "green")] {
        cms.create(&PostParams::default(), &cm(name, &[("color", color)]))
            .await
            .unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("color=blue"),
    )
    .await
    .unwrap();
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
    assert!(sim.object("ConfigMap", "default", "a").is_none());
}

#[tokio::test]
async fn streaming_list_watch_sends_initial_events_and_a_bookmark() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    // What kube's watcher sends with `streaming_lists()` (the WatchList feature).
    let path = "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=2";
    let (code, _, body) = common::raw_http(sim.addr(), "GET", path, "application/json", "").await;
    assert_eq!(code, 200);
    // The body is chunked; the JSON lines are intact between chunk sizes.
    let events: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "one");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // allowWatchBookmarks: a quiet watch still learns the current version now and then.
    let periodic = events
        .iter()
        .skip(2)
        .filter(|e| e["type"] == "BOOKMARK")
        .count();
    assert!(periodic >= 1, "{events:?}");
}

#[tokio::test]
async fn patch_results_are_decoded_with_the_requested_field_validation() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("c", &[("a", "1")]))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/default/configmaps/c";
    // Strict: a merge patch adding an unknown field is a 422 quoting the patched object.
    let (code, _, body) = common::raw_http(
        sim.addr(),
        "PATCH",
        &format!("{path}?fieldValidation=Strict"),
        "application/merge-patch+json",
        r#"{"datta":{"b":"2"}}"#,
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "{body}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#" "" is invalid: patch: Invalid value: "{\"apiVersion\":\"v1\""#)
            && message.ends_with(r#"": strict decoding error: unknown field "datta""#),
        "{message}"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "patch");
    // Strategic merge patches are quoted as Go prints the decoded patch.
    let (code, _, body) = common::raw_http(
        sim.addr(),
        "PATCH",
        &format!("{path}?fieldValidation=Strict"),
        "application/strategic-merge-patch+json",
        r#"{"datta":{"b":"2"}}"#,
    )
    .await;
    assert_eq!(code, 422);
    assert!(body.contains(r#"patch: Invalid value: \"map[datta:map[b:2]]\": strict decoding error: unknown field \"datta\""#), "{body}");
    // Default (Warn): dropped and reported in a Warning header; the rest of the patch applies.
    let (code, headers, _) = common::raw_http(
        sim.addr(),
        "PATCH",
        path,
        "application/merge-patch+json",
        r#"{"datta":{"b":"2"},"data":{"b":"2"}}"#,
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains(r#"warning: 299 - "unknown field \"datta\"""#),
        "{headers}"
    );
    let stored = sim.object("ConfigMap", "default", "c").unwrap();
    assert_eq!(stored["data"]["b"], "2");
    assert!(stored.get("datta").is_none());
    // A mistyped value fails whatever the validation level.
    let (code, _, body) = common::raw_http(
        sim.addr(),
        "PATCH",
        &format!("{path}?fieldValidation=Ignore"),
        "application/merge-patch+json",
        r#"{"data":{"b":2}}"#,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        ),
        "{body}"
    );
    // An unknown fieldValidation value is refused.
    let (code, _, _) = common::raw_http(
        sim.addr(),
        "PATCH",
        &format!("{path}?fieldValidation=Loose"),
        "application/merge-patch+json",
        "{}",
    )
    .await;
    assert_eq!(code, 400);
}
