//! The proxy's side of `--record`: one [`TapeStream`] per exchange turns what happens
//! into tape lines. Only built when recording is on.
//!
//! Cost matters here (recording must not slow the proxy much), so records are
//! serialised where they happen, into the exchange's own buffer, and handed to the
//! recorder in chunks (see `tape::Recorder`). An event's `received` part is written
//! *before* the chain runs, so the event is never copied for the tape; `steps` and
//! `sent` follow once the chain has answered.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde::Serialize;

use crate::plugin::{Step, StepVerdict, StreamMeta};
use crate::sse::Event;
use crate::tape::format::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use crate::tape::{Record, Recorder, TapeStep, recorder};

/// A chunk goes to the recorder once it is this big...
const CHUNK_BYTES: usize = 32 << 10;
/// ...or this old (ms), so a tape can be followed while a slow stream runs.
const CHUNK_AGE_MS: u64 = 100;

/// Records one exchange.
pub(crate) struct TapeStream {
    recorder: Arc<Recorder>,
    stream: u64,
    buf: Vec<u8>,
    records: u64,
    /// `t_ms` of the last record, and when the buffer was last handed over: the age
    /// check reuses the clock read each record makes anyway.
    last_ms: u64,
    flushed_ms: u64,
}

/// An event as the tape writes it, borrowed (same shape as `tape::TapeEvent`).
#[derive(Serialize)]
struct EventRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<u64>,
}

impl<'a> From<&'a Event> for EventRef<'a> {
    fn from(e: &'a Event) -> Self {
        Self {
            id: e.id.as_deref(),
            event: e.event.as_deref(),
            data: e.data.as_deref(),
            retry: e.retry,
        }
    }
}

/// A step as the tape writes it, borrowed (same shape as `tape::TapeStep`).
#[derive(Serialize)]
struct StepRef<'a> {
    plugin: &'a str,
    verdict: &'static str,
    micros: u64,
    fuel: u64,
}

impl<'a> From<&'a Step> for StepRef<'a> {
    fn from(s: &'a Step) -> Self {
        Self {
            plugin: &s.plugin,
            verdict: s.verdict.as_str(),
            micros: u64::try_from(s.elapsed.as_micros()).unwrap_or(u64::MAX),
            fuel: s.fuel,
        }
    }
}

fn json(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *out, value).expect("tape values always serialise");
}

impl TapeStream {
    pub(crate) fn new(recorder: Arc<Recorder>, stream: u64) -> Self {
        Self {
            recorder,
            stream,
            buf: Vec::new(),
            records: 0,
            last_ms: 0,
            flushed_ms: 0,
        }
    }

    /// Milliseconds since recording started, remembered for the age check.
    fn now_ms(&mut self) -> u64 {
        self.last_ms = self.recorder.t_ms();
        self.last_ms
    }

    fn push(&mut self, record: &Record) {
        recorder::append(&mut self.buf, record);
        self.line_done();
    }

    fn line_done(&mut self) {
        self.records += 1;
        if self.buf.len() >= CHUNK_BYTES
            || self.last_ms.saturating_sub(self.flushed_ms) >= CHUNK_AGE_MS
        {
            self.flush();
        }
    }

    /// Hands what is buffered to the recorder.
    fn flush(&mut self) {
        if self.records > 0 {
            let lines = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
            self.recorder.write_lines(lines, self.records);
            self.records = 0;
        }
        self.flushed_ms = self.last_ms;
    }

    /// The client's request, what the chain said about its body, and what went upstream
    /// (`None`: the proxy answered itself).
    pub(crate) fn request(
        &mut self,
        meta: &StreamMeta,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        chain_steps: &[Step],
        sent: Option<&Bytes>,
    ) {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let record = Record::Request {
            stream: self.stream,
            t_ms: self.now_ms(),
            method: meta.method.clone(),
            path: meta.path.clone(),
            query: query.map(str::to_string),
            rpc_method: meta.rpc_method.clone(),
            protocol_version: meta.protocol_version.clone(),
            headers: format::kept_headers(headers, REQUEST_HEADERS),
            body: text(body),
            steps: chain_steps.iter().map(TapeStep::from).collect(),
            sent: sent.map(text),
        };
        self.push(&record);
    }

    /// The upstream's response head.
    pub(crate) fn response(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        let record = Record::Response {
            stream: self.stream,
            t_ms: self.now_ms(),
            status: status.as_u16(),
            headers: format::kept_headers(headers, RESPONSE_HEADERS),
        };
        self.push(&record);
    }

    /// The first half of an `event` record: the event as received. Call before the
    /// chain runs, then [`TapeStream::event_end`] exactly once.
    pub(crate) fn event_start(&mut self, received: &Event) {
        let t_ms = self.now_ms();
        let buf = &mut self.buf;
        buf.extend_from_slice(br#"{"type":"event","stream":"#);
        json(buf, &self.stream);
        buf.extend_from_slice(br#","t_ms":"#);
        json(buf, &t_ms);
        buf.extend_from_slice(br#","received":"#);
        json(buf, &EventRef::from(received));
    }

    /// The second half: each plugin's step and what the client got. `rewritten`: the
    /// proxy itself changed the event before the chain (a legacy `endpoint` event), so
    /// an all-pass chain still did not send `received` unchanged.
    pub(crate) fn event_end(
        &mut self,
        chain_steps: &[Step],
        sent: Option<&Event>,
        rewritten: bool,
    ) {
        let buf = &mut self.buf;
        buf.extend_from_slice(br#","steps":["#);
        for (i, step) in chain_steps.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            json(buf, &StepRef::from(step));
        }
        buf.push(b']');
        // Every plugin passed (or there was none) and a message went out: it is the
        // event as received, except for the transport's own rewrite.
        let unchanged = !rewritten
            && sent.is_some_and(|e| e.data.is_some())
            && chain_steps.iter().all(|s| s.verdict == StepVerdict::Pass);
        if unchanged {
            buf.extend_from_slice(br#","sent":null,"unchanged":true}"#);
        } else {
            buf.extend_from_slice(br#","sent":"#);
            json(buf, &sent.map(EventRef::from));
            buf.push(b'}');
        }
        buf.push(b'\n');
        self.line_done();
    }

    /// A comment (keep-alive), passed as it was.
    pub(crate) fn comment(&mut self, text: &str) {
        let record = Record::Comment {
            stream: self.stream,
            t_ms: self.now_ms(),
            text: text.to_string(),
        };
        self.push(&record);
    }

    /// The end of the exchange: `complete`, `upstream-error`, `client-gone`, `shutdown`,
    /// `not-inspected` (a body passed unread, e.g. an error status) or
    /// `answered-by-proxy`. Hands everything buffered to the recorder.
    pub(crate) fn end(&mut self, outcome: &str, error: Option<String>) {
        let record = Record::End {
            stream: self.stream,
            t_ms: self.now_ms(),
            outcome: outcome.to_string(),
            error,
        };
        self.push(&record);
        self.flush();
    }
}

impl Drop for TapeStream {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::TapeEvent;

    #[test]
    fn a_split_event_record_reads_back_as_one_record() {
        let dir = std::env::temp_dir().join(format!("sluice-split-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let mut tape = TapeStream::new(recorder.clone(), 9);
        let received = Event {
            id: Some("4".into()),
            ..Event::message("{\"a\":\"x\\ny\"}")
        };
        let step = |verdict| Step {
            plugin: "p".into(),
            verdict,
            elapsed: std::time::Duration::from_micros(3),
            fuel: 10,
        };
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Pass)], Some(&received), false);
        let modified = Event::message("changed");
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Modify)], Some(&modified), false);
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Drop)], None, false);
        drop(tape);
        recorder.sync();
        let records = format::read(recorder.path()).unwrap();
        let sent: Vec<Option<TapeEvent>> = records[1..].iter().map(Record::sent_event).collect();
        assert_eq!(
            sent,
            vec![
                Some(TapeEvent::from(&received)),
                Some(TapeEvent::from(&modified)),
                None
            ]
        );
        assert!(matches!(
            &records[1],
            Record::Event {
                unchanged: true,
                stream: 9,
                ..
            }
        ));
        assert!(matches!(&records[2], Record::Event { steps, .. } if steps[0].verdict == "modify"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
