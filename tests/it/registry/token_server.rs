//! A small token service for distribution's `auth: token` mode, so Bearer authentication is
//! tested against the real registry: it issues RS256 JWTs, signed with a throwaway RSA key by
//! the `openssl` CLI, that distribution itself verifies against the key's certificate.
//!
//! It grants every requested scope to the one known user, nothing to anonymous callers, and
//! answers 401 to wrong credentials, like ghcr.io's token endpoint does for a bad token.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SERVICE: &str = "jisu-test-registry";
pub const ISSUER: &str = "jisu-test-token-issuer";

pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

struct Config {
    key: PathBuf,
    x5c: String,
    username: String,
    password: String,
    requests: Arc<AtomicU64>,
}

impl TokenServer {
    pub async fn start(username: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=jisu-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl not found");
        assert!(status.success(), "openssl req failed");
        // x5c carries the DER certificate in standard base64: the PEM body without line breaks.
        let pem = std::fs::read_to_string(&cert).unwrap();
        let x5c: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let config = Arc::new(Config {
            key,
            x5c,
            username: username.into(),
            password: password.into(),
            requests: requests.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let config = config.clone();
                tokio::spawn(async move { serve(stream, &config).await });
            }
        });
        TokenServer {
            realm,
            cert,
            requests,
            task,
            _dir: dir,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, config: &Config) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    config.requests.fetch_add(1, Ordering::Relaxed);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let basic = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_owned())
        })
        .and_then(|v| v.strip_prefix("Basic ").map(str::to_owned))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (status, body) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((u, p)) if u == config.username && p == config.password => {
            let token = sign(config, u, &scopes).await;
            (
                "200 OK",
                json!({"token": token, "expires_in": 300}).to_string(),
            )
        }
        Some(_) => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_owned(),
        ),
        None => {
            let token = sign(config, "", &[]).await;
            (
                "200 OK",
                json!({"token": token, "expires_in": 300}).to_string(),
            )
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `repository:<name>:<actions>` → the JWT `access` entry granting those actions.
fn access(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
}

async fn sign(config: &Config, subject: &str, scopes: &[String]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [config.x5c]});
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("jti-{now}-{}", scopes.len()),
        "access": scopes.iter().filter_map(|s| access(s)).collect::<Vec<_>>(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = openssl_sign(&config.key, signing_input.as_bytes()).await;
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWT `RS256`), which is what `openssl dgst -sign` does
/// with an RSA key.
async fn openssl_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(data).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}

#[test]
fn scope_to_access_and_percent_decoding() {
    assert_eq!(
        percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
        "repository:a/b:pull,push"
    );
    assert_eq!(
        access("repository:a/b:pull,push"),
        Some(json!({"type": "repository", "name": "a/b", "actions": ["pull", "push"]}))
    );
}
