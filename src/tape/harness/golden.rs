//! Golden files: what a run decided, kept to catch a change later.
//!
//! A golden file is JSON Lines, one [`GoldenEntry`] per event in run order:
//! `{"stream":1,"index":2,"direction":"to-client","verdict":"modify","output":{...}}`.
//! Only what a plugin decides is kept (verdict and the event sent on, `null` when
//! nothing is): times and fuel vary from run to run and machine to machine, so a test
//! that compared them would fail for no reason. One line per event keeps the file
//! reviewable in a diff.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::diff::event_diff;
use super::{HarnessError, Leg, Report};
use crate::tape::TapeEvent;

/// What a golden file records of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenEntry {
    /// The tape's stream.
    pub stream: u64,
    /// 0 for the request, 1.. for the response events.
    pub index: usize,
    /// Which way the event went.
    pub direction: Leg,
    /// The final verdict.
    pub verdict: String,
    /// What was sent on (`null`: nothing).
    pub output: Option<TapeEvent>,
    /// What sluice itself answered the client for a request (a dropped request's
    /// JSON-RPC error, a plugin's answer). Absent when nothing, and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl GoldenEntry {
    fn name(&self) -> String {
        format!("{}/{}", self.stream, self.index)
    }
}

/// A run's decisions, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Golden {
    /// One entry per event.
    pub entries: Vec<GoldenEntry>,
}

/// One way a run differs from its golden file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Mismatch {
    /// The golden file has an event this run did not produce (a different tape?).
    Missing {
        /// The golden entry.
        expected: GoldenEntry,
    },
    /// This run produced an event the golden file does not have.
    Extra {
        /// This run's entry.
        got: GoldenEntry,
    },
    /// The same event, decided differently.
    Differs {
        /// The golden entry.
        expected: GoldenEntry,
        /// This run's entry.
        got: GoldenEntry,
    },
}

impl Golden {
    /// The decisions of `report`.
    pub fn of(report: &Report) -> Self {
        Self {
            entries: report
                .events
                .iter()
                .map(|e| GoldenEntry {
                    stream: e.stream,
                    index: e.index,
                    direction: e.direction,
                    verdict: e.verdict.clone(),
                    output: e.output.clone(),
                    reply: e.reply.clone(),
                })
                .collect(),
        }
    }

    /// Writes the file (replacing it).
    pub fn save(&self, path: &Path) -> Result<(), HarnessError> {
        let failed = |source| HarnessError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
        for entry in &self.entries {
            let line = serde_json::to_string(entry).expect("plain data serializes");
            writeln!(file, "{line}").map_err(failed)?;
        }
        file.flush().map_err(failed)
    }

    /// Reads a file written by [`Golden::save`] (blank lines ignored).
    pub fn load(path: &Path) -> Result<Self, HarnessError> {
        let name = path.display().to_string();
        let failed = |source| HarnessError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(failed)?;
        let mut entries = Vec::new();
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(failed)?;
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str(&line).map_err(|e| HarnessError::Golden {
                path: name.clone(),
                line: index + 1,
                reason: e.to_string(),
            })?;
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// How `got` differs from this (expected) file, matching events by stream and
    /// index: golden order first, then events only `got` has. Empty when equal.
    pub fn compare(&self, got: &Golden) -> Vec<Mismatch> {
        let key = |e: &GoldenEntry| (e.stream, e.index);
        let mut mismatches = Vec::new();
        for expected in &self.entries {
            match got.entries.iter().find(|g| key(g) == key(expected)) {
                None => mismatches.push(Mismatch::Missing {
                    expected: expected.clone(),
                }),
                Some(got) if got != expected => mismatches.push(Mismatch::Differs {
                    expected: expected.clone(),
                    got: got.clone(),
                }),
                Some(_) => {}
            }
        }
        for got in &got.entries {
            if !self.entries.iter().any(|e| key(e) == key(got)) {
                mismatches.push(Mismatch::Extra { got: got.clone() });
            }
        }
        mismatches
    }
}

/// The comparison for people: one block per differing event, expected (`-`) against
/// this run (`+`).
pub fn render(path: &Path, mismatches: &[Mismatch]) -> String {
    if mismatches.is_empty() {
        return format!("\ngolden {}: equal\n", path.display());
    }
    let mut out = format!(
        "\ngolden {}: {} event(s) differ (- expected, + this run)\n",
        path.display(),
        mismatches.len()
    );
    for mismatch in mismatches {
        for line in mismatch_lines(mismatch) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn mismatch_lines(mismatch: &Mismatch) -> Vec<String> {
    match mismatch {
        Mismatch::Missing { expected } => vec![format!(
            "  {} {}: expected {}, but this run has no such event",
            expected.name(),
            expected.direction.as_str(),
            expected.verdict
        )],
        Mismatch::Extra { got } => vec![format!(
            "  {} {}: this run has {}, the golden file has no such event",
            got.name(),
            got.direction.as_str(),
            got.verdict
        )],
        Mismatch::Differs { expected, got } => {
            let mut lines = vec![format!(
                "  {} {}: expected {}, got {}",
                expected.name(),
                expected.direction.as_str(),
                expected.verdict,
                got.verdict
            )];
            let output = match (&expected.output, &got.output) {
                (Some(e), Some(g)) => event_diff(e, g),
                (Some(_), None) => vec!["(this run sends nothing)".into()],
                (None, Some(_)) => vec!["(expected nothing to be sent)".into()],
                (None, None) => Vec::new(),
            };
            lines.extend(output.into_iter().map(|l| format!("      {l}")));
            lines
        }
    }
}

/// The comparison for `--json`: the file, whether it matched, and each mismatch.
pub fn to_json(path: &Path, mismatches: &[Mismatch]) -> Value {
    json!({
        "file": path.display().to_string(),
        "equal": mismatches.is_empty(),
        "mismatches": mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, verdict: &str, data: Option<&str>) -> GoldenEntry {
        GoldenEntry {
            stream: 1,
            index,
            direction: if index == 0 {
                Leg::ToServer
            } else {
                Leg::ToClient
            },
            verdict: verdict.into(),
            reply: None,
            output: data.map(|d| TapeEvent {
                id: None,
                event: None,
                data: Some(d.into()),
                data_at: None,
                retry: None,
            }),
        }
    }

    fn golden(entries: Vec<GoldenEntry>) -> Golden {
        Golden { entries }
    }

    #[test]
    fn a_golden_file_round_trips_one_line_per_event() {
        let g = golden(vec![entry(0, "pass", Some("{}")), entry(1, "drop", None)]);
        let path = std::env::temp_dir().join(format!("sluice-golden-{}.jsonl", std::process::id()));
        g.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.starts_with(r#"{"stream":1,"index":0,"direction":"to-server","verdict":"pass""#),
            "{text}"
        );
        assert!(!text.contains("micros") && !text.contains("fuel"));
        assert_eq!(Golden::load(&path).unwrap(), g);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn equal_runs_have_no_mismatch() {
        let g = golden(vec![
            entry(0, "pass", Some("{}")),
            entry(1, "modify", Some("x")),
        ]);
        assert!(g.compare(&g.clone()).is_empty());
    }

    #[test]
    fn a_different_verdict_names_the_event_and_diffs_its_output() {
        let expected = golden(vec![entry(1, "modify", Some("key [REDACTED]"))]);
        let got = golden(vec![entry(1, "pass", Some("key sk-live-1"))]);
        let mismatches = expected.compare(&got);
        assert_eq!(mismatches.len(), 1);
        let text = render(Path::new("g.jsonl"), &mismatches);
        assert!(text.contains("1 event(s) differ"), "{text}");
        assert!(
            text.contains("1/1 to-client: expected modify, got pass"),
            "{text}"
        );
        assert!(text.contains("- data: key [REDACTED]"), "{text}");
        assert!(text.contains("+ data: key sk-live-1"), "{text}");
    }

    #[test]
    fn missing_and_extra_events_are_both_reported() {
        let expected = golden(vec![
            entry(0, "pass", Some("{}")),
            entry(1, "pass", Some("a")),
        ]);
        let got = golden(vec![entry(0, "pass", Some("{}")), entry(2, "drop", None)]);
        let mismatches = expected.compare(&got);
        assert!(matches!(&mismatches[0], Mismatch::Missing { expected } if expected.index == 1));
        assert!(matches!(&mismatches[1], Mismatch::Extra { got } if got.index == 2));
        let text = render(Path::new("g"), &mismatches);
        assert!(text.contains("1/1 to-client: expected pass, but this run has no such event"));
        assert!(
            text.contains("1/2 to-client: this run has drop, the golden file has no such event")
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let path =
            std::env::temp_dir().join(format!("sluice-golden-bad-{}.jsonl", std::process::id()));
        std::fs::write(&path, "\n{\"stream\":1}\n").unwrap();
        let err = Golden::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(":2: not a golden entry"), "{err}");
    }
}
