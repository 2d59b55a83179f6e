//! The admin API, on its own listener (loopback by default, optional bearer token):
//! `GET /admin/plugins` shows the current chain, its generation and the reload
//! history; `POST /admin/reload` builds and swaps in a new chain; `GET /metrics` is the
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
use hyper::body::Incoming;
use serde_json::json;

use crate::holds::{Decision, Holds};
use crate::http::{Handler, ProxyBody, full, origin};
use crate::reload::{Reloader, Trigger};
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
        let route = request
            .uri()
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("route="));
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
            (&Method::POST, "/admin/reload") => {
                let reloader = match self.reloader_for(&request) {
                    Ok(reloader) => reloader,
                    Err(name) => return no_route(name),
                };
                match tokio::task::spawn_blocking(move || reloader.reload(Trigger::Admin)).await {
                    Ok(Ok(generation)) => reply(StatusCode::OK, json!({"generation": generation})),
                    Ok(Err(e)) => reply(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"error": e.reason(), "generation": e.generation}),
                    ),
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": e.to_string()}),
                    ),
                }
            }
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
