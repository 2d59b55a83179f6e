//! `sluice stdio`: a desktop client launches sluice in place of an MCP server and
//! speaks newline-delimited JSON-RPC on sluice's stdin and stdout.
//!
//! There is no second chain path: this front end is an in-process Streamable HTTP
//! client of the proxy. Each stdin line becomes a POST handed to [`Proxy::handle`]
//! (with the session headers once `initialize` gave them), and each JSON-RPC message
//! of the response (a JSON body, or each SSE event's data) becomes one stdout line.
//! After the handshake one GET stream carries the server's own requests and
//! notifications. So a plugin's verdicts, the fail-closed errors, tapes, metrics and
//! hot swap are the HTTP proxy's own.
//!
//! ```text
//! stdin line ─▶ POST ─▶ Proxy::handle ─▶ chain ─▶ upstream ─▶ chain ─▶ response
//!                                                                 │ each message
//! stdout ◀── one line each (whole; responses of concurrent requests interleave) ◀┘
//! ```
//!
//! Requests run concurrently: a long `tools/call` does not hold up a later `ping` or a
//! `notifications/cancelled`. A stdio client has no HTTP status to read, so every
//! request gets an answer line: where the HTTP exchange gives none (an error status
//! without a JSON-RPC body for it, a response that ends before the answer, a line over
//! the size limit), this front end writes a JSON-RPC error for the request's id.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::error_chain::ErrorChain;
use crate::lines::{Line, LineReader};
use crate::mcp::jsonrpc::{self, RequestId, Summary};
use crate::mcp::messages::batch_items;
use crate::proxy::{Proxy, ProxyBody};
use crate::sse::Frame;
use crate::upstream::{SseEvents, read_to_limit};

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// What a Streamable HTTP client accepts on a POST.
const ACCEPT_POST: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const ACCEPT_GET: HeaderValue = HeaderValue::from_static("text/event-stream");

/// Lines waiting for stdout: a client that stops reading slows the streams down (each
/// waits for room) instead of growing a queue.
const OUT_QUEUE: usize = 64;
/// How long the DELETE that ends the session may take when sluice stops: the client
/// that closed its pipe will not wait long before it kills sluice.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the last lines may take to reach stdout when sluice stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before opening the GET stream again, unless the server's `retry:` says otherwise.
const GET_RETRY: Duration = Duration::from_secs(1);
/// GET streams in a row that may fail or end without delivering anything before this
/// front end stops opening them (the server's messages then come only on POST streams).
const GET_ATTEMPTS: u32 = 5;

/// Why `sluice stdio` stopped other than at the end of its input or on a signal.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// Reading stdin failed.
    #[error("cannot read the client's messages from stdin")]
    Read(#[source] std::io::Error),
    /// Writing stdout failed (the client closed its end).
    #[error("cannot write to stdout (did the client exit?)")]
    Write(#[source] std::io::Error),
}

/// How the front end talks to the proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The path and query of every request (the endpoint's path on an HTTP upstream,
    /// e.g. `/mcp`): the proxy appends it to the upstream's base URL.
    pub path: Uri,
    /// The longest stdin line, in bytes (the proxy's `max_event_bytes`: a longer body
    /// would be refused anyway).
    pub max_line_bytes: usize,
    /// After stdin ends, how long answers still on their way may take before the
    /// session is ended: a script may pipe in its requests and read every answer.
    pub drain: Duration,
}

impl Settings {
    /// For a stdio server behind sluice (`sluice stdio -- <cmd…>`), which is reached
    /// by method and session, not by path: `/mcp` names the requests in logs and tapes
    /// as a Streamable HTTP client's would.
    pub fn for_stdio_server(max_line_bytes: usize, drain: Duration) -> Settings {
        Settings {
            path: Uri::from_static("/mcp"),
            max_line_bytes,
            drain,
        }
    }

    /// The endpoint of `url` (`http://host:port/mcp?k=v`) split into the upstream base
    /// URL the proxy is made with (`http://host:port`) and the settings whose `path` is
    /// the rest (`/mcp?k=v`). A base URL that is not a URL is left whole (the proxy's
    /// own check then names what is wrong with it).
    pub fn for_endpoint(url: &str, max_line_bytes: usize, drain: Duration) -> (String, Settings) {
        let parsed = url.parse::<Uri>().ok().and_then(|uri| {
            let base = format!("{}://{}", uri.scheme()?, uri.authority()?);
            let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let path = if path.is_empty() { "/" } else { path };
            Some((base, path.parse::<Uri>().ok()?))
        });
        let (base, path) = parsed.unwrap_or_else(|| (url.to_string(), Uri::from_static("/")));
        (
            base,
            Settings {
                path,
                max_line_bytes,
                drain,
            },
        )
    }
}

/// Serves one stdio client: `input` is its stdin, `output` its stdout. Returns at the
/// end of `input` (after the answers still on their way, for up to `settings.drain`)
/// or when `stop` completes (a signal), having ended the MCP session (DELETE).
pub async fn serve<R, W>(
    proxy: Arc<Proxy>,
    settings: Settings,
    input: R,
    output: W,
    stop: impl Future<Output = ()>,
) -> Result<(), StdioError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, lines) = mpsc::channel(OUT_QUEUE);
    let mut writer = tokio::spawn(write_lines(output, lines));
    let front = Arc::new(Front {
        proxy,
        path: settings.path.clone(),
        limit: settings.max_line_bytes,
        session: Mutex::new(Session::default()),
        cancelled: Mutex::new(Vec::new()),
        listening: Mutex::new(None),
        out,
    });
    let mut input = LineReader::new(input, settings.max_line_bytes);
    let mut tasks = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut writer_done = false;
    let ended: Result<bool, StdioError> = loop {
        tokio::select! {
            line = input.next() => match line {
                Ok(Some(Line::Text(line))) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    tokio::select! {
                        () = front.take(line, &mut tasks) => {}
                        () = &mut stop => break Ok(false),
                    }
                }
                Ok(Some(Line::TooLong(_))) => front.too_long().await,
                Ok(None) => break Ok(true),
                Err(e) => break Err(StdioError::Read(e)),
            },
            () = &mut stop => break Ok(false),
            done = &mut writer, if !writer_done => {
                writer_done = true;
                // The writer ends early only on an error: this front holds its queue.
                if let Err(e) = done.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
                    break Err(StdioError::Write(e));
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    if let Ok(true) = ended
        && !tasks.is_empty()
    {
        tracing::debug!(
            in_flight = tasks.len(),
            "stdin ended; waiting for the answers still on their way"
        );
        let drained = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = tokio::time::timeout(settings.drain, drained) => {}
            () = &mut stop => {}
        }
    }
    front.end_session().await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The last handle on the queue: the writer ends once it has written what is in it.
    drop(front);
    let flushed = if writer_done {
        Ok(())
    } else {
        match tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await {
            Ok(done) => done.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                writer.abort();
                Ok(())
            }
        }
    };
    ended?;
    flushed.map_err(StdioError::Write)
}

/// What the handshake established.
#[derive(Debug, Default)]
struct Session {
    /// `Mcp-Session-Id` from the `initialize` response, sent on every later request.
    id: Option<HeaderValue>,
    /// `Mcp-Protocol-Version`: the version the `initialize` result chose.
    protocol: Option<HeaderValue>,
}

/// One client's state, shared by the tasks that carry its requests.
struct Front {
    proxy: Arc<Proxy>,
    path: Uri,
    limit: usize,
    session: Mutex<Session>,
    /// Requests the client cancelled (`notifications/cancelled`): the server need not
    /// answer them, and the client wants no answer, so none is made up for them.
    cancelled: Mutex<Vec<RequestId>>,
    /// The GET stream's task, once opened.
    listening: Mutex<Option<JoinHandle<()>>>,
    out: mpsc::Sender<String>,
}

impl Front {
    /// A request for the proxy, with the session's headers.
    fn request(&self, method: Method, body: Bytes) -> Request<Full<Bytes>> {
        let post = method == Method::POST;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        if post {
            headers.insert(header::ACCEPT, ACCEPT_POST);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        } else {
            headers.insert(header::ACCEPT, ACCEPT_GET);
        }
        let session = lock(&self.session);
        if let Some(id) = &session.id {
            headers.insert(SESSION_ID, id.clone());
        }
        if let Some(version) = &session.protocol {
            headers.insert(PROTOCOL_VERSION, version.clone());
        }
        request
    }

    /// Sends one stdin line as a POST; its answer is written by a task in `tasks`.
    async fn take(self: &Arc<Self>, line: Bytes, tasks: &mut JoinSet<()>) {
        let sent = Summary::of(&line);
        if sent.method.as_deref() == Some("notifications/cancelled")
            && let Some(id) = cancelled_request(&line)
        {
            let mut cancelled = lock(&self.cancelled);
            // Bounded: the oldest goes first (its request has long been answered or
            // ended with the session).
            if cancelled.len() >= MAX_CANCELLED {
                cancelled.remove(0);
            }
            cancelled.push(id);
        }
        let request = self.request(Method::POST, line);
        if sent.request_ids.is_empty() {
            // Notifications and answers keep their place: the client wrote them before
            // the lines that follow, and a server may depend on that order
            // (`notifications/initialized` before `tools/list`: server-everything
            // registers some tools only once initialized). Their POST is answered 202
            // as soon as the upstream took them, so waiting for its head is short, and
            // an HTTP client waits for it too.
            let response = self.proxy.handle(request).await;
            tasks.spawn(self.clone().answer(response, sent));
        } else if sent.method.as_deref() == Some("initialize") {
            // Every later line must carry the session id this response's head brings;
            // the client waits for the answer before it sends more, and so does this.
            let response = self.proxy.handle(request).await;
            if response.status().is_success()
                && let Some(id) = response.headers().get(SESSION_ID)
            {
                lock(&self.session).id = Some(id.clone());
            }
            tasks.spawn(self.clone().answer(response, sent));
        } else {
            let front = self.clone();
            tasks.spawn(async move {
                let response = front.proxy.handle(request).await;
                front.answer(response, sent).await;
            });
        }
    }

    /// Writes what the proxy answered to `sent`, and errors for its requests that got
    /// no answer.
    async fn answer(self: Arc<Self>, response: Response<ProxyBody>, sent: Summary) {
        let mut waiting = sent.request_ids.clone();
        let initialize = sent.method.as_deref() == Some("initialize");
        let (parts, body) = response.into_parts();
        let status = parts.status;
        // Why requests still waiting at the end get no answer from the server.
        let mut reason = None;
        if status.is_success() {
            if content_type_is(&parts.headers, "text/event-stream") {
                // The proxy held each event to the limit; its encoding adds field names.
                let mut events = SseEvents::new(body, self.limit.saturating_mul(2));
                while let Some(frame) = events.next().await {
                    match frame {
                        Ok(Frame::Event(event)) => {
                            if let Some(data) = event.data {
                                self.emit(data, &mut waiting, initialize).await;
                            }
                        }
                        Ok(Frame::Comment(_)) => {}
                        Err(e) => {
                            tracing::warn!(error = %ErrorChain(&e), "sluice stdio: a response stream broke");
                            reason = Some("the response stream broke before the answer");
                            break;
                        }
                    }
                }
            } else if content_type_is(&parts.headers, "application/json") {
                match read_to_limit(body, self.limit.saturating_mul(2)).await {
                    Ok(body) => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        self.emit(text, &mut waiting, initialize).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %ErrorChain(&e), "sluice stdio: cannot read a response");
                        reason = Some("the response could not be read");
                    }
                }
            }
            // Anything else (a 202 for a notification or a response) carries no message.
            if sent.method.as_deref() == Some("notifications/initialized") {
                self.listen();
            }
            let reason = reason.unwrap_or("the response ended without the answer");
            self.answer_waiting(waiting, "unanswered", reason).await;
            return;
        }
        // An error status: sluice's own errors carry JSON-RPC answers for the request's
        // ids; the server's may, or may say why in another shape.
        let body = read_to_limit(body, self.limit).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let mut said = None;
        if content_type_is(&parts.headers, "application/json") {
            for item in batch_items(&text).unwrap_or_else(|| vec![text.to_string()]) {
                match jsonrpc::response_id(&item) {
                    Some(id) if waiting.contains(&id) => {
                        self.emit(item, &mut waiting, initialize).await;
                    }
                    _ => said = said.or_else(|| error_message(&item)),
                }
            }
        }
        let said = said.unwrap_or_else(|| first_line(&text));
        if waiting.is_empty() {
            if sent.request_ids.is_empty() {
                // A notification or a response: there is no id to answer.
                tracing::warn!(%status, reason = %said, method = ?sent.method, "sluice stdio: a message the client sent was refused");
            }
            return;
        }
        let reason = if said.is_empty() {
            format!("the request was answered with HTTP {status}")
        } else {
            format!("the request was answered with HTTP {status}: {said}")
        };
        self.answer_waiting(waiting, "status", &reason).await;
    }

    /// Writes the message(s) in `data` as one line, striking the responses off
    /// `waiting`. The answer to `initialize` sets the protocol version of later
    /// requests.
    async fn emit(&self, data: String, waiting: &mut Vec<RequestId>, initialize: bool) {
        if data.trim().is_empty() {
            return; // a priming event, a 202's empty body
        }
        let ids: Vec<RequestId> = match batch_items(&data) {
            Some(items) => items
                .iter()
                .filter_map(|item| jsonrpc::response_id(item))
                .collect(),
            None => jsonrpc::response_id(&data).into_iter().collect(),
        };
        waiting.retain(|id| !ids.contains(id));
        if !ids.is_empty() {
            // A cancelled request the server answered anyway is done with: its id may
            // be used again, and must then get its error if it fails.
            lock(&self.cancelled).retain(|c| !ids.contains(c));
        }
        if initialize && let Some(version) = chosen_protocol(&data) {
            lock(&self.session).protocol = Some(version);
        }
        // JSON text has no line break but between tokens (inside a string it is
        // escaped), so a pretty-printed message becomes one line without changing it.
        let line = if data.contains(['\n', '\r']) {
            data.replace(['\n', '\r'], " ")
        } else {
            data
        };
        // The writer is gone only when stdout is: then nobody reads the line.
        let _ = self.out.send(line).await;
    }

    /// A JSON-RPC error for each request in `waiting` the client did not cancel.
    async fn answer_waiting(&self, waiting: Vec<RequestId>, kind: &'static str, reason: &str) {
        for id in waiting {
            let cancelled = {
                let mut cancelled = lock(&self.cancelled);
                let before = cancelled.len();
                cancelled.retain(|c| *c != id);
                cancelled.len() != before
            };
            if cancelled {
                continue;
            }
            tracing::warn!(id = %id, reason, "sluice stdio: answering a request the HTTP exchange left without an answer");
            self.proxy.metrics().stdio_answered(kind);
            let code = if kind == "status" {
                jsonrpc::UPSTREAM_FAILED
            } else {
                jsonrpc::STREAM_FAILED
            };
            let error = jsonrpc::error(&id, code, &format!("sluice: {reason}"));
            let _ = self.out.send(error.get().to_string()).await;
        }
    }

    /// A stdin line over the limit: its id cannot be read (it was not kept), so the
    /// error has id `null`, as JSON-RPC answers a message it cannot read.
    async fn too_long(&self) {
        tracing::warn!(
            limit = self.limit,
            "sluice stdio: a stdin line over the limit was refused (--max-event-bytes)"
        );
        self.proxy.metrics().stdio_answered("too_long");
        let message = format!(
            "sluice: message larger than the limit of {} bytes (--max-event-bytes)",
            self.limit
        );
        let error = jsonrpc::error(&RequestId::null(), jsonrpc::INVALID_REQUEST, &message);
        let _ = self.out.send(error.get().to_string()).await;
    }

    /// Opens the GET stream for the server's own requests and notifications, once: a
    /// session is needed (a server without sessions has nowhere to send them).
    fn listen(self: &Arc<Self>) {
        if lock(&self.session).id.is_none() {
            return;
        }
        let mut listening = lock(&self.listening);
        if listening.is_none() {
            *listening = Some(tokio::spawn(self.clone().get_stream()));
        }
    }

    /// The GET stream, opened again when it ends (the server, or the proxy's
    /// `--upstream-idle-timeout`, may close it), resuming after the last event id.
    async fn get_stream(self: Arc<Self>) {
        let mut last_event_id: Option<HeaderValue> = None;
        let mut fruitless = 0;
        loop {
            let mut request = self.request(Method::GET, Bytes::new());
            if let Some(id) = &last_event_id {
                request.headers_mut().insert(LAST_EVENT_ID, id.clone());
            }
            let response = self.proxy.handle(request).await;
            let status = response.status();
            let mut retry = GET_RETRY;
            let mut delivered = false;
            if status == StatusCode::METHOD_NOT_ALLOWED {
                tracing::debug!("the server offers no GET stream");
                return;
            }
            if status.is_success() && content_type_is(response.headers(), "text/event-stream") {
                let mut events = SseEvents::new(response.into_body(), self.limit.saturating_mul(2));
                while let Some(frame) = events.next().await {
                    let event = match frame {
                        Ok(Frame::Event(event)) => event,
                        Ok(Frame::Comment(_)) => continue,
                        Err(e) => {
                            tracing::warn!(error = %ErrorChain(&e), "sluice stdio: the GET stream broke");
                            break;
                        }
                    };
                    if let Some(id) = event.id {
                        last_event_id = HeaderValue::from_str(&id).ok().filter(|_| !id.is_empty());
                    }
                    if let Some(ms) = event.retry {
                        retry = Duration::from_millis(ms);
                    }
                    if let Some(data) = event.data.filter(|d| !d.trim().is_empty()) {
                        delivered = true;
                        self.emit(data, &mut Vec::new(), false).await;
                    }
                }
            } else if status.is_client_error() {
                tracing::warn!(%status, "sluice stdio: the GET stream was refused; the server's own messages come only on POST streams");
                return;
            } else {
                tracing::warn!(%status, "sluice stdio: the GET stream could not be opened");
            }
            fruitless = if delivered { 0 } else { fruitless + 1 };
            if fruitless >= GET_ATTEMPTS {
                tracing::warn!(
                    attempts = fruitless,
                    "sluice stdio: the GET stream keeps ending without a message; not opening it again"
                );
                return;
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Stops the GET stream and ends the session (DELETE), as a Streamable HTTP client
    /// does when it closes.
    async fn end_session(&self) {
        let listening = lock(&self.listening).take();
        if let Some(task) = listening {
            task.abort();
            // Gone once this returns: its handle on the stdout queue with it.
            let _ = task.await;
        }
        if lock(&self.session).id.is_none() {
            return;
        }
        let request = self.request(Method::DELETE, Bytes::new());
        match tokio::time::timeout(DELETE_TIMEOUT, self.proxy.handle(request)).await {
            Ok(response) => {
                tracing::debug!(status = %response.status(), "session ended (DELETE)");
            }
            Err(_) => tracing::warn!(
                "sluice stdio: the server did not answer the DELETE that ends the session in time"
            ),
        }
    }
}

/// Takes the process's stdout for the protocol: a private copy of fd 1 (closed on
/// exec, so no child inherits it) becomes the writer [`serve`] is given, and fd 1
/// itself then points at stderr. Whatever else writes to stdout (a plugin granted
/// `stdio`, a library's stray print) lands among the logs instead of between the
/// client's JSON-RPC lines. Call before anything else could write to stdout.
#[cfg(unix)]
pub fn take_stdout() -> std::io::Result<tokio::fs::File> {
    let protocol = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(protocol)))
}

/// Writes each line whole, then a newline; flushes when no more lines wait.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut output: W,
    mut lines: mpsc::Receiver<String>,
) -> std::io::Result<()> {
    while let Some(line) = lines.recv().await {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        output.write_all(&bytes).await?;
        if lines.is_empty() {
            output.flush().await?;
        }
    }
    output.flush().await
}

/// Cancellations remembered at once (requests the client gave up on, whose missing
/// answer is not an error).
const MAX_CANCELLED: usize = 1024;

/// The request a `notifications/cancelled` names.
fn cancelled_request(line: &[u8]) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow)]
        params: Params<'a>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "requestId", borrow)]
        request_id: &'a RawValue,
    }
    let cancelled: Cancelled = serde_json::from_slice(line).ok()?;
    Some(RequestId::new(cancelled.params.request_id))
}

/// The protocol version an `initialize` result chose.
fn chosen_protocol(data: &str) -> Option<HeaderValue> {
    let message: serde_json::Value = serde_json::from_str(data).ok()?;
    HeaderValue::from_str(message.pointer("/result/protocolVersion")?.as_str()?).ok()
}

/// The message of a JSON-RPC error.
fn error_message(item: &str) -> Option<String> {
    let message: serde_json::Value = serde_json::from_str(item).ok()?;
    Some(message.pointer("/error/message")?.as_str()?.to_string())
}

/// The first line of a body, shortened: enough to say why, not a whole page.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

fn content_type_is(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_splits_into_the_base_and_the_path() {
        let (base, settings) =
            Settings::for_endpoint("http://127.0.0.1:8000/mcp?k=v", 1024, Duration::ZERO);
        assert_eq!(base, "http://127.0.0.1:8000");
        assert_eq!(settings.path, "/mcp?k=v");
        let (base, settings) = Settings::for_endpoint("http://h:1", 1024, Duration::ZERO);
        assert_eq!(base, "http://h:1");
        assert_eq!(settings.path, "/");
        let (base, _) = Settings::for_endpoint("not a url", 1024, Duration::ZERO);
        assert_eq!(base, "not a url");
    }

    #[test]
    fn a_cancellation_names_its_request_as_written() {
        let id = cancelled_request(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a\u0062"}}"#,
        )
        .unwrap();
        assert_eq!(Some(id), jsonrpc::response_id(r#"{"id":"ab","result":{}}"#));
    }
}
