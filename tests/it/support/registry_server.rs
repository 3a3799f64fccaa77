//! Starts a real CNCF distribution registry (Debian `docker-registry`) for one test.
//!
//! Each server gets a free port on 127.0.0.1, its own storage directory, deletes enabled,
//! and optionally htpasswd (Basic) or token (Bearer) authentication. Its access log (one
//! line per HTTP request, on stdout) is kept so tests can count what any client sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How the registry authenticates clients.
pub enum ServerAuth {
    /// Anonymous read and write.
    None,
    /// Basic authentication against one htpasswd user.
    Htpasswd {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// Token authentication: the registry verifies JWTs signed by the certificate's key.
    Token {
        /// Token service URL put in challenges.
        realm: String,
        /// `service` (the token audience).
        service: String,
        /// Expected token issuer.
        issuer: String,
        /// PEM certificate whose key signs tokens.
        root_cert: PathBuf,
    },
}

/// A running registry, killed when dropped.
pub struct RegistryServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// HTTP method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Response status.
    pub status: u16,
}

impl RegistryServer {
    /// Starts an anonymous registry.
    pub fn start() -> Self {
        Self::start_with(ServerAuth::None)
    }

    /// Starts a registry with the given authentication and waits until `/v2/` answers.
    pub fn start_with(auth: ServerAuth) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match &auth {
            ServerAuth::None => String::new(),
            ServerAuth::Htpasswd { username, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", username, password])
                    .output()
                    .expect("htpasswd (apache2-utils) not found; run ci/install-test-deps.sh");
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: jisu-test\n    path: {}\n",
                    file.display()
                )
            }
            ServerAuth::Token {
                realm,
                service,
                issuer,
                root_cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: jisu-test-secret\n{auth_yaml}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let stdout = std::fs::File::create(dir.path().join("access.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("docker-registry not found; run ci/install-test-deps.sh");
        let mut server = RegistryServer { child, port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited with {status} before answering:\n{}",
                    self.registry_log()
                );
            }
            if let Some(status) = http_status(self.port, "GET", "/v2/")
                && (status == 200 || status == 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ within 20 s:\n{}",
                self.registry_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's own (logrus) log, for failure messages.
    pub fn registry_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request logged so far. The registry writes a line after the response is
    /// sent, so this first waits briefly for the log to stop growing.
    pub fn access_log(&self) -> Vec<AccessLine> {
        let path = self.dir.path().join("access.log");
        let mut last = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut text = String::new();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.len() == last {
                break;
            }
            last = text.len();
        }
        text.lines().filter_map(parse_access_line).collect()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a combined-log-format line: `IP - - [date] "METHOD PATH HTTP/1.1" STATUS SIZE ...`.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    let request_start = line.find('"')?;
    let rest = &line[request_start + 1..];
    let request_end = rest.find('"')?;
    let mut request = rest[..request_end].split(' ');
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    let status = rest[request_end + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(AccessLine {
        method,
        path,
        status,
    })
}

/// A bare HTTP/1.0 request with std only, so readiness checks need no async runtime.
fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn access_lines_parse() {
    let line = r#"127.0.0.1 - - [27/Nov/2026:23:17:16 +0000] "HEAD /v2/x/manifests/y HTTP/1.1" 404 91 "" "curl/7.88.1""#;
    assert_eq!(
        parse_access_line(line),
        Some(AccessLine {
            method: "HEAD".into(),
            path: "/v2/x/manifests/y".into(),
            status: 404
        })
    );
    assert_eq!(parse_access_line("time=... level=info"), None);
}
