//! Prints the simulator's two headline figures: watch event latency on loopback, and
//! how many objects it holds before a list takes longer than 100 ms.
//!
//! `cargo bench -p kube-sim` (optimised build). Plain HTTP over one keep-alive
//! connection, so the figures are the server's, not a client library's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube_sim::{KubeSim, SimOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A minimal keep-alive HTTP/1.1 client: enough for JSON requests with Content-Length answers.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Self(BufReader::new(s))
    }

    async fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).await.unwrap();
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.0.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        self.0.read_exact(&mut buf).await.unwrap();
        (code, buf)
    }
}

fn configmap(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench","tier":"backend"}}}},"data":{{"LOG_LEVEL":"info","DATABASE_HOST":"postgres.jisu-prod.svc","FEATURE_FLAGS":"a,b,c,d"}}}}"#
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn watch_latency(addr: SocketAddr) {
    let mut watch = TcpStream::connect(addr).await.unwrap();
    watch.set_nodelay(true).unwrap();
    let rv = {
        let mut c = Conn::open(addr).await;
        let (_, body) = c
            .request("GET", "/api/v1/namespaces/default/configmaps?limit=1", "")
            .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let req = format!(
        "GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&labelSelector=app%3Dwatched HTTP/1.1\r\nHost: sim\r\n\r\n"
    );
    watch.write_all(req.as_bytes()).await.unwrap();
    let mut writer = Conn::open(addr).await;
    let mut seen = String::new();
    let mut buf = vec![0u8; 65536];
    let mut samples = Vec::new();
    for i in 0..500 {
        let name = format!("watched-{i}");
        let body = configmap(&name).replace("\"app\":\"bench\"", "\"app\":\"watched\"");
        let marker = format!("\"name\":\"{name}\"");
        let t = Instant::now();
        let (code, _) = writer
            .request("POST", "/api/v1/namespaces/default/configmaps", &body)
            .await;
        assert_eq!(code, 201);
        while !seen.contains(&marker) {
            let n = watch.read(&mut buf).await.unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        samples.push(t.elapsed());
        // Keep only the tail so the search stays cheap.
        if seen.len() > 8192 {
            seen = seen[seen.len() - 4096..].to_string();
        }
    }
    samples.sort();
    println!(
        "watch event latency (create sent -> ADDED event read, loopback, 500 samples): median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

async fn list_threshold(addr: SocketAddr) {
    let mut c = Conn::open(addr).await;
    let mut count = 0usize;
    let steps = [
        1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000, 75_000, 100_000,
    ];
    for target in steps {
        while count < target {
            let (code, _) = c
                .request(
                    "POST",
                    "/api/v1/namespaces/default/configmaps",
                    &configmap(&format!("cm-{count:06}")),
                )
                .await;
            assert_eq!(code, 201);
            count += 1;
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (code, body) = c
                .request("GET", "/api/v1/namespaces/default/configmaps", "")
                .await;
            times.push(t.elapsed());
            assert_eq!(code, 200);
            bytes = body.len();
        }
        times.sort();
        let median = percentile(&times, 0.5);
        let t = Instant::now();
        let (_, _) = c
            .request(
                "GET",
                "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dnone",
                "",
            )
            .await;
        let filtered = t.elapsed();
        let t = Instant::now();
        let (_, _) = c.request("GET", "/version", "").await;
        eprintln!("  (GET /version took {:?})", t.elapsed());
        println!(
            "list of {count:>6} configmaps: median {median:?} ({} KiB); label-filtered to none: {filtered:?}",
            bytes / 1024
        );
        if median > Duration::from_millis(100) {
            println!("=> a full list first exceeds 100 ms at about {count} objects");
            return;
        }
    }
    println!("=> a full list stays under 100 ms up to {count} objects");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = KubeSim::start(SimOptions::default()).await.unwrap();
    watch_latency(sim.addr()).await;
    list_threshold(sim.addr()).await;
}
