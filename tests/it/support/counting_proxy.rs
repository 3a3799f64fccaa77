//! A TCP forwarder in front of a server that counts the HTTP/1.1 requests passing through,
//! so a test can say how many API calls a command made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request line ending every HTTP/1.1 request carries.
const MARKER: &[u8] = b" HTTP/1.1\r\n";

/// A running forwarder.
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT`, to point a client at.
    pub url: String,
    count: Arc<AtomicUsize>,
}

impl CountingProxy {
    /// Forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let mut buffer = vec![0u8; 64 * 1024];
                        // The last bytes of the previous read, so a marker split across
                        // two reads is still seen once.
                        let mut tail: Vec<u8> = Vec::new();
                        loop {
                            let n = match client_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut window = std::mem::take(&mut tail);
                            let seen_before = window.len();
                            window.extend_from_slice(&buffer[..n]);
                            let found = window
                                .windows(MARKER.len())
                                .enumerate()
                                .filter(|(i, w)| *w == MARKER && i + MARKER.len() > seen_before)
                                .count();
                            counter.fetch_add(found, Ordering::SeqCst);
                            let keep = window.len().min(MARKER.len() - 1);
                            tail = window[window.len() - keep..].to_vec();
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        CountingProxy { url, count }
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}
