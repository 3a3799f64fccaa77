//! `prism proxy` (npm `@stoplight/prism-cli`) in front of a fake upstream: every request is
//! validated against GitHub's OpenAPI description (npm `@octokit/openapi`) and, with
//! `--errors`, an invalid request or response is answered with an error instead of being
//! forwarded, so the client under test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo_root};

/// A running prism proxy, killed on drop.
pub struct PrismProxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrismProxy {
    /// Starts prism on a free port proxying to `upstream` and waits until it listens
    /// (prism takes about 11 s to load the description).
    pub fn start(upstream: &str) -> Self {
        let root = repo_root();
        let prism = root.join("node_modules/.bin/prism");
        let spec = root.join("node_modules/@octokit/openapi/generated/api.github.com.json");
        assert!(
            prism.exists() && spec.exists(),
            "prism or the OpenAPI description is missing; run `npm ci` (ci/install-test-deps.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("prism.log");
        let port = free_port();
        let child = Command::new(prism)
            .args(["proxy", "-h", "127.0.0.1", "-p", &port.to_string()])
            .arg(&spec)
            .arg(upstream)
            .arg("--errors")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prism.err")).unwrap(),
            ))
            .spawn()
            .expect("prism starts");
        let mut proxy = PrismProxy {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("prism exited with {status}: {}", proxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "prism did not start: {}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything prism printed, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrismProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
