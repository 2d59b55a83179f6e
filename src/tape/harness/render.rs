//! What `sluice plugin test` prints: a line per event for people, one JSON document
//! for machines, and the summary both share.

use std::fmt::Write;

use serde::Serialize;
use serde_json::{Value, json};

use super::diff::event_diff;
use super::{EventResult, Leg, Report, UNREACHED};

/// How many of the slowest events the summary names.
const SLOWEST: usize = 5;

/// The counts a reader checks first. `pass` includes events no plugin saw (`unseen`),
/// since they go on unchanged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Events replayed (or found unreached).
    pub events: usize,
    /// Final verdict `pass`.
    pub pass: usize,
    /// Final verdict `drop`.
    pub drop: usize,
    /// Final verdict `modify`.
    pub modify: usize,
    /// Final verdict `respond` (a plugin answered the request itself).
    pub respond: usize,
    /// Final verdict `hold` (held, then let through).
    pub hold: usize,
    /// Final verdict a failure kind.
    pub failures: usize,
    /// Not replayed: the request was dropped, so the upstream would not have answered.
    pub unreached: usize,
    /// Events no plugin was called on (control events; requests, for a chain of
    /// filters).
    pub unseen: usize,
    /// Plugin time over the whole tape.
    pub micros: f64,
    /// Fuel over the whole tape.
    pub fuel: u64,
    /// The slowest events, slowest first.
    pub slowest: Vec<Slow>,
    /// Events whose recorded steps this run compared with (`None`: the tape was not
    /// recorded through this chain, so there is nothing to compare).
    pub live_compared: Option<usize>,
    /// Of those, the ones where every plugin gave the recorded verdict (and output,
    /// where the tape has its digest).
    pub live_reproduced: Option<usize>,
    /// Events the live run's steps were not compared with because another component
    /// than the one under test judged them (a tape recorded across a hot swap).
    pub live_other_component: usize,
    /// The tape has output digests and component hashes: outputs were compared too,
    /// not only verdict kinds.
    pub live_outputs: bool,
}

/// One of the slowest events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slow {
    /// Its stream.
    pub stream: u64,
    /// Its index in the stream.
    pub index: usize,
    /// Time over the chain.
    pub micros: f64,
}

impl Report {
    /// The counts, the slowest events and the live-run check.
    pub fn summary(&self) -> Summary {
        let count = |verdict: &str| self.events.iter().filter(|e| e.verdict == verdict).count();
        let failures = self
            .events
            .iter()
            .filter(|e| {
                !matches!(
                    e.verdict.as_str(),
                    "pass" | "drop" | "modify" | "respond" | "hold" | UNREACHED
                )
            })
            .count();
        let mut slowest: Vec<&EventResult> =
            self.events.iter().filter(|e| !e.steps.is_empty()).collect();
        slowest.sort_by(|a, b| b.micros().total_cmp(&a.micros()));
        let live: Option<Vec<bool>> = self.same_chain_as_tape().then(|| {
            self.events
                .iter()
                .filter_map(EventResult::reproduces_live)
                .collect()
        });
        Summary {
            events: self.events.len(),
            pass: count("pass"),
            drop: count("drop"),
            modify: count("modify"),
            respond: count("respond"),
            hold: count("hold"),
            failures,
            unreached: count(UNREACHED),
            unseen: self
                .events
                .iter()
                .filter(|e| e.steps.is_empty() && e.verdict != UNREACHED)
                .count(),
            micros: self.events.iter().map(EventResult::micros).sum(),
            fuel: self.events.iter().map(EventResult::fuel).sum(),
            slowest: slowest
                .into_iter()
                .take(SLOWEST)
                .map(|e| Slow {
                    stream: e.stream,
                    index: e.index,
                    micros: e.micros(),
                })
                .collect(),
            live_compared: live.as_ref().map(Vec::len),
            live_reproduced: live.map(|l| l.into_iter().filter(|ok| *ok).count()),
            live_other_component: self
                .events
                .iter()
                .filter(|e| e.other_component.is_some() && e.seen())
                .count(),
            live_outputs: self.tape_has_hashes,
        }
    }

    /// True when the tape's recorded steps name exactly this run's plugins: only then
    /// is a differing verdict news about the plugins rather than about the chain.
    fn same_chain_as_tape(&self) -> bool {
        let mut ours = self.chain.clone();
        let mut tape = self.tape_chain.clone();
        ours.sort();
        tape.sort();
        !tape.is_empty() && ours == tape
    }

    /// The human report: one line per event (with per-plugin detail for a chain, and
    /// the changed fields of a modified event), the notes, then the summary.
    pub fn render_text(&self) -> String {
        if self.messages {
            return self.render_messages();
        }
        let mut out = String::new();
        let several = self.chain.len() > 1;
        let compare_live = self.same_chain_as_tape();
        let mut last_stream = None;
        for event in &self.events {
            if last_stream.is_some_and(|s| s != event.stream) {
                out.push('\n');
            }
            last_stream = Some(event.stream);
            event_lines(&mut out, event, several, compare_live);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "note: {note}");
            }
        }
        self.summary_lines(&mut out);
        out
    }

    fn summary_lines(&self, out: &mut String) {
        let s = self.summary();
        let _ = write!(
            out,
            "\n{} events: {} pass, {} drop, {} modify, ",
            s.events, s.pass, s.drop, s.modify
        );
        // The 0.2 verdicts, where a plugin gave them.
        for (n, what) in [(s.respond, "respond"), (s.hold, "hold")] {
            if n > 0 {
                let _ = write!(out, "{n} {what}, ");
            }
        }
        let _ = write!(out, "{} failures", s.failures);
        if s.unseen > 0 {
            let _ = write!(out, "; {} not seen by any plugin", s.unseen);
        }
        if s.unreached > 0 {
            let _ = write!(out, "; {} unreached", s.unreached);
        }
        let _ = writeln!(out, "\nplugin time {:.1} µs, fuel {}", s.micros, s.fuel);
        if !s.slowest.is_empty() {
            let slowest: Vec<String> = s
                .slowest
                .iter()
                .map(|e| format!("{}/{} {:.1} µs", e.stream, e.index, e.micros))
                .collect();
            let _ = writeln!(out, "slowest: {}", slowest.join(", "));
        }
        self.live_lines(out, &s);
    }

    /// The live-run check, saying what it compared and what it could not.
    fn live_lines(&self, out: &mut String, s: &Summary) {
        if self.generations.len() > 1 {
            let list: Vec<String> = self.generations.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "recorded by {} chain generations ({}): the chain was reloaded while recording",
                self.generations.len(),
                list.join(", ")
            );
        }
        // Who judged the events this run does not compare, by generation.
        let mut others: Vec<(Option<u64>, &super::OtherComponent, usize)> = Vec::new();
        for event in &self.events {
            let Some(other) = &event.other_component else {
                continue;
            };
            if !event.seen() {
                continue;
            }
            match others
                .iter_mut()
                .find(|(g, o, _)| *g == event.generation && *o == other)
            {
                Some((_, _, n)) => *n += 1,
                None => others.push((event.generation, other, 1)),
            }
        }
        for (generation, other, n) in &others {
            let generation = generation.map_or("an unknown generation".to_string(), |g| {
                format!("generation {g}")
            });
            let hash = other
                .sha256
                .as_deref()
                .map_or("an unknown hash".to_string(), short);
            let ours = self
                .components
                .iter()
                .find(|c| c.plugin == other.plugin)
                .and_then(|c| c.sha256.as_deref())
                .map_or("?".to_string(), short);
            let _ = writeln!(
                out,
                "exchanges of {generation} were judged by another component ({} sha256 {hash}, \
                 this file is {ours}): {n} events not compared",
                other.plugin
            );
        }
        let what = if s.live_outputs {
            "live verdicts and outputs"
        } else {
            "live verdicts"
        };
        match (s.live_compared, s.live_reproduced) {
            (Some(0), _) if s.live_other_component > 0 => {
                let _ = writeln!(
                    out,
                    "{what}: not compared (every exchange was judged by another component)"
                );
            }
            (Some(compared), Some(reproduced)) => {
                let _ = write!(out, "{what} reproduced: {reproduced}/{compared}");
                if s.live_other_component > 0 {
                    let _ = write!(out, " (of the events judged by this component)");
                }
                if !s.live_outputs {
                    let _ = write!(
                        out,
                        " (verdict kinds only: the tape has no output digests or component \
                         hashes, recorded by an older sluice)"
                    );
                }
                out.push('\n');
            }
            _ if self.tape_chain.is_empty() => {
                let _ = writeln!(
                    out,
                    "live verdicts: none on the tape (recorded without plugins)"
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "live verdicts: not compared (the tape was recorded through {})",
                    self.tape_chain.join(", ")
                );
            }
        }
    }

    /// `--message`/`--input`: a block per message, with the fixed lines scripts grep
    /// (`verdict: `, `output: `, `server gets: `, `client gets: `).
    fn render_messages(&self) -> String {
        let mut out = String::new();
        for (i, event) in self.events.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            message_lines(&mut out, event);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "note: {note}");
            }
        }
        let s = self.summary();
        let _ = write!(
            out,
            "\n{} message{}: {} pass, {} drop, {} modify",
            s.events,
            if s.events == 1 { "" } else { "s" },
            self.count_outcome("pass"),
            self.count_outcome("drop"),
            self.count_outcome("modify"),
        );
        for what in ["respond", "hold"] {
            let n = self.count_outcome(what);
            if n > 0 {
                let _ = write!(out, ", {n} {what}");
            }
        }
        if s.failures > 0 {
            let _ = write!(
                out,
                "; {} plugin failure{}",
                s.failures,
                if s.failures == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(out, "\nplugin time {:.1} µs, fuel {}", s.micros, s.fuel);
        out
    }

    fn count_outcome(&self, outcome: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e.outcome() == outcome)
            .count()
    }

    /// The same report for machines: `chain`, `tape_chain`, `events` (each with its
    /// steps, summed `micros` and `fuel`, `input` and `output`), `notes`, `summary`.
    pub fn to_json(&self) -> Value {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|e| {
                let mut value = serde_json::to_value(e).expect("plain data serializes");
                value["micros"] = json!(e.micros());
                value["fuel"] = json!(e.fuel());
                value["outcome"] = json!(e.outcome());
                value
            })
            .collect();
        json!({
            "input": if self.messages { "messages" } else { "tape" },
            "chain": self.chain,
            "components": self.components,
            "tape_chain": self.tape_chain,
            "generations": self.generations,
            "events": events,
            "notes": self.notes,
            "summary": self.summary(),
        })
    }
}

fn event_lines(out: &mut String, event: &EventResult, several: bool, compare_live: bool) {
    let _ = write!(
        out,
        "{:<6} {:<9}  {:<9}",
        event.name(),
        event.direction.as_str(),
        event.verdict
    );
    if event.verdict == UNREACHED {
        let _ = writeln!(
            out,
            " (the request was dropped: the upstream never sent it)"
        );
        return;
    }
    if event.steps.is_empty() {
        let why = match event.direction {
            Leg::ToClient => "control event: plugins do not see it",
            Leg::ToServer => "no plugin of this chain sees requests",
        };
        let _ = writeln!(out, " ({why})");
        return;
    }
    let _ = writeln!(out, " {:>9.1} µs {:>10} fuel", event.micros(), event.fuel());
    if several {
        let detail: Vec<String> = event
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:.1} µs {} fuel",
                    s.plugin, s.verdict, s.micros, s.fuel
                )
            })
            .collect();
        let _ = writeln!(out, "         {}", detail.join(" | "));
    }
    if event.verdict != "pass" {
        match &event.output {
            Some(output) => {
                for line in event_diff(&event.input, output) {
                    let _ = writeln!(out, "         {line}");
                }
            }
            None if event.reply.is_none() => {
                let _ = writeln!(out, "         (nothing sent)");
            }
            None => {}
        }
    }
    if let Some(reply) = &event.reply {
        // Sluice's own answer: to a dropped or answered request, or (beside what goes
        // upstream) to the messages of a batch that went no further.
        let also = if event.output.is_some() { "also " } else { "" };
        let _ = writeln!(out, "         client {also}gets: {reply}");
    }
    if let Some(other) = &event.other_component
        && event.seen()
    {
        let _ = writeln!(
            out,
            "         live run: judged by another component of {} (not compared)",
            other.plugin
        );
    }
    if compare_live && event.reproduces_live() == Some(false) {
        let live: Vec<String> = event
            .live_steps
            .iter()
            .map(|s| format!("{} {}", s.plugin, s.verdict))
            .collect();
        let live = if live.is_empty() {
            "not seen by any plugin".to_string()
        } else {
            live.join(" | ")
        };
        let _ = writeln!(out, "         live run: {live}");
    }
}

/// The first 12 hex digits of a hash, which is how people compare them.
fn short(hash: &str) -> String {
    let cut: String = hash.chars().take(12).collect();
    if cut.len() < hash.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// One message's block: what it is, each plugin's call, the outcome, and what each
/// side receives.
fn message_lines(out: &mut String, event: &EventResult) {
    let _ = writeln!(
        out,
        "message {}: {} {}",
        event.stream,
        event.direction.as_str(),
        event.label.as_deref().unwrap_or("")
    );
    let _ = writeln!(
        out,
        "  input:  {}",
        one_line(event.input.data.as_deref().unwrap_or(""))
    );
    if event.steps.is_empty() {
        let _ = writeln!(out, "  (no plugin of this chain wants it)");
    }
    for step in &event.steps {
        let _ = writeln!(
            out,
            "  plugin {}: {} {:.1} µs {} fuel",
            step.plugin, step.verdict, step.micros, step.fuel
        );
    }
    let _ = writeln!(out, "verdict: {}", event.outcome());
    let sent = event.output.as_ref().and_then(|o| o.data.as_deref());
    if event.outcome() == "modify"
        && let (Some(output), Some(sent)) = (&event.output, sent)
    {
        for line in event_diff(&event.input, output) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "output: {}", one_line(sent));
    }
    match event.direction {
        Leg::ToServer => {
            let _ = writeln!(
                out,
                "server gets: {}",
                sent.map_or("nothing".into(), one_line)
            );
            match &event.reply {
                Some(reply) => {
                    let _ = writeln!(out, "client gets: {}", one_line(reply));
                }
                None if sent.is_none() => {
                    let _ = writeln!(out, "client gets: nothing (HTTP 202: no request to answer)");
                }
                None => {}
            }
        }
        Leg::ToClient => {
            let _ = writeln!(
                out,
                "client gets: {}",
                sent.map_or("nothing".into(), one_line)
            );
        }
    }
}

/// A message on one line: a pretty-printed document's line breaks escaped.
fn one_line(text: &str) -> String {
    text.trim().replace('\r', "\\r").replace('\n', "\\n")
}
