//! Resource-server mode (`[auth]`): sluice as the OAuth 2.1 resource server in front of
//! an MCP server. A real OAuth client flow (the Python SDK's client-credentials
//! provider), the rmcp client with a bearer token, and every kind of bad token, each
//! refused with the status and `WWW-Authenticate` the specs give it before anything
//! reaches the upstream. The authorization server is `common::authz` (keys per test).

use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use sluice::app::Running;

use crate::common::authz::{self, Authz};
use crate::common::{client, mcp, peers, proxy};

/// sluice started from a config file the way the binary does it, on `port`.
async fn start(file: &Path, port: u16, record: Option<&Path>) -> Running {
    proxy::start_from_file(file, &format!("127.0.0.1:{port}"), record).await
}

/// The `[auth]` table for `resource`, trusting `authz`.
fn auth_table(authz: &Authz, resource: &str, extra: &str) -> String {
    format!(
        "[auth]\nresource = \"{resource}\"\nauthorization_servers = [\"{}\"]\njwks_url = \"{}\"\nscopes = [\"mcp:tools\"]\nclaims = [\"client_id\", \"tenant\"]\n{extra}",
        authz.issuer,
        authz.jwks_url()
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    authz: Authz,
    upstream: mcp::McpServer,
    sluice: Running,
    /// `http://127.0.0.1:port/mcp`: the resource.
    resource: String,
}

async fn setup(extra: &str, record: Option<&Path>) -> Setup {
    let authz = Authz::start().await;
    let upstream = mcp::spawn_mcp_server().await;
    let port = client::free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            "upstream = \"{}\"\n{}",
            proxy::base_of(&upstream.url),
            auth_table(&authz, &resource, extra)
        ),
    )
    .unwrap();
    let sluice = start(&file, port, record).await;
    Setup {
        _dir: dir,
        authz,
        upstream,
        sluice,
        resource,
    }
}

/// POSTs a tools/list (a valid JSON-RPC request) with `authorization`, if any.
async fn call(url: &str, authorization: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let response = client::send(request.body(Full::new(Bytes::from(body))).unwrap()).await;
    let (parts, body) = response.into_parts();
    let text = client::text(http::Response::from_parts(parts.clone(), body)).await;
    (parts.status, parts.headers, text)
}

/// No request the upstream received carried an `Authorization` header.
fn upstream_never_saw_a_token(upstream: &mcp::McpServer) {
    for request in upstream.requests() {
        assert!(
            !request.headers.contains_key(header::AUTHORIZATION),
            "the upstream got {:?} {} with Authorization",
            request.method,
            request.path
        );
    }
}

#[tokio::test]
async fn the_python_sdk_oauth_client_gets_a_token_and_works_through_sluice() {
    let s = setup("", None).await;
    let report = peers::python_client_args(
        &s.resource,
        &[
            "--oauth-client-id",
            authz::CLIENT_ID,
            "--oauth-client-secret",
            authz::CLIENT_SECRET,
            "--oauth-issuer",
            &s.authz.issuer,
            "--oauth-scope",
            "mcp:tools",
        ],
    )
    .await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["echo"], "héllo", "{report:#}");
    assert_eq!(report["count"], "counted 3", "{report:#}");
    // It was turned away once (401 + resource_metadata), then got exactly one token.
    assert_eq!(report["oauth_tokens"], 1, "{report:#}");
    assert_eq!(s.authz.tokens_issued(), 1);
    assert!(!s.upstream.requests().is_empty());
    upstream_never_saw_a_token(&s.upstream);
    let metrics = s.sluice.proxy().metrics().encode();
    assert!(
        metrics.contains("sluice_auth_denied_total{kind=\"missing\"} 1"),
        "{metrics}"
    );
    s.sluice.stop().await;
}

#[tokio::test]
async fn an_rmcp_client_with_a_bearer_token_gets_in_and_its_identity_is_recorded_not_its_token() {
    let tapes = tempfile::tempdir().unwrap();
    let s = setup("", Some(tapes.path())).await;
    let mut claims = s.authz.claims(&s.resource, "alice", "mcp:tools other");
    claims["tenant"] = json!("acme");
    let token = s.authz.sign(&claims);
    let client = mcp::connect_bearer(&s.resource, &token).await.unwrap();
    assert_eq!(
        client
            .call_text("echo", json!({"text": "hi"}))
            .await
            .unwrap(),
        "hi"
    );
    client.service.cancel().await.unwrap();
    upstream_never_saw_a_token(&s.upstream);
    s.sluice.stop().await;
    let tape = std::fs::read_dir(tapes.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    assert!(!tape.contains(&token), "the token is on the tape");
    let identity = tape
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|r| r.get("identity").cloned())
        .expect("a request record names its caller");
    assert_eq!(identity["subject"], "alice");
    assert_eq!(identity["client_id"], authz::CLIENT_ID);
    assert_eq!(identity["scopes"], json!(["mcp:tools", "other"]));
    assert_eq!(
        identity["claims"],
        json!({"client_id": authz::CLIENT_ID, "tenant": "acme"})
    );
    assert_eq!(identity["client_addr"], "127.0.0.1");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_the_spec_answer_before_the_upstream() {
    let s = setup("leeway_secs = 5\n", None).await;
    let authz = &s.authz;
    let good = || authz.claims(&s.resource, "alice", "mcp:tools");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good();
        change(&mut claims);
        authz.sign(&claims)
    };
    let now = authz::now();
    let unpublished = authz::SigningKey::new("never-published");
    let metadata = format!(
        "resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"",
        s.sluice.addr().port()
    );
    let cases: Vec<(&str, Option<String>, StatusCode, Option<&str>)> = vec![
        ("no Authorization", None, StatusCode::UNAUTHORIZED, None),
        (
            "Basic credentials",
            Some("Basic dXNlcjpwYXNz".into()),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "a garbage header",
            Some("Bearer <script>".into()),
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        ),
        (
            "not a JWT",
            Some("Bearer abc".into()),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "expired",
            Some(format!("Bearer {}", with(&|c| c["exp"] = json!(now - 60)))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "not yet valid",
            Some(format!("Bearer {}", with(&|c| c["nbf"] = json!(now + 600)))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "another resource's token",
            Some(format!(
                "Bearer {}",
                with(&|c| c["aud"] = json!("http://127.0.0.1:1/other"))
            )),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "no audience",
            Some(format!(
                "Bearer {}",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                })
            )),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                with(&|c| c["iss"] = json!("http://127.0.0.1:1"))
            )),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "alg none",
            Some(format!("Bearer {}", authz::unsigned(&good()))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "HS256 signed with the public key",
            Some(format!(
                "Bearer {}",
                authz::hs256_with_public_key(&authz.key(), &good())
            )),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "an unknown kid",
            Some(format!("Bearer {}", unpublished.sign(&good()))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "a forged signature",
            Some(format!("Bearer {}x", with(&|_| {}))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "a missing scope",
            Some(format!("Bearer {}", with(&|c| c["scope"] = json!("other")))),
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
        ),
    ];
    for (what, authorization, status, error) in &cases {
        let (got, headers, body) = call(&s.resource, authorization.as_deref()).await;
        assert_eq!(got, *status, "{what}: {body}");
        let challenge = headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
        assert!(challenge.contains(&metadata), "{what}: {challenge}");
        assert!(
            challenge.contains("scope=\"mcp:tools\""),
            "{what}: {challenge}"
        );
        match error {
            Some(code) => assert!(
                challenge.contains(&format!("error=\"{code}\"")),
                "{what}: {challenge}"
            ),
            None => assert!(!challenge.contains("error="), "{what}: {challenge}"),
        }
    }
    assert!(
        s.upstream.requests().is_empty(),
        "a refused request reached the upstream"
    );
    // One fetch of the key set: the unknown kid came too soon after it to fetch again.
    assert_eq!(s.authz.jwks_hits(), 1);
    // The same harness lets a good token through.
    let (got, _, body) = call(&s.resource, Some(&format!("Bearer {}", with(&|_| {})))).await;
    assert_eq!(got, StatusCode::OK, "{body}");
    assert_eq!(s.upstream.requests().len(), 1);
    upstream_never_saw_a_token(&s.upstream);
    let metrics = s.sluice.proxy().metrics().encode();
    for kind in [
        "expired",
        "not_yet_valid",
        "audience",
        "issuer",
        "insufficient_scope",
        "malformed",
    ] {
        assert!(
            metrics.contains(&format!("sluice_auth_denied_total{{kind=\"{kind}\"}} ")),
            "{kind}: {metrics}"
        );
    }
    s.sluice.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let s = setup("jwks_min_refresh_secs = 1\n", None).await;
    let claims = s.authz.claims(&s.resource, "alice", "mcp:tools");
    let bearer = |token: String| format!("Bearer {token}");
    let (status, _, _) = call(&s.resource, Some(&bearer(s.authz.sign(&claims)))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.authz.jwks_hits(), 1);
    // Past the shortest refresh interval, the issuer rotates: a token with the new kid
    // makes sluice fetch the set again, once.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.authz.rotate("key-2");
    for _ in 0..3 {
        let (status, _, body) = call(&s.resource, Some(&bearer(s.authz.sign(&claims)))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(s.authz.jwks_hits(), 2);
    // Past the interval again, a kid the issuer never published: one more fetch, and
    // still refused.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stranger = authz::SigningKey::new("never-published");
    let (status, headers, _) = call(&s.resource, Some(&bearer(stranger.sign(&claims)))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(s.authz.jwks_hits(), 3);
    assert_eq!(s.upstream.requests().len(), 4);
    s.sluice.stop().await;
}

#[tokio::test]
async fn made_up_kids_cannot_make_sluice_hammer_the_issuer() {
    let s = setup("", None).await;
    let claims = s.authz.claims(&s.resource, "alice", "mcp:tools");
    let (status, _, _) = call(
        &s.resource,
        Some(&format!("Bearer {}", s.authz.sign(&claims))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Twenty tokens with made-up kids within the (default, 30 s) refresh interval.
    for i in 0..20 {
        let key = authz::SigningKey::new(&format!("made-up-{i}"));
        let (status, _, _) =
            call(&s.resource, Some(&format!("Bearer {}", key.sign(&claims)))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.authz.jwks_hits(), 1, "made-up kids fetched the key set");
    assert_eq!(s.upstream.requests().len(), 1);
    s.sluice.stop().await;
}

#[tokio::test]
async fn an_opaque_token_is_checked_by_introspection() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", authz::CLIENT_SECRET)).unwrap();
    let authz_url = |s: &Authz| s.introspection_url();
    // The introspection table needs the server's URL: start it first, then sluice.
    let authz = Authz::start().await;
    let upstream = mcp::spawn_mcp_server().await;
    let port = client::free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let file = secret_dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            "upstream = \"{}\"\n{}\n[auth.introspection]\nurl = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret\"\n",
            proxy::base_of(&upstream.url),
            auth_table(&authz, &resource, ""),
            authz_url(&authz),
            authz::CLIENT_ID
        ),
    )
    .unwrap();
    let sluice = start(&file, port, None).await;
    let now = authz::now();
    let good = authz.opaque(json!({"sub": "bob", "aud": resource, "iss": authz.issuer, "scope": "mcp:tools", "exp": now + 300}));
    let other = authz.opaque(json!({"sub": "bob", "aud": "http://127.0.0.1:1/other", "scope": "mcp:tools", "exp": now + 300}));
    let (status, _, body) = call(&resource, Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The answer is reused: a second request does not ask again.
    let (status, _, _) = call(&resource, Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(authz.introspections(), 1);
    let (status, headers, _) = call(&resource, Some(&format!("Bearer {other}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (status, _, _) = call(&resource, Some("Bearer opaque-unknown")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.requests().len(), 2);
    upstream_never_saw_a_token(&upstream);
    sluice.stop().await;
}

#[tokio::test]
async fn each_route_serves_its_own_metadata_and_takes_only_its_own_tokens() {
    let authz = Authz::start().await;
    let a = mcp::spawn_mcp_server().await;
    let b = mcp::spawn_mcp_server().await;
    let port = client::free_port();
    let resource = |r: &str| format!("http://127.0.0.1:{port}/{r}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    let route = |name: &str, upstream: &mcp::McpServer| {
        format!(
            "[[route]]\nprefix = \"/{name}\"\nupstream = \"{}\"\n{}",
            proxy::base_of(&upstream.url),
            auth_table(&authz, &resource(name), "").replace("[auth]", "[route.auth]")
        )
    };
    std::fs::write(&file, format!("{}\n{}", route("a", &a), route("b", &b))).unwrap();
    let sluice = start(&file, port, None).await;
    for name in ["a", "b"] {
        let url =
            format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/{name}/mcp");
        let response =
            client::send(Request::get(&url).body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let doc: Value = serde_json::from_str(&client::text(response).await).unwrap();
        assert_eq!(doc["resource"], resource(name));
        assert_eq!(doc["authorization_servers"], json!([authz.issuer]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
    }
    let for_a = authz.sign(&authz.claims(&resource("a"), "alice", "mcp:tools"));
    let (status, _, _) = call(&resource("a"), Some(&format!("Bearer {for_a}"))).await;
    assert_eq!(status, StatusCode::OK);
    // A's token is no good at B: another resource.
    let (status, _, _) = call(&resource("b"), Some(&format!("Bearer {for_a}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.requests().len(), 1);
    assert!(b.requests().is_empty());
    sluice.stop().await;
}

#[test]
fn sluice_stdio_refuses_auth_it_could_never_satisfy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "upstream = \"http://127.0.0.1:9/mcp\"\n[auth]\nresource = \"http://127.0.0.1:9/mcp\"\nauthorization_servers = [\"http://127.0.0.1:9\"]\njwks_url = \"http://127.0.0.1:9/jwks\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["stdio", "--no-cache", "--config"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sluice stdio cannot check tokens"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout is the protocol's: {:?}",
        out.stdout
    );
}

#[tokio::test]
async fn a_session_is_its_callers_and_another_caller_cannot_use_its_id() {
    let s = setup("", None).await;
    let token = |sub: &str| {
        format!(
            "Bearer {}",
            s.authz.sign(&s.authz.claims(&s.resource, sub, "mcp:tools"))
        )
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let (status, headers, _) = call(&s.resource, Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = |who: String| {
        let (url, session) = (s.resource.clone(), session.clone());
        async move {
            let request = Request::post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18")
                .header(header::AUTHORIZATION, who)
                .body(Full::new(Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
                )))
                .unwrap();
            client::send(request).await.status()
        }
    };
    let before = s.upstream.requests().len();
    assert_eq!(
        list(bob).await,
        StatusCode::NOT_FOUND,
        "bob used alice's session"
    );
    assert_eq!(
        s.upstream.requests().len(),
        before,
        "bob's request reached the upstream"
    );
    assert_eq!(list(alice).await, StatusCode::OK);
    s.sluice.stop().await;
}
