//! One exchange of a tape through the chain, as `proxy::Proxy::forward` and
//! `InterceptedSse` would take it: kept apart from the report types so that the part
//! that must track the proxy is in one short place.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    EventResult, Leg, Options, OtherComponent, Report, StepResult, UNREACHED, final_verdict,
};
use crate::mcp::jsonrpc::Summary as RequestSummary;
use crate::mcp::legacy::EndpointRewrite;
use crate::mcp::messages::{self, ToServer};
use crate::plugin::{Chain, Direction, Session, StreamMeta};
use crate::sse::Event;
use crate::tape::format::ChainPlugin;
use crate::tape::{Record, TapeEvent, TapeStep};

/// Every stream of `records` through `chain`, in order of first appearance.
pub(super) fn tape(chain: &Arc<Chain>, records: &[Record], options: &Options) -> Report {
    let upstream = records.iter().find_map(|r| match r {
        Record::Header { upstream, .. } => Some(upstream.as_str()),
        _ => None,
    });
    let endpoint = upstream.and_then(endpoint_rewrite);
    let mut report = Report::of_chain(chain);
    report.tape_chain = tape_chain(records);
    for record in records {
        if let Record::Request {
            generation, chain, ..
        } = record
        {
            report.tape_has_hashes |= !chain.is_empty();
            if let Some(g) = generation
                && !report.generations.contains(g)
            {
                report.generations.push(*g);
            }
        }
    }
    for (stream, records) in streams(records) {
        replay(
            chain,
            stream,
            &records,
            options,
            endpoint.as_ref(),
            &mut report,
        );
    }
    report
}

/// The records of each stream, streams in order of first appearance.
fn streams(records: &[Record]) -> Vec<(u64, Vec<&Record>)> {
    let mut order: Vec<(u64, Vec<&Record>)> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    for record in records {
        let Some(stream) = record.stream() else {
            continue;
        };
        let slot = *at.entry(stream).or_insert_with(|| {
            order.push((stream, Vec::new()));
            order.len() - 1
        });
        order[slot].1.push(record);
    }
    order
}

fn tape_chain(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for record in records {
        let steps = match record {
            Record::Request { steps, .. } | Record::Event { steps, .. } => steps,
            _ => continue,
        };
        for step in steps {
            if !names.contains(&step.plugin) {
                names.push(step.plugin.clone());
            }
        }
    }
    names
}

impl Report {
    /// An empty report of a run of `chain`.
    pub(super) fn of_chain(chain: &Chain) -> Self {
        Report {
            chain: chain
                .plugins()
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            tape_chain: Vec::new(),
            components: chain
                .plugins()
                .iter()
                .map(|p| ChainPlugin {
                    plugin: p.name().to_string(),
                    sha256: p.component_sha256().map(|h| h.to_string()),
                })
                .collect(),
            generations: Vec::new(),
            tape_has_hashes: false,
            messages: false,
            events: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// The session's steps since the last call, each with its plugin's name.
pub(super) fn steps_of(session: &mut Session) -> Vec<StepResult> {
    let chain = session.chain().clone();
    let names = chain.plugin_names();
    let steps = session.take_steps();
    steps
        .iter()
        .map(|s| {
            StepResult::new(
                s,
                &names[s.plugin],
                chain.plugins()[s.plugin].limits().failure,
            )
        })
        .collect()
}

/// Which plugin of this run was recorded with another component in an exchange
/// judged by `recorded` (the first one, by chain order); `None` when every plugin of
/// the run was recorded with its own hash, or the tape does not record hashes.
fn other_component(
    ours: &[ChainPlugin],
    recorded: &[ChainPlugin],
    generation: Option<u64>,
) -> Option<OtherComponent> {
    if recorded.is_empty() {
        return None;
    }
    ours.iter().find_map(|plugin| {
        let live = recorded.iter().find(|r| r.plugin == plugin.plugin)?;
        (live.sha256.is_none() || live.sha256 != plugin.sha256).then(|| OtherComponent {
            plugin: plugin.plugin.clone(),
            sha256: live.sha256.clone(),
            generation,
        })
    })
}

/// A client body through the chain, as `proxy::Proxy::forward` takes it: what goes
/// upstream (`None`: nothing) and what sluice itself answers the client (`None`:
/// nothing, or only what the upstream answers). A replay does not wait: a held request
/// goes on at once, as if let through (noted in `notes`, naming `what`).
pub(super) fn request_through(
    session: &mut Session,
    body: &str,
    limits: &messages::Limits,
    notes: &mut Vec<String>,
    what: &str,
) -> (Option<TapeEvent>, Option<String>) {
    let read = messages::read_client_body(session.chain(), body, limits);
    let mut decided = messages::to_server(session, body.to_string(), read, limits);
    while let ToServer::Held(held) = decided {
        notes.push(format!(
            "{what}: plugin {} held the request ({}); the replay let it through at once",
            held.plugin, held.hold.reason
        ));
        decided = messages::resume_to_server(session, held, messages::AfterHold::GoesOn, limits);
    }
    match decided {
        ToServer::Forward { body, answered } => (
            Some(data_only(body)),
            (!answered.is_empty()).then(|| messages::answered_body(&answered, true)),
        ),
        ToServer::Answer { answered, batch } => (
            None,
            (!answered.is_empty()).then(|| messages::answered_body(&answered, batch)),
        ),
        ToServer::Refused(refused) => (None, Some(refused.error().get().to_string())),
        ToServer::Held(_) => unreachable!("resumed above"),
    }
}

/// One exchange, as `proxy::Proxy::forward` and `InterceptedSse` handle it, each of
/// its events marked with who judged it live (the generation, and another component
/// than the one under test, if one did).
fn replay(
    chain: &Arc<Chain>,
    stream: u64,
    records: &[&Record],
    options: &Options,
    endpoint: Option<&EndpointRewrite>,
    report: &mut Report,
) {
    let first = report.events.len();
    walk(chain, stream, records, options, endpoint, report);
    let Some(Record::Request {
        generation, chain, ..
    }) = records.iter().find(|r| matches!(r, Record::Request { .. }))
    else {
        return;
    };
    let other = other_component(&report.components, chain, *generation);
    for event in &mut report.events[first..] {
        event.generation = *generation;
        event.other_component = other.clone();
    }
}

/// [`replay`]'s walk through the chain.
fn walk(
    chain: &Arc<Chain>,
    stream: u64,
    records: &[&Record],
    options: &Options,
    endpoint: Option<&EndpointRewrite>,
    report: &mut Report,
) {
    let events: Vec<(&TapeEvent, &Vec<TapeStep>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event {
                received, steps, ..
            } => Some((received, steps)),
            _ => None,
        })
        .collect();
    let Some(Record::Request {
        method,
        path,
        rpc_method,
        protocol_version,
        headers,
        body,
        steps: live_request_steps,
        identity,
        ..
    }) = records
        .iter()
        .find(|r| matches!(r, Record::Request { .. }))
        .copied()
    else {
        report.notes.push(format!(
            "stream {stream}: no request record on the tape; its {} events were not replayed",
            events.len()
        ));
        return;
    };
    let meta = StreamMeta {
        route: None,
        headers: Default::default(),
        stream_id: stream,
        session_id: headers.get("mcp-session-id").cloned(),
        method: method.clone(),
        path: path.clone(),
        rpc_method: rpc_method.clone(),
        protocol_version: protocol_version.clone(),
        // The caller the live run saw, so a plugin that reads it decides the same.
        identity: identity.clone().map(Arc::new).unwrap_or_default(),
    };
    let mut session = chain
        .session(meta)
        .traced()
        .with_max_event_bytes(options.max_event_bytes);

    // The proxy's default limits on what one exchange may ask of the plugins.
    let limits = messages::Limits::default();
    // To the server: an empty body (GET, DELETE) never meets the chain.
    let mut answered_by_proxy = false;
    if !body.is_empty() {
        let what = format!("stream {stream}");
        let (output, reply) =
            request_through(&mut session, body, &limits, &mut report.notes, &what);
        answered_by_proxy = output.is_none();
        report.events.push(EventResult {
            reply,
            ..result(
                stream,
                0,
                Leg::ToServer,
                data_only(body.clone()),
                output,
                steps_of(&mut session),
                live_request_steps,
            )
        });
    }
    if events.is_empty() {
        return;
    }
    if answered_by_proxy {
        report.notes.push(format!(
            "stream {stream}: the request was dropped, so sluice would have answered it \
             and the upstream would not have sent the {} recorded events (verdict {UNREACHED})",
            events.len()
        ));
        for (i, (received, live)) in events.into_iter().enumerate() {
            let unreached = EventResult {
                verdict: UNREACHED.into(),
                ..result(
                    stream,
                    i + 1,
                    Leg::ToClient,
                    received.clone(),
                    None,
                    Vec::new(),
                    live,
                )
            };
            report.events.push(unreached);
        }
        return;
    }
    let status = records.iter().find_map(|r| match r {
        Record::Response { status, .. } => Some(*status),
        _ => None,
    });
    if let Some(status) = status.filter(|s| !(200..300).contains(s)) {
        report.notes.push(format!(
            "stream {stream}: status {status} is relayed unread by sluice; its {} events were \
             not replayed",
            events.len()
        ));
        return;
    }

    // To the client: the same instances, one event at a time.
    session.begin(Direction::ToClient);
    let mut unanswered = RequestSummary::of(body.as_bytes()).request_ids;
    let endpoint = endpoint.filter(|_| method == "GET");
    for (i, (received, live)) in events.into_iter().enumerate() {
        let mut event = Event::from(received.clone());
        if let Some(rewrite) = endpoint {
            rewrite.apply(&mut event);
        }
        let input = TapeEvent::from(&event);
        let sent = messages::to_client(&mut session, event, &mut unanswered, &limits);
        let steps = steps_of(&mut session);
        report.events.push(result(
            stream,
            i + 1,
            Leg::ToClient,
            input,
            sent.as_ref().map(TapeEvent::from),
            steps,
            live,
        ));
    }
    session.end();
}

/// The proxy's rewrite of a legacy (2024-11-05) GET stream's `endpoint` event, which
/// happens before the chain sees it. The client's `Host` is not on tapes, so an
/// absolute URL gets the one the proxy falls back to; a relative URL (the usual case)
/// comes out exactly as live.
fn endpoint_rewrite(upstream: &str) -> Option<EndpointRewrite> {
    let uri: http::Uri = upstream.parse().ok()?;
    uri.authority()?;
    Some(EndpointRewrite::new(&uri, "http", "127.0.0.1"))
}

/// A request body as the chain sees it: an event with only `data`.
pub(super) fn data_only(body: String) -> TapeEvent {
    TapeEvent {
        id: None,
        event: None,
        data: Some(body),
        data_at: None,
        retry: None,
    }
}

pub(super) fn result(
    stream: u64,
    index: usize,
    direction: Leg,
    input: TapeEvent,
    output: Option<TapeEvent>,
    steps: Vec<StepResult>,
    live: &[TapeStep],
) -> EventResult {
    EventResult {
        stream,
        index,
        direction,
        verdict: final_verdict(steps.iter().map(|s| s.verdict.as_str())),
        steps,
        input,
        output,
        reply: None,
        label: None,
        generation: None,
        other_component: None,
        live_verdict: (!live.is_empty())
            .then(|| final_verdict(live.iter().map(|s| s.verdict.as_str()))),
        live_steps: live.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_stream_has_no_request_event_and_its_legacy_endpoint_is_rewritten() {
        let get = Record::Request {
            stream: 4,
            t_ms: 0,
            method: "GET".into(),
            path: "/sse".into(),
            query: None,
            rpc_method: None,
            protocol_version: None,
            headers: Default::default(),
            body: String::new(),
            steps: Vec::new(),
            sent: Some(String::new()),
            identity: None,
            generation: None,
            chain: Vec::new(),
        };
        let endpoint = Record::Event {
            stream: 4,
            t_ms: 1,
            seq: None,
            received: TapeEvent {
                id: None,
                event: Some("endpoint".into()),
                data: Some("/mcp/messages?s=1".into()),
                data_at: None,
                retry: None,
            },
            steps: Vec::new(),
            sent: None,
            unchanged: false,
        };
        let chain = Arc::new(Chain::empty());
        let mut report = Report::of_chain(&chain);
        let rewrite = endpoint_rewrite("http://127.0.0.1:9/mcp/").unwrap();
        let options = Options::default();
        replay(
            &chain,
            4,
            &[&get, &endpoint],
            &options,
            Some(&rewrite),
            &mut report,
        );
        assert_eq!(report.events.len(), 1, "an empty body meets no chain");
        let event = &report.events[0];
        assert_eq!(event.name(), "4/1");
        assert_eq!(event.input.data.as_deref(), Some("/messages?s=1"));
        assert_eq!(event.output.as_ref(), Some(&event.input));

        replay(
            &chain,
            5,
            &[&endpoint],
            &options,
            Some(&rewrite),
            &mut report,
        );
        assert_eq!(report.events.len(), 1);
        assert!(
            report.notes[0].contains("no request record"),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn streams_keep_the_order_they_start_in() {
        let event = |stream| Record::Comment {
            stream,
            t_ms: 0,
            text: String::new(),
        };
        let records = [event(2), event(1), event(2), event(3), event(1)];
        let order: Vec<(u64, usize)> = streams(&records)
            .into_iter()
            .map(|(s, r)| (s, r.len()))
            .collect();
        assert_eq!(order, vec![(2, 2), (1, 2), (3, 1)]);
    }
}
