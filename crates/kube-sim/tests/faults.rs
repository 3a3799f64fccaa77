//! Fault injection seen by clients: injected errors with the real reasons, `Retry-After`
//! on 429, error rates, latency, and watch connections dropped under the client.

mod common;

use std::time::{Duration, Instant};

use common::{api_error, opts, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kube_sim::FaultRule;
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test]
async fn injected_errors_carry_real_reasons_and_run_out() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    sim.faults().add(
        FaultRule::error(503)
            .verb("create")
            .path_contains("/configmaps")
            .times(1),
    );
    let e = api_error(
        cms.create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (503, "ServiceUnavailable"));
    // The rule fired once; the retry goes through, and other verbs were never affected.
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    sim.faults().add(FaultRule::error(500).verb("get").times(1));
    assert_eq!(
        api_error(cms.get("a").await.unwrap_err()).reason,
        "InternalError"
    );
    sim.faults()
        .add(FaultRule::error(409).verb("update").times(1));
    let cur = cms.get("a").await.unwrap();
    assert_eq!(
        api_error(
            cms.replace("a", &PostParams::default(), &cur)
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    cms.replace("a", &PostParams::default(), &cur)
        .await
        .unwrap();

    // kube's default client retries 503 by itself: a one-off fault is invisible to it.
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    config.default_retry = true;
    let retrying: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    sim.faults().add(FaultRule::error(503).verb("get").times(1));
    retrying.get("a").await.unwrap();
}

#[tokio::test]
async fn too_many_requests_sends_retry_after() {
    let (sim, _client) = start(opts().fault(FaultRule::too_many_requests(7).verb("list"))).await;
    let (code, head, body) = common::raw_http(
        sim.addr(),
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 429);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 7"),
        "{head}"
    );
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 7);
}

#[tokio::test]
async fn error_rate_and_latency_apply_per_verb() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    sim.faults()
        .add(FaultRule::error(500).verb("list").probability(0.5));
    let mut failures = 0;
    for _ in 0..60 {
        if cms.list(&ListParams::default()).await.is_err() {
            failures += 1;
        }
    }
    assert!(
        (15..=45).contains(&failures),
        "{failures} of 60 failed at a 50% error rate"
    );
    sim.faults().clear();

    // Generous numbers: the check must hold on a loaded CI machine.
    sim.faults()
        .add(FaultRule::latency(Duration::from_millis(600)).verb("get"));
    cms.create(&PostParams::default(), &cm("slow"))
        .await
        .unwrap();
    let t = Instant::now();
    cms.get("slow").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(600));
    let t = Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "latency leaked to other verbs"
    );
}

#[tokio::test]
async fn watches_can_be_dropped_now_or_after_a_lifetime() {
    let (sim, client) = start(opts()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut events = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert!(events.try_next().await.unwrap().is_some());
    sim.faults().drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .expect("stream ends promptly");
    assert!(matches!(end, Ok(None)), "the watch ended");

    sim.faults()
        .set_watch_lifetime(Some(Duration::from_millis(100)));
    let t = Instant::now();
    let mut events = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    while let Ok(Some(_)) = events.try_next().await {}
    assert!(t.elapsed() >= Duration::from_millis(100) && t.elapsed() < Duration::from_secs(5));
}
