//! An OAuth 2.1 authorization server for the tests: RFC 8414 metadata, a JWKS, a token
//! endpoint (client_credentials with the RFC 8707 `resource`), and RFC 7662
//! introspection. Its signing keys (ES256) are made per server with rcgen; tokens for
//! the negative cases (expired, wrong audience, `alg: none`, HS256 signed with the
//! public key …) are made by the test with [`Authz::sign`] and friends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The one client the server knows.
pub const CLIENT_ID: &str = "test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "test-client-secret";

/// A signing key: its `kid`, its private half and its public JWK.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// A new P-256 key.
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw(); // 0x04 || x || y
        assert_eq!(raw.len(), 65);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65]),
        });
        Self {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
        }
    }

    /// `claims` signed with this key (ES256, this `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

struct State {
    issuer: String,
    /// The published keys; the last one signs new tokens.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    /// Opaque tokens and what introspection says about them.
    opaque: Mutex<HashMap<String, Value>>,
    jwks_hits: AtomicUsize,
    tokens_issued: AtomicUsize,
    introspections: AtomicUsize,
}

/// A running authorization server on 127.0.0.1.
pub struct Authz {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port`: the issuer, and the base of every endpoint.
    pub issuer: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Authz {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Authz {
    /// Starts the server with one signing key.
    pub async fn start() -> Authz {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(State {
            issuer: issuer.clone(),
            keys: Mutex::new(vec![Arc::new(SigningKey::new("key-1"))]),
            opaque: Mutex::new(HashMap::new()),
            jwks_hits: AtomicUsize::new(0),
            tokens_issued: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Authz {
            addr,
            issuer,
            state,
            task,
        }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The introspection endpoint.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.issuer)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The key that signs new tokens.
    pub fn key(&self) -> Arc<SigningKey> {
        self.state.keys.lock().unwrap().last().unwrap().clone()
    }

    /// Publishes a new key (key rotation) and signs with it from now on.
    pub fn rotate(&self, kid: &str) -> Arc<SigningKey> {
        let key = Arc::new(SigningKey::new(kid));
        self.state.keys.lock().unwrap().push(key.clone());
        key
    }

    /// Claims of a good token for `resource`: this issuer, `sub`, `scope`, valid for 5
    /// minutes.
    pub fn claims(&self, resource: &str, sub: &str, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer, "sub": sub, "aud": resource, "scope": scope,
            "client_id": CLIENT_ID, "iat": now, "nbf": now - 1, "exp": now + 300,
        })
    }

    /// `claims` signed with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        self.key().sign(claims)
    }

    /// An opaque token introspection will describe with `claims` (`active` added).
    pub fn opaque(&self, claims: Value) -> String {
        let token = format!("opaque-{}", uuid::Uuid::new_v4().simple());
        self.state
            .opaque
            .lock()
            .unwrap()
            .insert(token.clone(), claims);
        token
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    /// How many introspection calls it answered.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }
}

/// `alg: none`: the claims and no signature.
pub fn unsigned(claims: &Value) -> String {
    let head = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    format!("{head}.{body}.")
}

/// The classic key-confusion attack: HS256 with the issuer's public key (its JWK text
/// and its raw point both tried by attackers) as the HMAC secret, under the real `kid`.
pub fn hs256_with_public_key(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let secret = key.jwk.to_string();
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The client id a request authenticates as (HTTP Basic, or the form's
/// client_id/client_secret), if its secret is right.
fn client(request_auth: Option<&str>, form: &HashMap<String, String>) -> Option<String> {
    let (id, secret) = match request_auth.and_then(|a| a.strip_prefix("Basic ")) {
        Some(basic) => {
            let pair = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(basic)
                    .ok()?,
            )
            .ok()?;
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            (decode(id)?, decode(secret)?)
        }
        None => (
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ),
    };
    (id == CLIENT_ID && secret == CLIENT_SECRET).then_some(id)
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    match path.as_str() {
        "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
            json_response(
                StatusCode::OK,
                json!({
                    "issuer": state.issuer,
                    "token_endpoint": format!("{}/token", state.issuer),
                    "jwks_uri": format!("{}/jwks", state.issuer),
                    "introspection_endpoint": format!("{}/introspect", state.issuer),
                    "authorization_endpoint": format!("{}/authorize", state.issuer),
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "code_challenge_methods_supported": ["S256"],
                }),
            )
        }
        "/jwks" => {
            state.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = state
                .keys
                .lock()
                .unwrap()
                .iter()
                .map(|k| k.jwk.clone())
                .collect();
            json_response(StatusCode::OK, json!({ "keys": keys }))
        }
        "/token" => {
            let form = form(&body);
            let Some(client_id) = client(auth.as_deref(), &form) else {
                return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
            };
            if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "unsupported_grant_type"}),
                );
            }
            let now = now();
            let scope = form.get("scope").cloned().unwrap_or_default();
            let claims = json!({
                "iss": state.issuer, "sub": client_id, "client_id": client_id,
                "aud": form.get("resource").cloned().unwrap_or_default(),
                "scope": scope, "iat": now, "exp": now + 300,
            });
            let key = state.keys.lock().unwrap().last().unwrap().clone();
            state.tokens_issued.fetch_add(1, Ordering::SeqCst);
            json_response(
                StatusCode::OK,
                json!({"access_token": key.sign(&claims), "token_type": "Bearer", "expires_in": 300, "scope": scope}),
            )
        }
        "/introspect" => {
            let form = form(&body);
            if client(auth.as_deref(), &form).is_none() {
                return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
            }
            state.introspections.fetch_add(1, Ordering::SeqCst);
            let known = form
                .get("token")
                .and_then(|t| state.opaque.lock().unwrap().get(t).cloned());
            match known {
                Some(Value::Object(mut claims)) => {
                    claims.insert("active".into(), Value::Bool(true));
                    json_response(StatusCode::OK, Value::Object(claims))
                }
                _ => json_response(StatusCode::OK, json!({"active": false})),
            }
        }
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}
