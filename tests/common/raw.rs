//! A scripted HTTP/1.1 upstream that writes its response by hand, one TCP write per
//! chunk. Only for what a real MCP server cannot be made to do: SSE split at awkward
//! byte positions, CRLF line ends, malformed or oversized events, a connection that dies
//! mid-stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the scripted response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating chunk is sent: a normal end of stream.
    Clean,
    /// The connection is closed without the terminating chunk: the upstream died.
    Abort,
    /// The connection is reset (RST): the upstream crashed or a middlebox cut it.
    Reset,
    /// Nothing more is sent, and the connection stays open: a hung upstream.
    Stall,
}

/// One scripted response, served to every request.
#[derive(Debug, Clone)]
pub struct Script {
    pub content_type: &'static str,
    pub chunks: Vec<Vec<u8>>,
    pub end: End,
    /// If set, each response stops after half its chunks until the test adds a permit:
    /// the test decides exactly when the second half of a stream flows.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// A running scripted upstream.
pub struct RawUpstream {
    pub addr: SocketAddr,
    /// Raw request heads and bodies received.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Bytes of response chunks written so far (all responses).
    pub written: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    /// `http://addr`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `script` on 127.0.0.1:0.
pub async fn serve(script: Script) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).unwrap();
            let script = script.clone();
            let log = log.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                log.lock().unwrap().push(request);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\r\n",
                    script.content_type
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let half = script.chunks.len() / 2;
                for (i, chunk) in script.chunks.iter().enumerate() {
                    if i == half
                        && let Some(gate) = &script.gate
                    {
                        gate.acquire().await.expect("gate open").forget();
                    }
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                    let _ = stream.flush().await;
                    // Separate TCP segments, so the proxy really reads the pieces apart
                    // (big scripts, for back-pressure, go as fast as they can).
                    if script.chunks.len() < 100 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                match script.end {
                    End::Clean => {
                        let _ = stream.write_all(b"0\r\n\r\n").await;
                        let _ = stream.shutdown().await;
                    }
                    End::Abort => {
                        let _ = stream.shutdown().await;
                    }
                    End::Reset => {
                        // Linger 0: close() sends RST instead of FIN (and does not
                        // block, which is what the deprecation warns about).
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                        drop(stream);
                    }
                    End::Stall => std::future::pending::<()>().await,
                }
            });
        }
    });
    RawUpstream {
        addr,
        requests,
        written,
        task,
    }
}

/// An SSE response of these chunks (each one TCP write), ended cleanly.
pub fn sse_script(chunks: &[&str]) -> Script {
    Script {
        content_type: "text/event-stream",
        chunks: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
        end: End::Clean,
        gate: None,
    }
}

/// An SSE upstream whose every stream sends `id: i` / `data: {data(i)}` for i in
/// 1..=events and pauses at the half until the test adds a permit to the returned gate:
/// the test decides when a stream may finish (e.g. after a reload).
pub async fn gated_sse(
    events: usize,
    data: impl Fn(usize) -> String,
) -> (RawUpstream, Arc<tokio::sync::Semaphore>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let chunks = (1..=events)
        .map(|i| format!("id: {i}\ndata: {}\n\n", data(i)).into_bytes())
        .collect();
    let upstream = serve(Script {
        content_type: "text/event-stream",
        chunks,
        end: End::Clean,
        gate: Some(gate.clone()),
    })
    .await;
    (upstream, gate)
}

/// Reads one request head and its content-length body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        let n = stream.read(&mut byte).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

/// Serves one fixed response to every request: `status_line` (e.g. `404 Not Found`),
/// extra header lines (`name: value`), and `body` with its content-length. For the
/// statuses and headers a real server sends only in situations hard to provoke.
pub async fn serve_fixed(status_line: &str, headers: &[&str], body: &str) -> RawUpstream {
    let mut head = format!(
        "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let response = [head.as_bytes(), body.as_bytes()].concat();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let response = response.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                log.lock().unwrap().push(request);
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    RawUpstream {
        addr,
        requests,
        written,
        task,
    }
}
