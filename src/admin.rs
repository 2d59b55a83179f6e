//! The admin API, on its own listener (loopback by default, optional bearer token):
//! `GET /admin/plugins` shows the current chain, its generation and the reload
//! history; `POST /admin/reload` builds and swaps in a new chain, re-pointing the
//! plugins its JSON body names at other files (`{"plugins": [{"name": "guard", "file":
//! "/abs/new.wasm"}], "route": "name"}`, all or nothing); `GET /metrics` is the
//! Prometheus scrape endpoint (`metrics`); `GET /admin/holds` lists the messages plugins
//! hold for approval, and `POST /admin/holds/<id>/approve` or `/deny` decides one.
//!
//! Browsers are kept out even on loopback, where no token is needed: a request with an
//! `Origin` header (any page's `fetch`, including a no-cors POST, which a browser sends
//! without asking anyone) or with a `Host` that is neither a loopback name nor an IP
//! address (DNS rebinding) is refused before anything else. Concurrent reloads share
//! one (`Reloader::reload`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::holds::{Decision, Holds};
use crate::http::{Handler, ProxyBody, full, origin};
use crate::reload::{LoadError, ReloadError, Reloader, Swap, Trigger};

/// The largest `POST /admin/reload` body: a few names and paths.
const MAX_RELOAD_BODY: usize = 64 * 1024;

/// The body of `POST /admin/reload`; none (or an empty one) is a plain reload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// Plugins to re-point at other files.
    #[serde(default)]
    plugins: Vec<Swap>,
    /// The route whose chain to reload (as `?route=`).
    route: Option<String>,
}
use crate::tape::Recorder;

/// The admin API over a reloader.
pub struct Admin {
    reloader: Arc<Reloader>,
    token: Option<String>,
    recorder: Option<Arc<Recorder>>,
    /// Each `[[route]]`'s reloader, by route name (`?route=<name>`).
    routes: Vec<(String, Arc<Reloader>)>,
    /// The messages plugins hold for a decision.
    holds: Arc<Holds>,
}

impl Admin {
    /// `token`, when set, must arrive as `Authorization: Bearer <token>`.
    pub fn new(reloader: Arc<Reloader>, token: Option<String>) -> Self {
        Self {
            reloader,
            token,
            recorder: None,
            routes: Vec::new(),
            holds: Arc::default(),
        }
    }

    /// The held messages this API lists and decides (the proxies' own).
    pub fn with_holds(mut self, holds: Arc<Holds>) -> Self {
        self.holds = holds;
        self
    }

    /// `POST /admin/holds/<id>/approve` or `/deny`.
    fn decide(&self, path: &str) -> Response<ProxyBody> {
        let decided = path
            .strip_prefix("/admin/holds/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(id, what)| {
                let decision = match what {
                    "approve" => Decision::Approve,
                    "deny" => Decision::Deny,
                    _ => return None,
                };
                Some((id.parse::<u64>().ok()?, decision))
            });
        let Some((id, decision)) = decided else {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": "use POST /admin/holds/<id>/approve or /admin/holds/<id>/deny"}),
            );
        };
        if !self.holds.decide(id, decision) {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no message held with id {id} (decided, timed out, or its client left)")}),
            );
        }
        let decision = match decision {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        };
        tracing::info!(hold = id, decision, "held message decided on the admin API");
        reply(StatusCode::OK, json!({"id": id, "decision": decision}))
    }

    /// The routes' chains, which `?route=<name>` on `/admin/plugins` and
    /// `/admin/reload` picks (without it: the default chain).
    pub fn with_routes(mut self, routes: Vec<(String, Arc<Reloader>)>) -> Self {
        self.routes = routes;
        self
    }

    /// The reloader a request names with `?route=`, or the default one; `Err`: the
    /// name of no route.
    fn reloader_for<'a>(&self, request: &'a Request<Incoming>) -> Result<Arc<Reloader>, &'a str> {
        self.reloader_named(route_param(request))
    }

    /// The reloader of route `route`, or the default one; `Err`: the name of no route.
    fn reloader_named<'a>(&self, route: Option<&'a str>) -> Result<Arc<Reloader>, &'a str> {
        match route {
            None => Ok(self.reloader.clone()),
            Some(name) => self
                .routes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.clone())
                .ok_or(name),
        }
    }

    /// Reads the tape recorder's figures at scrape time, when recording.
    pub fn with_recorder(mut self, recorder: Option<Arc<Recorder>>) -> Self {
        self.recorder = recorder;
        self
    }

    fn metrics(&self) -> Response<ProxyBody> {
        let metrics = self.reloader.metrics();
        if let Some(recorder) = &self.recorder {
            metrics.set_tape_dropped(recorder.dropped());
            metrics.set_tape_queued(recorder.queued_bytes());
        }
        Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(full(metrics.encode()))
            .expect("static parts form a valid response")
    }

    fn authorised(&self, request: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(reason) = from_a_browser(&request) {
            tracing::warn!(reason, "admin request refused");
            return reply(StatusCode::FORBIDDEN, json!({ "error": reason }));
        }
        if !self.authorised(&request) {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            );
        }
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics(),
            (&Method::GET, "/admin/plugins") => match self.reloader_for(&request) {
                Ok(reloader) => reply(
                    StatusCode::OK,
                    serde_json::to_value(reloader.status()).unwrap_or_default(),
                ),
                Err(name) => no_route(name),
            },
            (&Method::POST, "/admin/reload") => self.reload(request).await,
            (&Method::GET, "/admin/holds") => {
                reply(StatusCode::OK, json!({ "holds": self.holds.list() }))
            }
            (&Method::POST, path) if path.starts_with("/admin/holds/") => self.decide(path),
            (_, "/admin/plugins" | "/admin/reload" | "/admin/holds") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method not allowed"}),
            ),
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }
}

impl Admin {
    /// `POST /admin/reload`: a plain reload, or with a body, swaps.
    async fn reload(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let in_query = route_param(&request).map(str::to_string);
        let asked = match reload_request(request.into_body()).await {
            Ok(asked) => asked,
            Err(refused) => return refused,
        };
        let route = match (in_query, asked.route) {
            (Some(a), Some(b)) if a != b => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("?route={a} and the body's route {b:?} differ")}),
                );
            }
            (a, b) => a.or(b),
        };
        if !asked.plugins.is_empty()
            && let Some(refusal) = self.may_swap()
        {
            return refusal;
        }
        let reloader = match self.reloader_named(route.as_deref()) {
            Ok(reloader) => reloader,
            Err(name) => return no_route(name),
        };
        let swaps = asked.plugins;
        let swapped: Vec<String> = swaps.iter().map(|s| s.name.clone()).collect();
        let reloaded = tokio::task::spawn_blocking(move || {
            if swaps.is_empty() {
                reloader.reload(Trigger::Admin).map(|generation| {
                    let mut now = reloader.current_files();
                    now.generation = generation;
                    now
                })
            } else {
                reloader.swap(&swaps)
            }
        })
        .await;
        match reloaded {
            Ok(Ok(reloaded)) => {
                let mut body = serde_json::to_value(reloaded).unwrap_or_default();
                if !swapped.is_empty() {
                    body["swapped"] = json!(swapped);
                }
                reply(StatusCode::OK, body)
            }
            Ok(Err(e)) => refused(&e),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            ),
        }
    }
}

impl Admin {
    /// Why these swaps are refused before anything is read, if they are. A swap loads
    /// a file of the caller's choosing into the chain, with the plugin's grants (its
    /// headers, its state): without an admin token any local process could put its own
    /// code in place of a guard, so swaps need one (a plain reload, which re-reads only
    /// the operator's files, does not). Only a regular file is then read
    /// ([`LoadError::NotAFile`]).
    fn may_swap(&self) -> Option<Response<ProxyBody>> {
        if self.token.is_none() {
            tracing::warn!("admin swap refused: no admin token is configured");
            return Some(reply(
                StatusCode::FORBIDDEN,
                json!({"error": "swapping a plugin to another file needs an admin token \
                    (--admin-token-file): without one, any local process could load its \
                    own code into the chain"}),
            ));
        }
        None
    }
}

/// The answer to a refused reload: 404 for a plugin the chain does not have (with the
/// chain's names), 400 for another fault of the request, 422 for a plugin or config
/// file that does not load.
fn refused(e: &ReloadError) -> Response<ProxyBody> {
    let mut body = json!({"error": e.reason(), "generation": e.generation});
    let status = match &*e.source {
        LoadError::UnknownPlugin { known, .. } => {
            body["plugins"] = json!(known);
            StatusCode::NOT_FOUND
        }
        error if error.is_bad_request() => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    reply(status, body)
}

/// The body of `POST /admin/reload`, or the answer refusing it.
async fn reload_request(body: Incoming) -> Result<ReloadRequest, Response<ProxyBody>> {
    let bytes = match Limited::new(body, MAX_RELOAD_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("the body is over {MAX_RELOAD_BODY} bytes")}),
            ));
        }
        Err(e) => {
            return Err(reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("cannot read the body: {e}")}),
            ));
        }
    };
    if bytes.trim_ascii().is_empty() {
        return Ok(ReloadRequest::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("the body is not a reload request ({e}); expected {{\"plugins\": [{{\"name\": \"...\", \"file\": \"/absolute/path.wasm\"}}], \"route\": \"...\" (optional)}}")}),
        )
    })
}

/// The `?route=` of a request, if any.
fn route_param(request: &Request<Incoming>) -> Option<&str> {
    request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("route="))
}

impl Handler for Admin {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        self.answer(request)
    }
}

/// 404 for a `?route=` that names no route.
fn no_route(name: &str) -> Response<ProxyBody> {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error": format!("no route named {name:?}")}),
    )
}

/// Why a request looks as if a web page sent it, if it does.
fn from_a_browser(request: &Request<Incoming>) -> Option<&'static str> {
    if request.headers().contains_key(header::ORIGIN) {
        return Some("requests with an Origin header (from a web page) are refused");
    }
    match crate::http::request_host(request) {
        Some(host) if !origin::host_is_loopback_or_address(&host) => {
            Some("the Host must be a loopback name or an IP address (DNS-rebinding protection)")
        }
        _ => None,
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(Bytes::from(body.to_string())))
        .expect("static parts form a valid response")
}

/// Compares without an early exit, so response timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
