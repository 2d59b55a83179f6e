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
    /// Of those, the ones where every plugin gave the recorded verdict.
    pub live_reproduced: Option<usize>,
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
        match (s.live_compared, s.live_reproduced) {
            (Some(compared), Some(reproduced)) => {
                let _ = writeln!(out, "live verdicts reproduced: {reproduced}/{compared}");
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
                value
            })
            .collect();
        json!({
            "chain": self.chain,
            "tape_chain": self.tape_chain,
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
            None => {
                let _ = writeln!(out, "         (nothing sent)");
            }
        }
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
