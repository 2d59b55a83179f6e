//! TLS on both sides (issue 23): HTTPS upstreams (trust, SNI and Host, mutual TLS, a
//! refused certificate), and the TLS listener (a TLS client through it, a plain client
//! against it, the handshake timeout, certificate reload). Certificates are made in the
//! test (`common::tls::Pki`). The compatibility-matrix rows with real MCP peers are in
//! `mcp_matrix.rs` (`matrix_https_upstream`, `matrix_tls_listener`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use sluice::app::Running;
use sluice::tls::{ListenerTls, TlsSettings, UpstreamTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::common::mcp::{self, SECRET_TEXT};
use crate::common::tls::{self, Pki};
use crate::common::{client, proxy};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// What a TLS upstream saw of each request: the SNI of its connection and its `Host`.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// An HTTPS upstream on 127.0.0.1 with `config` (a certificate, maybe a client CA) that
/// answers a POST with a JSON-RPC result and a GET with a legacy `endpoint` event naming
/// it by an absolute `https://localhost:<port>` URL, and records what it saw.
async fn tls_upstream(config: rustls::ServerConfig) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = stream.get_ref().1.server_name().map(str::to_string);
                let port = addr.port();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let host = request
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string);
                    record.lock().unwrap().push((sni.clone(), host));
                    let response = if request.method() == hyper::Method::GET {
                        Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(Full::new(Bytes::from(format!(
                                "event: endpoint\ndata: https://localhost:{port}/messages?s=1\n\n"
                            ))))
                    } else {
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(
                                br#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#,
                            )))
                    };
                    async { Ok::<_, std::convert::Infallible>(response.unwrap()) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn upstream_only(upstream: UpstreamTls) -> TlsSettings {
    TlsSettings {
        upstream,
        listener: None,
    }
}

/// The value of the series `name` (e.g. `sluice_tls_cert_reloads_total{outcome="ok"}`).
fn metric(running: &Running, name: &str) -> f64 {
    let text = running.proxy().metrics().encode();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_named_by_sni_and_host() {
    let pki = Pki::new();
    let (addr, seen) = tls_upstream(Pki::server_config(&pki.server, None)).await;
    // By name, so that SNI is sent (no SNI for an IP address).
    let upstream = format!("https://localhost:{}", addr.port());
    let sluice = proxy::start_tls(&upstream, vec![], upstream_only(pki.upstream())).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), INITIALIZE).await;
    assert_eq!(response.status(), 200);
    assert!(client::text(response).await.contains(r#""ok":true"#));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some("localhost".to_string()),
            Some(format!("localhost:{}", addr.port()))
        )]
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_upstream_accepts_sluice_only_with_its_client_certificate() {
    let pki = Pki::new();
    let config = Pki::server_config(&pki.server, Some(&pki.ca));
    let (addr, seen) = tls_upstream(config).await;
    let upstream = format!("https://127.0.0.1:{}", addr.port());

    let without = proxy::start_tls(&upstream, vec![], upstream_only(pki.upstream())).await;
    let response = client::post(&format!("{}/mcp", without.url()), INITIALIZE).await;
    assert_eq!(response.status(), 502, "no client certificate: refused");
    assert!(client::text(response).await.contains("\"jsonrpc\""));
    without.stop().await;
    assert!(seen.lock().unwrap().is_empty());

    let with = UpstreamTls {
        client_cert: Some(pki.client.cert.clone()),
        client_key: Some(pki.client.key.clone()),
        ..pki.upstream()
    };
    let sluice = proxy::start_tls(&upstream, vec![], upstream_only(with)).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), INITIALIZE).await;
    assert_eq!(response.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 1);
    sluice.stop().await;
}

/// The upstream's certificate is signed by a CA the system does not trust: the client
/// gets a JSON-RPC error with 502, and sluice's log names the certificate problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_nobody_trusts_is_refused_and_the_log_says_why() {
    let pki = Pki::new();
    let (addr, seen) = tls_upstream(Pki::server_config(&pki.server, None)).await;
    let log = pki.dir.path().join("sluice.log");
    let port = client::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--upstream", &format!("https://127.0.0.1:{}", addr.port())])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--no-watch", "--no-cache"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("sluice starts");
    eventually("sluice listens", async || {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    let response = client::post(&format!("http://127.0.0.1:{port}/mcp"), INITIALIZE).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(body["id"], json!(1), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(seen.lock().unwrap().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("request answered by the proxy"))
        .unwrap_or_else(|| panic!("no error line in\n{log}"));
    assert!(
        line.contains("invalid peer certificate") && line.contains("UnknownIssuer"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_files_that_cannot_be_used_stop_start_with_one_line_naming_the_file() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("missing.pem");
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cases: Vec<(Vec<String>, &Path, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                missing.display().to_string(),
                "--tls-key".into(),
                pki.server.key.display().to_string(),
            ],
            &missing,
            "cannot read",
        ),
        (
            vec![
                "--tls-cert".into(),
                garbage.display().to_string(),
                "--tls-key".into(),
                pki.server.key.display().to_string(),
            ],
            &garbage,
            "no usable PEM certificate",
        ),
        (
            // The client's key with the server's certificate: not a pair.
            vec![
                "--tls-cert".into(),
                pki.server.cert.display().to_string(),
                "--tls-key".into(),
                pki.client.key.display().to_string(),
            ],
            &pki.server.cert,
            "",
        ),
        (
            vec![
                "--upstream".into(),
                "https://127.0.0.1:9".into(),
                "--upstream-ca".into(),
                garbage.display().to_string(),
            ],
            &garbage,
            "no usable PEM certificate",
        ),
    ];
    for (args, file, reason) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--listen", "127.0.0.1:0", "--no-watch", "--no-cache"])
            .args(if args.contains(&"--upstream".to_string()) {
                vec![]
            } else {
                vec!["--upstream", "http://127.0.0.1:9"]
            })
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line:\n{stderr}");
        assert!(
            lines[0].contains(&file.display().to_string()) && lines[0].contains(reason),
            "{args:?}: {stderr}"
        );
    }
}

fn listener_only(pki: &Pki) -> TlsSettings {
    TlsSettings {
        upstream: Default::default(),
        listener: Some(pki.server.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_reaches_a_plain_upstream_through_the_tls_listener() {
    let pki = Pki::new();
    let upstream = mcp::spawn_mcp_server().await;
    let sluice = proxy::start_tls(
        &proxy::base_of(&upstream.url),
        vec![proxy::rust(
            "redact",
            r#"{"patterns":["sk-live-[a-z0-9]+"]}"#,
        )],
        listener_only(&pki),
    )
    .await;
    assert!(sluice.url().starts_with("https://"), "{}", sluice.url());
    let url = format!("{}{}", sluice.url(), mcp::MCP_PATH);
    let client = mcp::try_connect_via(&url, pki.reqwest())
        .await
        .expect("the rmcp client connects over TLS");
    let secret = client.call_text("get_secret", json!(null)).await.unwrap();
    assert_ne!(secret, SECRET_TEXT);
    assert_eq!(secret, "the key is [REDACTED]");
    client.service.cancel().await.unwrap();

    // curl, offering h2 by ALPN: the listener takes it.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&pki.ca)
        .args(["-o", "/dev/null", "-w", "%{http_version}", "-X", "POST"])
        .args(["-H", "content-type: application/json"])
        .args(["-H", "accept: application/json, text/event-stream"])
        .args(["--data", INITIALIZE, &url])
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_client_of_the_tls_listener_is_told_to_use_https() {
    let pki = Pki::new();
    let upstream = mcp::spawn_mcp_server().await;
    let sluice =
        proxy::start_tls(&proxy::base_of(&upstream.url), vec![], listener_only(&pki)).await;
    let mut tcp = TcpStream::connect(sluice.addr()).await.unwrap();
    tcp.write_all(b"GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_string(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.ends_with("sluice: this port speaks TLS; use an https:// URL\n"),
        "{answer}"
    );
    assert_eq!(
        metric(
            &sluice,
            "sluice_tls_handshake_failures_total{kind=\"plain_http\"}"
        ),
        1.0
    );
    sluice.stop().await;
}

/// The attack: open TCP to the TLS listener and send nothing (or half a ClientHello).
/// With one connection slot, that would lock every client out for ever; the handshake
/// is bounded by the header read timeout, and the slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_the_handshake_is_closed_and_frees_its_slot() {
    let pki = Pki::new();
    let upstream = mcp::spawn_mcp_server().await;
    let settings = sluice::proxy::ProxySettings {
        shutdown_grace: Duration::from_secs(1),
        connections: sluice::http::ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let sluice = sluice::app::start(sluice::config::Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: proxy::base_of(&upstream.url),
        plugins: vec![],
        proxy: settings,
        cache_dir: None,
        record_dir: None,
        tape: Default::default(),
        tls: listener_only(&pki),
        stdio: None,
        routes: Vec::new(),
    })
    .await
    .unwrap();
    for (n, opening) in [&b""[..], &[0x16, 0x03, 0x01][..]].into_iter().enumerate() {
        // The one slot is free (the previous round's client has been seen to go).
        let sluice_ref = &sluice;
        eventually("no connection open", async || {
            metric(sluice_ref, "sluice_connections_open") == 0.0
        })
        .await;
        let mut idle = TcpStream::connect(sluice.addr()).await.unwrap();
        idle.write_all(opening).await.unwrap();
        // The server closes it (bounded wait: the test fails rather than hangs).
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
            .await
            .expect("the server closed the silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(
            metric(
                &sluice,
                "sluice_connection_timeouts_total{kind=\"handshake\"}"
            ),
            (n + 1) as f64
        );
        // The one slot is free again: a real client gets through.
        let (cert, _) = tls::handshake(sluice.addr(), pki.client_config())
            .await
            .expect("a TLS client is served after the silent one is gone");
        assert!(!cert.is_empty());
    }
    sluice.stop().await;
}

/// Replaces `files` with `cert` and `key` the way deployment tools do: written aside,
/// then renamed over the old ones.
fn replace(files: &ListenerTls, cert: &str, key: &str) {
    let aside = |path: &Path| {
        let mut name = path.as_os_str().to_owned();
        name.push(".new");
        std::path::PathBuf::from(name)
    };
    std::fs::write(aside(&files.cert), cert).unwrap();
    std::fs::write(aside(&files.key), key).unwrap();
    std::fs::rename(aside(&files.cert), &files.cert).unwrap();
    std::fs::rename(aside(&files.key), &files.key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_reloaded_on_change_and_a_broken_pair_keeps_the_old_one() {
    let pki = Pki::new();
    let upstream = mcp::spawn_mcp_server().await;
    let mut sluice =
        proxy::start_tls(&proxy::base_of(&upstream.url), vec![], listener_only(&pki)).await;
    sluice.watch_files().unwrap();
    let first = std::fs::read(&pki.server.cert).unwrap();
    let (old_cert, mut old) = tls::handshake(sluice.addr(), pki.client_config())
        .await
        .unwrap();
    let served = |pem: &[u8]| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem)
            .unwrap()
            .to_vec()
    };
    assert_eq!(old_cert, served(&first));

    let (cert, key) = pki.leaf("renewed", 3, true);
    replace(&pki.server, &cert, &key);
    let renewed = served(cert.as_bytes());
    let (pki_ref, addr) = (&pki, sluice.addr());
    eventually(
        "a new connection gets the renewed certificate",
        async || {
            tls::handshake(addr, pki_ref.client_config())
                .await
                .unwrap()
                .0
                == renewed
        },
    )
    .await;
    assert_eq!(
        metric(&sluice, "sluice_tls_cert_reloads_total{outcome=\"ok\"}"),
        1.0
    );
    // The connection opened before the reload still works, with its certificate.
    old.write_all(b"GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), old.read_to_string(&mut answer))
        .await
        .expect("the old connection is answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

    // A broken certificate file: refused, counted, and the renewed one keeps serving.
    std::fs::write(&pki.server.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let sluice_ref = &sluice;
    eventually("the broken pair is refused", async || {
        metric(
            sluice_ref,
            "sluice_tls_cert_reloads_total{outcome=\"refused\"}",
        ) >= 1.0
    })
    .await;
    let (now, _) = tls::handshake(sluice.addr(), pki.client_config())
        .await
        .unwrap();
    assert_eq!(now, renewed);
    sluice.stop().await;
}

/// A legacy (2024-11-05) `endpoint` event naming an HTTPS upstream by an absolute URL
/// (its default-less port, its name) is pointed at sluice, with the scheme the client
/// used: `https://` through the TLS listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_endpoint_of_an_https_upstream_points_at_the_tls_listener() {
    let pki = Pki::new();
    let (addr, _) = tls_upstream(Pki::server_config(&pki.server, None)).await;
    let upstream = format!("https://localhost:{}", addr.port());
    let sluice = proxy::start_tls(
        &upstream,
        vec![],
        TlsSettings {
            upstream: pki.upstream(),
            listener: Some(pki.server.clone()),
        },
    )
    .await;
    let response = pki
        .reqwest()
        .get(format!("{}/sse", sluice.url()))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains(&format!(
            "data: https://127.0.0.1:{}/messages?s=1",
            sluice.addr().port()
        )),
        "{body}"
    );
    sluice.stop().await;
}
