//! A TCP proxy in front of the real registry that strips `mount`/`from` from blob upload
//! requests, so distribution opens a plain upload session (202) as a registry that refuses
//! a cross-repository mount does. Everything else passes through unchanged; each connection
//! carries one request (`Connection: close` is added) so every request head is seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct MountRefusingProxy {
    pub host: String,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MountRefusingProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let refused = Arc::new(AtomicU64::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, &counter).await;
                });
            }
        });
        MountRefusingProxy {
            host,
            refused,
            task,
        }
    }

    /// Mount requests turned into plain upload requests so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for MountRefusingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, upstream: &str, refused: &AtomicU64) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the end of the head, so no body bytes are consumed here.
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let (request_line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    let mut parts: Vec<String> = request_line.split(' ').map(str::to_owned).collect();
    if parts.len() == 3 && parts[0] == "POST" && parts[1].contains("mount=") {
        parts[1] = parts[1].split('?').next().unwrap_or_default().to_owned();
        refused.fetch_add(1, Ordering::Relaxed);
    }
    let headers: Vec<&str> = rest
        .split("\r\n")
        .filter(|h| !h.is_empty() && !h.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let rewritten = format!(
        "{}\r\n{}\r\nConnection: close\r\n\r\n",
        parts.join(" "),
        headers.join("\r\n")
    );
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(rewritten.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
