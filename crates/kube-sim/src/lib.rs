//! A simulated Kubernetes API server for tests: the real wire format over HTTP, with
//! emulated controllers, so that the `kube` crate and kubectl can drive it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kube_sim::{KubeSim, SimOptions, ImageBehavior, FaultRule};
//! let sim = KubeSim::start(
//!     SimOptions::default()
//!         .time_scale(100.0)
//!         .image("ghcr.io/acme/api:broken", ImageBehavior::NeverReady),
//! )
//! .await?;
//! sim.write_kubeconfig("/tmp/kubeconfig")?;
//! sim.faults().add(FaultRule::error(503).verb("patch").times(1));
//! println!("{}", sim.url());
//! # Ok(()) }
//! ```

pub mod behaviour;
pub mod changes;
pub mod clock;
pub mod controllers;
pub mod decode;
pub mod discovery;
pub mod faults;
pub mod fieldset;
pub mod http;
pub mod managed;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod rollout;
pub mod routes;
pub mod schema;
pub mod selectors;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;
pub mod writes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use behaviour::{ImageBehavior, ImageRules};
pub use changes::StoredChange;
pub use faults::{FaultRule, Faults};
pub use store::EventType;

use clock::SimClock;
use controllers::ControllerConfig;
use http::Shared;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Simulated seconds per real second (100.0: one simulated second is 10 ms).
    pub time_scale: f64,
    /// Image behaviours for the kubelet stand-in.
    pub images: ImageRules,
    /// Initial fault rules.
    pub faults: Vec<FaultRule>,
    /// How many change events are kept for watches to resume from; older versions get
    /// 410 Gone (the real server keeps about five minutes of etcd history).
    pub watch_history: usize,
    /// Real time between controller passes.
    pub controller_tick: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            port: 0,
            time_scale: 1.0,
            images: ImageRules::default(),
            faults: Vec::new(),
            watch_history: 10_000,
            controller_tick: Duration::from_millis(10),
        }
    }
}

impl SimOptions {
    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the time scale (simulated seconds per real second).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale;
        self
    }

    /// Scripts the behaviour of images whose reference contains `pattern`.
    pub fn image(mut self, pattern: &str, behavior: ImageBehavior) -> Self {
        self.images.rules.push((pattern.to_string(), behavior));
        self
    }

    /// Behaviour of images no rule matches (default: ready after 2 simulated seconds).
    pub fn default_image_behavior(mut self, behavior: ImageBehavior) -> Self {
        self.images.default = behavior;
        self
    }

    /// Adds a fault rule active from the start.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// Sets the watch history length.
    pub fn watch_history(mut self, events: usize) -> Self {
        self.watch_history = events;
        self
    }
}

/// A running simulator. Dropping it stops the server and the controllers.
pub struct KubeSim {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // A simulator started with `start_blocking` owns its runtime thread.
    runtime: Option<(
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl KubeSim {
    /// Starts on the current Tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let addr = listener.local_addr()?;
        let clock = SimClock::new(opts.time_scale);
        let (mut store, _rx) = store::Inner::new(clock.clone(), opts.watch_history);
        // A fresh cluster has these namespaces; clients assume `default` exists.
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let ctx = writes::WriteCtx {
                manager: "kube-apiserver",
                subresource: "",
                dry_run: false,
                validation: None,
            };
            writes::write(
                &mut store,
                *resources::ids::NAMESPACE,
                "",
                "",
                writes::Change::Create(body),
                ctx,
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        let shared = Arc::new(Shared::new(
            store,
            Faults::new(opts.faults.clone()),
            addr,
            clock,
            opts.images.clone(),
        ));
        let cfg = ControllerConfig {
            images: opts.images.clone(),
            tick: opts.controller_tick,
        };
        let tasks = vec![
            tokio::spawn(http::serve(listener, shared.clone())),
            tokio::spawn(controllers::run(shared.clone(), cfg)),
        ];
        tracing::info!(%addr, "kube-sim listening");
        Ok(Self {
            shared,
            tasks,
            runtime: None,
        })
    }

    /// Starts on a runtime of its own, in a background thread, for synchronous tests.
    pub fn start_blocking(opts: SimOptions) -> std::io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match KubeSim::start(opts).await {
                    Ok(sim) => {
                        let _ = ready_tx.send(Ok(sim.shared.clone()));
                        let _ = stop_rx.await;
                        drop(sim);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        });
        let shared = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("simulator thread exited before starting"))??;
        Ok(Self {
            shared,
            tasks: Vec::new(),
            runtime: Some((thread, stop_tx)),
        })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig pointing at the simulator (context `kube-sim`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Writes [`KubeSim::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// The live fault configuration.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.shared.clock
    }

    /// Scripts the behaviour of images containing `pattern` from now on, ahead of every
    /// earlier rule. Running pods follow the new behaviour at once (their age counts).
    pub fn script_image(&self, pattern: &str, behavior: ImageBehavior) {
        let mut rules = self
            .shared
            .images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rules.rules.insert(0, (pattern.to_string(), behavior));
        drop(rules);
        self.shared.wake.notify_one();
    }

    /// Jumps the simulated clock ahead by `sim`: pending readiness delays, crash-loop
    /// back-offs and progress deadlines all come `sim` closer, without waiting.
    pub fn advance(&self, sim: Duration) {
        self.shared.clock.advance(sim);
        self.shared.wake.notify_one();
    }

    /// A snapshot of one stored object, for assertions that bypass HTTP.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let res = resources::by_kind(kind)?;
        self.shared
            .lock()
            .get(res, namespace, name)
            .map(|o| (*o).clone())
    }

    /// Calls `hook` with every change stored from now on (creations, updates, status
    /// writes, deletions; by clients and by the emulated controllers alike), in
    /// `resourceVersion` order, synchronously: the store stays locked while the hook
    /// runs, so it sees each state before anything else changes. Keep it quick, and do not
    /// call back into the simulator from it (that would deadlock). A hook that panics
    /// inside a controller pass aborts that pass; record violations and assert on them
    /// from the test instead.
    pub fn on_change(&self, hook: impl Fn(&StoredChange) + Send + Sync + 'static) {
        self.shared.lock().add_hook(std::sync::Arc::new(hook));
    }

    /// Every change stored from now on, in order and without gaps, through an unbounded
    /// channel (a [`KubeSim::on_change`] hook that forwards each change).
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<StoredChange> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.on_change(move |c| {
            // A dropped receiver just stops listening.
            let _ = tx.send(c.clone());
        });
        rx
    }

    /// Number of stored objects of all kinds.
    pub fn object_count(&self) -> usize {
        self.shared.lock().len()
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some((thread, stop)) = self.runtime.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// A kubeconfig for a server at `url`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user:\n    token: kube-sim\npreferences: {{}}\n"
    )
}
