//! The ingress under attack (issue 21): idle and slow connections, a flood of them, h2
//! limits, a client that stops reading, the admin API reached from a browser, a
//! non-loopback listener without a Host list, spoofed forwarding headers, and error
//! bodies that would tell a client where the upstream is. Each test is the attack; the
//! proxy runs with its defaults unless the test needs a limit small enough to reach.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::Value;
use sluice::app::{self, Running};
use sluice::config::Config;
use sluice::proxy::{ConnectionLimits, ProxySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::operations::value;
use crate::common::{client, proxy, raw};

/// How long any one step may take before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(30);

fn settings(limits: ConnectionLimits) -> ProxySettings {
    ProxySettings {
        shutdown_grace: Duration::from_secs(1),
        connections: limits,
        ..ProxySettings::default()
    }
}

/// An upstream that answers every request with one JSON-RPC result.
async fn json_upstream() -> raw::RawUpstream {
    raw::serve_fixed(
        "200 OK",
        &["content-type: application/json"],
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
    )
    .await
}

/// Reads until the peer closes (EOF or reset), or panics after `PATIENCE`; returns what
/// was read.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: the proxy kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn request_head(extra: &str, body: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Item 5: connections.

#[tokio::test]
async fn idle_and_slow_connections_are_closed_at_the_header_read_timeout() {
    let upstream = json_upstream().await;
    let sluice = proxy::start_with(
        &upstream.url(),
        vec![],
        settings(ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        }),
    )
    .await;
    let addr = sluice.addr();
    // Silent: not a byte (the protocol is never even detected).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Half an h2 preface: still detecting the protocol.
    let mut preface = TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Slowloris: an HTTP/1.1 head that never ends.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Keep-alive: one full exchange, then nothing.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(request_head("", "{}").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    read_until_closed(&mut silent, "a silent connection").await;
    read_until_closed(&mut preface, "half an h2 preface").await;
    read_until_closed(&mut slow, "an unfinished head").await;
    read_until_closed(&mut kept, "an idle keep-alive connection").await;
    let metrics = sluice.proxy().metrics().encode();
    assert!(
        value(
            &metrics,
            "sluice_connection_timeouts_total",
            r#"kind="header""#
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503_and_counted() {
    let upstream = json_upstream().await;
    let sluice = proxy::start_with(
        &upstream.url(),
        vec![],
        settings(ConnectionLimits {
            max_connections: 4,
            ..ConnectionLimits::default()
        }),
    )
    .await;
    let addr = sluice.addr();
    // The attacker holds every slot with connections that say nothing.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_until("four connections counted", || {
        value(
            &sluice.proxy().metrics().encode(),
            "sluice_connections_open",
            "",
        ) == Some(4.0)
    })
    .await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    over.write_all(request_head("", "{}").as_bytes())
        .await
        .unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(PATIENCE, over.read_exact(&mut status))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status), "HTTP/1.1 503");
    read_until_closed(&mut over, "a connection over the cap").await;
    assert!(
        upstream.requests.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    let metrics = sluice.proxy().metrics().encode();
    assert!(
        value(&metrics, "sluice_connections_refused_total", "").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    // A slot that frees up is a client served again.
    drop(held.pop());
    let url = format!("{}/mcp", sluice.url());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut again = TcpStream::connect(addr).await.unwrap();
        again
            .write_all(request_head("connection: close\r\n", "{}").as_bytes())
            .await
            .unwrap();
        let answer = read_until_closed(&mut again, "a connection under the cap").await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sluice.stop().await;
}

/// The server's first SETTINGS frame on an h2 (prior knowledge) connection, as
/// (identifier, value) pairs.
async fn h2_settings(addr: SocketAddr) -> Vec<(u16, u32)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut head))
            .await
            .expect("a frame")
            .unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        let (kind, ack) = (head[3], head[4] & 1 == 1);
        if kind == 4 && !ack {
            return payload
                .chunks(6)
                .map(|s| {
                    (
                        u16::from_be_bytes([s[0], s[1]]),
                        u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                    )
                })
                .collect();
        }
    }
}

#[tokio::test]
async fn h2_connections_are_told_the_stream_and_header_limits() {
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let settings = h2_settings(sluice.addr()).await;
    let get = |id| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    const MAX_CONCURRENT_STREAMS: u16 = 3;
    const MAX_HEADER_LIST_SIZE: u16 = 6;
    assert_eq!(get(MAX_CONCURRENT_STREAMS), Some(100), "{settings:?}");
    assert_eq!(get(MAX_HEADER_LIST_SIZE), Some(16 << 10), "{settings:?}");
    sluice.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_an_sse_stream_is_cut_at_the_write_timeout() {
    // An upstream that has far more to say than the sockets between can hold.
    let event = format!("data: {}\n\n", "x".repeat(64 << 10));
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![event.into_bytes(); 512],
        end: raw::End::Stall,
        gate: None,
    })
    .await;
    let sluice = proxy::start_with(
        &upstream.url(),
        vec![],
        settings(ConnectionLimits {
            client_write_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        }),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(sluice.addr()).await.unwrap();
    client
        .write_all(request_head("", "{}").as_bytes())
        .await
        .unwrap();
    // The client reads nothing from here on.
    let metrics = sluice.proxy().metrics().clone();
    wait_until("the stream opened", || metrics.streams_open() == 1).await;
    wait_until("the stalled stream was ended", || {
        metrics.streams_open() == 0
    })
    .await;
    let text = metrics.encode();
    assert_eq!(
        value(&text, "sluice_connection_timeouts_total", r#"kind="write""#),
        Some(1.0),
        "{text}"
    );
    drop(client);
    sluice.stop().await;
}

// Item 9: a listener beyond loopback.

fn config(listen: &str, upstream: &str, allowed_hosts: Vec<String>) -> Config {
    Config {
        access: Default::default(),
        listen: listen.parse().unwrap(),
        upstream: upstream.to_string(),
        plugins: vec![],
        proxy: ProxySettings {
            allowed_hosts,
            ..ProxySettings::default()
        },
        cache_dir: None,
        record_dir: None,
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    }
}

#[tokio::test]
async fn a_listener_beyond_loopback_needs_an_explicit_host_list() {
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let refused = app::start(config("0.0.0.0:0", &upstream.url(), vec![])).await;
    let Err(error) = refused else {
        panic!("sluice started on 0.0.0.0 with the Host check off");
    };
    assert!(error.to_string().contains("--allow-host"), "{error}");
    // Saying so explicitly, `*` included, is a decision the proxy accepts.
    let started = app::start(config("0.0.0.0:0", &upstream.url(), vec!["*".into()]))
        .await
        .expect("starts with --allow-host '*'");
    started.stop().await;
}

// Item 12: forwarding headers.

const SPOOFED: [(&str, &str); 5] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("forwarded", "for=6.6.6.6"),
    ("x-real-ip", "6.6.6.6"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
];

async fn upstream_head(trusted: Vec<String>) -> String {
    let upstream = json_upstream().await;
    let sluice = proxy::start_with(
        &upstream.url(),
        vec![],
        ProxySettings {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..ProxySettings::default()
        },
    )
    .await;
    let mut request = Request::post(format!("{}/mcp", sluice.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in SPOOFED {
        request = request.header(name, value);
    }
    let response = client::send(
        request
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    sluice.stop().await;
    upstream.requests.lock().unwrap()[0].to_ascii_lowercase()
}

#[tokio::test]
async fn client_supplied_forwarding_headers_do_not_reach_the_upstream() {
    let head = upstream_head(vec![]).await;
    assert!(!head.contains("6.6.6.6"), "{head}");
    assert!(!head.contains("evil.example"), "{head}");
    assert!(!head.contains("x-forwarded-proto"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("forwarded: for=127.0.0.1\r\n"), "{head}");
}

#[tokio::test]
async fn a_trusted_proxys_forwarding_headers_pass_with_the_proxy_appended() {
    let head = upstream_head(vec!["127.0.0.0/8".into()]).await;
    assert!(
        head.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("forwarded: for=6.6.6.6, for=127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("x-real-ip: 6.6.6.6\r\n"), "{head}");
    assert!(
        head.contains("x-forwarded-host: evil.example\r\n"),
        "{head}"
    );
}

// Item 13: error bodies.

#[tokio::test]
async fn an_unreachable_upstream_is_not_described_to_the_client() {
    // A port nothing listens on, and a path that must not leak.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = format!("http://127.0.0.1:{port}/internal-prefix");
    let sluice = proxy::start(&upstream, vec![]).await;
    let url = format!("{}/mcp", sluice.url());
    let with_id = client::post(&url, r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).await;
    assert_eq!(with_id.status(), 502);
    let rpc: Value = serde_json::from_str(&client::text(with_id).await).unwrap();
    assert_eq!(rpc["id"], 7, "{rpc}");
    let without_id = client::post(&url, r#"{"jsonrpc":"2.0","method":"notifications/x"}"#).await;
    assert_eq!(without_id.status(), 502);
    let text = client::text(without_id).await;
    for body in [rpc["error"]["message"].as_str().unwrap(), text.as_str()] {
        for secret in [
            port.to_string().as_str(),
            "internal-prefix",
            "127.0.0.1",
            "os error",
            "refused",
        ] {
            assert!(!body.contains(secret), "{secret:?} leaked: {body}");
        }
        assert!(body.contains("request "), "no request id: {body}");
    }
    sluice.stop().await;
}

// Item 8: the admin API.

#[tokio::test]
async fn the_admin_api_refuses_to_listen_beyond_loopback_without_a_token() {
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let mut sluice = proxy::start(&upstream.url(), vec![]).await;
    let refused = sluice.serve_admin("0.0.0.0:0".parse().unwrap(), None).await;
    let Err(error) = refused else {
        panic!("the admin API listened on 0.0.0.0 without a token");
    };
    assert!(error.to_string().contains("token"), "{error}");
    sluice
        .serve_admin("0.0.0.0:0".parse().unwrap(), Some("s3cret".into()))
        .await
        .expect("with a token it may");
    sluice.stop().await;
}

async fn admin_send(admin: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client::send(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_web_page_cannot_reach_the_admin_api() {
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let mut sluice = proxy::start(&upstream.url(), vec![]).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    // A no-cors POST from any page carries its Origin.
    let origin = [("origin", "https://evil.example")];
    assert_eq!(
        admin_send(admin, "POST", "/admin/reload", &origin).await,
        403
    );
    assert_eq!(admin_send(admin, "GET", "/metrics", &origin).await, 403);
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let rebound = [("host", "rebind.evil.example:9090")];
    assert_eq!(
        admin_send(admin, "POST", "/admin/reload", &rebound).await,
        403
    );
    assert_eq!(
        admin_send(admin, "GET", "/admin/plugins", &rebound).await,
        403
    );
    assert_eq!(sluice.reloader().status().reloads.succeeded, 0);
    // Tools that are not browsers still get in.
    assert_eq!(admin_send(admin, "POST", "/admin/reload", &[]).await, 200);
    assert_eq!(
        admin_send(admin, "GET", "/metrics", &[("host", "localhost:9090")]).await,
        200
    );
    sluice.stop().await;
}

/// A reload source whose reloads (every call after the first, which is the start)
/// wait until the test opens it, and that counts them.
#[derive(Clone, Default)]
struct HeldSource {
    calls: Arc<AtomicUsize>,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldSource {
    fn source(&self) -> sluice::reload::ChainSource {
        let this = self.clone();
        Box::new(move || {
            if this.calls.fetch_add(1, Ordering::SeqCst) > 0 {
                let (lock, opened) = &*this.open;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = opened.wait(open).unwrap();
                }
            }
            Ok(vec![])
        })
    }

    fn open(&self) {
        let (lock, opened) = &*self.open;
        *lock.lock().unwrap() = true;
        opened.notify_all();
    }

    fn reloads(&self) -> usize {
        self.calls.load(Ordering::SeqCst) - 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reload_requests_share_reloads_instead_of_queueing_one_each() {
    const CALLERS: usize = 20;
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let held = HeldSource::default();
    let mut sluice: Running = app::start_with_source(
        config("127.0.0.1:0", &upstream.url(), vec![]),
        held.source(),
        vec![],
    )
    .await
    .unwrap();
    let admin = proxy::serve_admin(&mut sluice).await;
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(admin_send_owned(admin)))
        .collect();
    // Every caller is in (one reload running, the rest waiting), then the reload ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all_in = false;
    while Instant::now() < deadline {
        let status = serde_json::to_value(sluice.reloader().status()).unwrap();
        if status["reloads"]["in_progress"] == CALLERS {
            all_in = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.open();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 200);
    }
    // The first reload, and one more for everyone who asked while it ran.
    assert!(
        held.reloads() <= 2,
        "{CALLERS} concurrent requests made {} reloads",
        held.reloads()
    );
    assert!(all_in, "the {CALLERS} requests were never all waiting");
    sluice.stop().await;
}

async fn admin_send_owned(admin: SocketAddr) -> u16 {
    admin_send(admin, "POST", "/admin/reload", &[]).await
}

#[tokio::test]
async fn the_admin_token_can_come_from_a_file_and_stays_out_of_the_process_list() {
    let upstream = raw::serve_fixed("200 OK", &[], "").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token-8c1e\n").unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, admin_port) = (free_port(), free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--upstream", &upstream.url()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--admin-token-file")
        .arg(&token_file)
        .args(["--no-watch", "--no-cache"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sluice starts");
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(admin).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sluice exited: {status}");
        }
        assert!(Instant::now() < deadline, "the admin API never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("file-token-8c1e"));
    assert_eq!(admin_send(admin, "GET", "/metrics", &[]).await, 401);
    assert_eq!(
        admin_send(
            admin,
            "GET",
            "/metrics",
            &[("authorization", "Bearer file-token-8c1e")]
        )
        .await,
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
