//! Helpers shared by the integration tests: start a simulator, build a `kube` client
//! for it, wait for a condition with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use kube_sim::{KubeSim, SimOptions};

/// Simulated seconds per real second in tests: one simulated second is 10 ms.
pub const SCALE: f64 = 100.0;

/// Starts a simulator with the test time scale and a client for it.
pub async fn start(opts: SimOptions) -> (KubeSim, kube::Client) {
    let sim = KubeSim::start(opts).await.expect("simulator starts");
    let client = client_for(&sim);
    (sim, client)
}

/// Default test options.
pub fn opts() -> SimOptions {
    SimOptions::default().time_scale(SCALE)
}

/// A `kube` client pointed at the simulator over HTTP. Its built-in retry of 429, 503
/// and 504 is off, so tests see exactly what the server answered.
pub fn client_for(sim: &KubeSim) -> kube::Client {
    let mut config = kube::Config::new(sim.url().parse().expect("valid url"));
    config.default_retry = false;
    kube::Client::try_from(config).expect("client builds")
}

/// Polls `f` until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API error inside a `kube` error; panics on other errors.
pub fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other}"),
    }
}

/// A Deployment manifest with `replicas` pods of `image`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8000, "name": "http"}]}]}
            }
        }
    })
}

/// A raw HTTP/1.1 request, for what the `kube` client hides (headers, odd requests).
/// Returns status code, raw header block and body.
pub async fn raw_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), rest.to_string())
}
