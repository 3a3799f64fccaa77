//! A real S3-compatible server for one test (moto, PyPI `moto[server]`, pinned in
//! ci/requirements.txt), and a proxy in front of it that tampers with one upload.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::free_port;

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `moto_server` on 127.0.0.1, killed when dropped.
pub struct MotoServer {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers; a start that fails (the
    /// port taken in between) is retried on another port.
    pub async fn start() -> Self {
        jisu_deploy::tls::ensure_provider();
        let http = reqwest::Client::new();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("a temporary file for moto's log");
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().unwrap())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("moto_server not found; run ci/install-test-deps.sh (pip moto[server])");
            let mut server = MotoServer {
                child,
                port,
                log,
                http: http.clone(),
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("moto_server did not start:\n{}", failures.join("\n---\n"));
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if self.http.get(self.endpoint()).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("no answer within 30 s:\n{}", self.log()))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's address, for a proxy in front of it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What moto printed (one line per request), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Creates `bucket` (moto takes an unsigned `PUT /BUCKET`).
    pub async fn create_bucket(&self, bucket: &str) {
        self.send(self.http.put(format!("{}/{bucket}", self.endpoint())))
            .await;
    }

    /// Writes an object with a plain object_store client, bypassing the store under test
    /// (moto refuses an unsigned PUT over an existing object).
    pub async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let s3 = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id("testing-other-client")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        s3.put(&ObjectPath::from(key), body.into())
            .await
            .unwrap_or_else(|err| panic!("moto refused PUT {key}: {err}"));
    }

    async fn send(&self, request: reqwest::RequestBuilder) {
        let response = request.send().await.expect("moto answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "moto answered {status}: {body}");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`TamperingProxy`] does to the first PUT body it forwards.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Drops this many bytes from the end (and says so in Content-Length).
    Truncate(usize),
    /// Inverts the byte at this offset (the length stays).
    Flip(usize),
}

/// A proxy in front of a server that forwards whole HTTP/1.1 requests and changes the
/// body of the first PUT that carries one. The changed request stays well-formed (its
/// Content-Length matches what is sent), so the server stores what it received and
/// answers 200: the client believes the upload succeeded, as it would if the bytes had
/// been damaged anywhere between its buffer and the server's disk.
///
/// Each connection carries one request: the proxy adds `Connection: close`, so both the
/// server and the client end the connection after the response.
pub struct TamperingProxy {
    /// `http://127.0.0.1:PORT`, to use as the endpoint.
    pub url: String,
    tampered: Arc<AtomicBool>,
}

impl TamperingProxy {
    /// Forwards to `target`, tampering as `tamper` says.
    pub async fn start(target: SocketAddr, tamper: Tamper) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tampered = Arc::new(AtomicBool::new(false));
        let done = tampered.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let done = done.clone();
                tokio::spawn(async move {
                    // A broken connection only fails the request the client made on it.
                    let _ = forward(client, target, tamper, &done).await;
                });
            }
        });
        TamperingProxy { url, tampered }
    }

    /// Whether a request body was changed.
    pub fn tampered(&self) -> bool {
        self.tampered.load(Ordering::SeqCst)
    }
}

/// Forwards one request from `client` to `target` and the response back.
async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    tamper: Tamper,
    tampered: &AtomicBool,
) -> std::io::Result<()> {
    let (head, mut body) = read_request(&mut client).await?;
    let mut lines: Vec<String> = head
        .split("\r\n")
        .filter(|line| {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            name != "connection" && name != "content-length"
        })
        .map(str::to_owned)
        .collect();
    // Only the first PUT with a body is changed; later ones pass as they came.
    if lines[0].starts_with("PUT ")
        && !body.is_empty()
        && tampered
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        match tamper {
            Tamper::Truncate(bytes) => body.truncate(body.len().saturating_sub(bytes)),
            Tamper::Flip(offset) => body[offset] ^= 0xff,
        }
    }
    lines.push(format!("Content-Length: {}", body.len()));
    lines.push("Connection: close".to_owned());
    let mut server = TcpStream::connect(target).await?;
    server
        .write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
        .await?;
    server.write_all(&body).await?;
    tokio::io::copy(&mut server, &mut client).await?;
    client.shutdown().await
}

/// Reads one request: its head (without the blank line) and its Content-Length body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut buffer = Vec::new();
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > 64 * 1024 {
            return Err(invalid("request head over 64 KiB"));
        }
        let mut chunk = [0u8; 8192];
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Err(invalid("connection closed inside the request head"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..end].to_vec()).map_err(|_| invalid("head not UTF-8"))?;
    let length: usize = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer.split_off(end + 4);
    if body.len() < length {
        let mut rest = vec![0u8; length - body.len()];
        client.read_exact(&mut rest).await?;
        body.extend_from_slice(&rest);
    }
    body.truncate(length);
    Ok((head, body))
}
