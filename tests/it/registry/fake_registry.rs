//! A scripted HTTP server standing in for a registry or a token service that misbehaves:
//! it answers each request with what a test's handler returns, records every request
//! (method, target, Authorization header) and can stream a body of any length or claim a
//! `Content-Length` it never sends. One request per connection (`Connection: close`).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
}

/// The body of a reply.
pub enum Body {
    Bytes(Vec<u8>),
    /// `total` bytes of `fill`, sent without a `Content-Length` (until the connection closes).
    Stream {
        fill: u8,
        total: usize,
    },
    /// A `Content-Length` header with this value, and then no body at all.
    ClaimedLength(u64),
}

/// What the fake answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    pub fn streamed(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &handler, &log).await;
                });
            }
        });
        FakeRegistry { host, seen, task }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let seen = Seen {
        method: request_line.next().unwrap_or_default().to_owned(),
        target: request_line.next().unwrap_or_default().to_owned(),
        authorization: header("authorization"),
    };
    // Drain a request body so the client is not cut off while sending it.
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut have = head.len() - (end + 4);
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    log.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    let reason = match reply.status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match &reply.body {
        Body::Bytes(bytes) => {
            out.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
            stream.write_all(out.as_bytes()).await?;
            if seen.method != "HEAD" {
                stream.write_all(bytes).await?;
            }
        }
        Body::ClaimedLength(length) => {
            out.push_str(&format!("Content-Length: {length}\r\n\r\n"));
            stream.write_all(out.as_bytes()).await?;
        }
        Body::Stream { fill, total } => {
            out.push_str("\r\n");
            stream.write_all(out.as_bytes()).await?;
            let block = vec![*fill; 64 * 1024];
            let mut sent = 0;
            while sent < *total {
                let n = block.len().min(total - sent);
                stream.write_all(&block[..n]).await?;
                sent += n;
            }
        }
    }
    stream.shutdown().await
}
