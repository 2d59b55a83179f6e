//! What travels between the load generator's upstream and its clients: one JSON-RPC
//! request asking for a stream, SSE events carrying their sequence number and send time,
//! and a final result saying how many were sent. Also how a client reads them back
//! without a JSON parser, so the clients stay cheaper than the proxy they measure.

use bytes::BytesMut;
use memchr::memmem;
use serde_json::{Value, json};

/// What a client asks the upstream for (the `arguments` of its `tools/call`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The client's stream number, echoed in every event so cross-talk shows.
    pub stream: u64,
    /// Bytes of JSON in each event's `data` field.
    pub size: usize,
    /// Stop after this many events (0: no count limit).
    pub events: u64,
    /// Stop after this long (0: no time limit).
    pub duration_ms: u64,
    /// Events per second on this stream (0: as fast as the reader takes them).
    pub rate: u64,
    /// With a rate: the events due are sent together at most this often (ms), as one
    /// write, so a high rate does not become one timer and one write per event.
    pub tick_ms: u64,
    /// Send one event, then hold the stream open and quiet until the client leaves.
    pub idle: bool,
}

/// The POST body a client sends: a `tools/call`, so a proxy sees ordinary MCP.
pub fn request_body(ask: &Ask) -> String {
    json!({"jsonrpc":"2.0","id":ask.stream,"method":"tools/call","params":{
        "name":"loadgen","arguments":{"stream":ask.stream,"size":ask.size,"events":ask.events,
        "duration_ms":ask.duration_ms,"rate":ask.rate,"tick_ms":ask.tick_ms,"idle":ask.idle}}})
    .to_string()
}

/// The request id and what was asked; `None` for a body that is not a loadgen request.
pub fn parse_request(body: &[u8]) -> Option<(Value, Ask)> {
    let message: Value = serde_json::from_slice(body).ok()?;
    let a = message.get("params")?.get("arguments")?;
    let ask = Ask {
        stream: a.get("stream")?.as_u64()?,
        size: usize::try_from(a.get("size")?.as_u64()?).ok()?,
        events: a.get("events")?.as_u64()?,
        duration_ms: a.get("duration_ms")?.as_u64()?,
        rate: a.get("rate")?.as_u64()?,
        tick_ms: a.get("tick_ms")?.as_u64()?,
        idle: a.get("idle")?.as_bool()?,
    };
    Some((message.get("id")?.clone(), ask))
}

const EVENT_HEAD: &[u8] = b"event: message\ndata: ";
const NOTE_HEAD: &[u8] =
    br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"loadgen","data":{"stream":"#;
const NOTE_TAIL: &[u8] = b"\"}}}";

/// Appends one event whose `data` is `size` bytes of JSON (more only when `size` is
/// smaller than the message without padding).
pub fn push_event(buf: &mut BytesMut, stream: u64, seq: u64, ts_ns: u64, size: usize) {
    buf.extend_from_slice(EVENT_HEAD);
    let data_start = buf.len();
    buf.extend_from_slice(NOTE_HEAD);
    push_u64(buf, stream);
    buf.extend_from_slice(br#","seq":"#);
    push_u64(buf, seq);
    buf.extend_from_slice(br#","ts":"#);
    push_u64(buf, ts_ns);
    buf.extend_from_slice(br#","pad":""#);
    let used = buf.len() - data_start + NOTE_TAIL.len();
    buf.resize(buf.len() + size.saturating_sub(used), b'x');
    buf.extend_from_slice(NOTE_TAIL);
    buf.extend_from_slice(b"\n\n");
}

/// Appends the stream's last event: the `tools/call` result with the count sent.
pub fn push_result(buf: &mut BytesMut, id: &Value, sent: u64) {
    let result = json!({"jsonrpc":"2.0","id":id,"result":{
        "content":[{"type":"text","text":format!("sent {sent}")}],
        "structuredContent":{"sent":sent}}});
    buf.extend_from_slice(EVENT_HEAD);
    buf.extend_from_slice(result.to_string().as_bytes());
    buf.extend_from_slice(b"\n\n");
}

fn push_u64(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// What one SSE block said, as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Block {
    /// A numbered event.
    Event { stream: u64, seq: u64, ts_ns: u64 },
    /// The final result: how many events the upstream sent.
    Result { sent: u64 },
    /// A JSON-RPC error (from the proxy, usually), verbatim.
    Error(String),
    /// A comment, an id-only block, anything without loadgen data.
    Other,
}

/// Reads one block (the text between two blank lines, without them).
pub fn parse_block(block: &[u8]) -> Block {
    let Some(data) = data_of(block) else {
        return Block::Other;
    };
    if data.starts_with(br#"{"jsonrpc":"2.0","method""#) {
        let field = |name: &[u8]| number_after(data, name);
        match (field(b"\"stream\":"), field(b"\"seq\":"), field(b"\"ts\":")) {
            (Some(stream), Some(seq), Some(ts_ns)) => Block::Event { stream, seq, ts_ns },
            _ => Block::Other,
        }
    } else if memmem::find(data, b"\"error\"").is_some() {
        Block::Error(String::from_utf8_lossy(data).into_owned())
    } else if let Some(sent) = number_after(data, b"\"sent\":") {
        Block::Result { sent }
    } else {
        Block::Other
    }
}

/// The value of the block's first `data` line.
pub fn data_of(block: &[u8]) -> Option<&[u8]> {
    let mut rest = block;
    loop {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        if let Some(value) = line.strip_prefix(b"data:") {
            return Some(value.strip_prefix(b" ").unwrap_or(value));
        }
        if end == rest.len() {
            return None;
        }
        rest = &rest[end + 1..];
    }
}

fn number_after(data: &[u8], name: &[u8]) -> Option<u64> {
    let at = memmem::find(data, name)? + name.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&data[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Cuts a byte stream into SSE blocks, whatever the read sizes. Blocks end at a blank
/// line (`\n\n`; the generator and sluice write LF; nginx passes bytes through).
#[derive(Default)]
pub struct Splitter {
    carry: Vec<u8>,
}

impl Splitter {
    /// Feeds one read; calls `each` for every block it completes.
    pub fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let finder = memmem::Finder::new(b"\n\n");
        let mut rest = chunk;
        if !self.carry.is_empty() {
            // The block that straddles reads: look only where its end can be.
            let from = self.carry.len().saturating_sub(1);
            self.carry.extend_from_slice(chunk);
            let Some(end) = finder.find(&self.carry[from..]).map(|i| i + from) else {
                return;
            };
            each(&self.carry[..end]);
            let consumed = end + 2 - (self.carry.len() - chunk.len());
            self.carry.clear();
            rest = &chunk[consumed..];
        }
        while let Some(end) = finder.find(rest) {
            each(&rest[..end]);
            rest = &rest[end + 2..];
        }
        self.carry.extend_from_slice(rest);
    }
}

/// Checks one stream's events: its own, in order, none missing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checker {
    pub stream: u64,
    next: u64,
    /// Events seen.
    pub received: u64,
    /// Sequence numbers skipped (counted when the gap shows, and at the end).
    pub lost: u64,
    /// Events that came after a later one (or twice).
    pub reordered: u64,
    /// Events of another stream.
    pub foreign: u64,
}

impl Checker {
    pub fn new(stream: u64) -> Self {
        Self {
            stream,
            ..Self::default()
        }
    }

    pub fn event(&mut self, stream: u64, seq: u64) {
        self.received += 1;
        if stream != self.stream {
            self.foreign += 1;
        } else if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.lost += seq - self.next;
            self.next = seq + 1;
        } else {
            self.reordered += 1;
        }
    }

    /// The upstream says it sent `sent`: whatever did not arrive at the tail is lost.
    pub fn finish(&mut self, sent: u64) {
        self.lost += sent.saturating_sub(self.next);
    }

    pub fn faults(&self) -> u64 {
        self.lost + self.reordered + self.foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_has_the_asked_size_and_reads_back() {
        let mut buf = BytesMut::new();
        push_event(&mut buf, 7, 42, 1_700_000_000_123_456_789, 256);
        let text = std::str::from_utf8(&buf).unwrap();
        let data = text
            .strip_prefix("event: message\ndata: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert_eq!(data.len(), 256);
        let value: Value = serde_json::from_str(data).unwrap();
        assert_eq!(value["params"]["data"]["seq"], 42);
        assert_eq!(
            parse_block(&buf[..buf.len() - 2]),
            Block::Event {
                stream: 7,
                seq: 42,
                ts_ns: 1_700_000_000_123_456_789
            }
        );
    }

    #[test]
    fn results_errors_and_other_blocks_are_told_apart() {
        let mut buf = BytesMut::new();
        push_result(&mut buf, &json!(3), 1234);
        assert_eq!(
            parse_block(&buf[..buf.len() - 2]),
            Block::Result { sent: 1234 }
        );
        let error = br#"data: {"jsonrpc":"2.0","id":3,"error":{"code":-32052,"message":"gone"}}"#;
        assert!(matches!(parse_block(error), Block::Error(e) if e.contains("-32052")));
        assert_eq!(parse_block(b": keep-alive"), Block::Other);
        assert_eq!(parse_block(b"id: 5"), Block::Other);
        // CRLF lines and no space after the colon are still SSE.
        assert_eq!(
            parse_block(b"event: message\r\ndata:{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"stream\":1,\"seq\":2,\"ts\":3}}\r"),
            Block::Event {
                stream: 1,
                seq: 2,
                ts_ns: 3
            }
        );
    }

    #[test]
    fn the_splitter_finds_every_block_whatever_the_read_sizes() {
        let mut wire = BytesMut::new();
        for seq in 0..50 {
            push_event(&mut wire, 1, seq, seq * 10, 100 + seq as usize);
        }
        for read in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let mut splitter = Splitter::default();
            let mut seqs = Vec::new();
            for chunk in wire.chunks(read) {
                splitter.feed(chunk, |block| {
                    if let Block::Event { seq, .. } = parse_block(block) {
                        seqs.push(seq);
                    }
                });
            }
            assert_eq!(seqs, (0..50).collect::<Vec<_>>(), "reads of {read} bytes");
        }
    }

    #[test]
    fn the_checker_counts_gaps_reorders_tails_and_foreign_events() {
        let mut c = Checker::new(1);
        for seq in [0, 1, 2, 3] {
            c.event(1, seq);
        }
        c.finish(4);
        assert_eq!((c.received, c.faults()), (4, 0));

        let mut c = Checker::new(1);
        for seq in [0, 2, 1, 3] {
            c.event(1, seq);
        }
        assert_eq!((c.lost, c.reordered), (1, 1));

        let mut c = Checker::new(1);
        c.event(1, 0);
        c.event(2, 1);
        c.finish(5);
        assert_eq!((c.foreign, c.lost), (1, 4));
    }

    #[test]
    fn a_request_round_trips() {
        let ask = Ask {
            stream: 9,
            size: 16384,
            events: 0,
            duration_ms: 2000,
            rate: 500,
            tick_ms: 10,
            idle: false,
        };
        let (id, back) = parse_request(request_body(&ask).as_bytes()).unwrap();
        assert_eq!((id, back), (json!(9), ask));
        assert!(parse_request(b"{}").is_none());
    }
}
