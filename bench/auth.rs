//! The cost of resource-server mode per request (issue 24): `Access::admit` with a
//! valid ES256 token seen before (the verification reused) and seen for the first time
//! (header parse, key lookup, signature verification, claims, identity), with a token
//! whose signature is wrong, and with no token (the 401 path every OAuth client takes
//! once). The JWKS is served by a local HTTP server and
//! fetched once, before the measurement.
//!
//! Run: `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`
//! (numbers and machine in BENCHMARKS.md, "Token checks").

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sluice::auth::{Access, AccessSettings, ResourceSettings};
use sluice::metrics::Metrics;

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn token_checks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65]),
    }]})
    .to_string();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let jwks = jwks.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_| {
                    let jwks = jwks.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(jwks)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let issuer = format!("http://{addr}");
    let settings = AccessSettings {
        resource: Some(ResourceSettings {
            resource: RESOURCE.into(),
            authorization_servers: vec![issuer.clone()],
            jwks_url: Some(format!("{issuer}/jwks")),
            scopes: vec!["mcp:tools".into()],
            claims: vec!["tenant".into()],
            ..ResourceSettings::default()
        }),
        ..AccessSettings::default()
    };
    let access = Access::new(
        &settings,
        &sluice::tls::UpstreamTls::default(),
        &Arc::new(Metrics::new()),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": issuer, "sub": "alice", "aud": RESOURCE, "scope": "mcp:tools other",
        "client_id": "bench", "tenant": "acme", "iat": now, "exp": now + 3600,
    });
    let mut head = Header::new(Algorithm::ES256);
    head.kid = Some("k1".into());
    let signing = EncodingKey::from_ec_der(&pair.serialize_der());
    let token = jsonwebtoken::encode(&head, &claims, &signing).unwrap();
    let mut serial = 0u64;
    // A token never seen before (a new `jti`), signed outside the measurement.
    let mut fresh = || {
        serial += 1;
        let mut claims = claims.clone();
        claims["jti"] = json!(serial);
        bearer(&jsonwebtoken::encode(&head, &claims, &signing).unwrap())
    };
    let good = bearer(&token);
    let mut forged = token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let forged = bearer(&forged);
    let none = HeaderMap::new();
    let client = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // The first check fetches the keys.
    assert!(runtime.block_on(access.admit(&good, client)).is_ok());

    let mut group = c.benchmark_group("token-check");
    group.bench_function("es256-seen-before", |b| {
        b.iter(|| {
            runtime
                .block_on(access.admit(black_box(&good), client))
                .is_ok()
        })
    });
    group.bench_function("es256-first-sight", |b| {
        b.iter_batched(
            &mut fresh,
            |headers| runtime.block_on(access.admit(&headers, client)).is_ok(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("es256-bad-signature", |b| {
        b.iter(|| {
            runtime
                .block_on(access.admit(black_box(&forged), client))
                .is_err()
        })
    });
    group.bench_function("no-token", |b| {
        b.iter(|| {
            runtime
                .block_on(access.admit(black_box(&none), client))
                .is_err()
        })
    });
    group.finish();
}

criterion_group!(benches, token_checks);
criterion_main!(benches);
