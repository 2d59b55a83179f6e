//! The changed fields of an event, readable in a terminal.
//!
//! MCP messages are often kilobytes of JSON on one line and a plugin changes a few
//! characters of them, so a field longer than [`WHOLE`] characters is shown around its
//! change only: the common start and end are cut to [`CONTEXT`] characters each side,
//! marked `…`. Line breaks and other control characters are escaped so that one field
//! stays on one line.

use crate::tape::TapeEvent;

/// A value up to this many characters is shown whole.
const WHOLE: usize = 160;
/// Unchanged characters kept on each side of a change in a longer value.
const CONTEXT: usize = 40;
/// The changed part itself is cut beyond this many characters.
const CHANGED: usize = 200;

/// `- field: old` / `+ field: new` lines for each field that differs between `before`
/// and `after`, in SSE field order (`id`, `event`, `data`, `retry`).
pub fn event_diff(before: &TapeEvent, after: &TapeEvent) -> Vec<String> {
    let retry = |r: Option<u64>| r.map(|r| r.to_string());
    let fields = [
        ("id", before.id.clone(), after.id.clone()),
        ("event", before.event.clone(), after.event.clone()),
        ("data", before.data.clone(), after.data.clone()),
        ("retry", retry(before.retry), retry(after.retry)),
    ];
    let mut lines = Vec::new();
    for (name, old, new) in fields {
        if old == new {
            continue;
        }
        let (old, new) = match (old.as_deref(), new.as_deref()) {
            (Some(old), Some(new)) => {
                let (old, new) = around_change(old, new);
                (Some(old), Some(new))
            }
            (old, new) => (old.map(shorten), new.map(shorten)),
        };
        lines.extend(old.map(|v| format!("- {name}: {v}")));
        lines.extend(new.map(|v| format!("+ {name}: {v}")));
    }
    lines
}

/// Both values, cut to the region where they differ plus [`CONTEXT`] characters each
/// side, when either is longer than [`WHOLE`].
fn around_change(old: &str, new: &str) -> (String, String) {
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    if a.len() <= WHOLE && b.len() <= WHOLE {
        return (escape(&a), escape(&b));
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let room = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    let start = prefix.saturating_sub(CONTEXT);
    let cut = |chars: &[char]| {
        let end = (chars.len() - suffix + CONTEXT).min(chars.len());
        let changed = &chars[prefix..chars.len() - suffix];
        let mut shown = String::new();
        if start > 0 {
            shown.push('…');
        }
        shown.push_str(&escape(&chars[start..prefix]));
        shown.push_str(&cut_middle(changed));
        shown.push_str(&escape(&chars[chars.len() - suffix..end]));
        if end < chars.len() {
            shown.push('…');
        }
        shown
    };
    (cut(&a), cut(&b))
}

/// A changed region longer than [`CHANGED`] keeps its two ends.
fn cut_middle(chars: &[char]) -> String {
    if chars.len() <= CHANGED {
        return escape(chars);
    }
    let half = CHANGED / 2;
    format!(
        "{}…[{} chars]…{}",
        escape(&chars[..half]),
        chars.len() - 2 * half,
        escape(&chars[chars.len() - half..])
    )
}

/// A value with nothing to compare against: its start, and its length if cut.
fn shorten(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= WHOLE {
        return escape(&chars);
    }
    format!("{}… ({} chars)", escape(&chars[..WHOLE]), chars.len())
}

/// One line per field: `\n`, `\r`, `\t` and other control characters escaped.
fn escape(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    for c in chars {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(*c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> TapeEvent {
        TapeEvent {
            id: Some("7".into()),
            event: None,
            data: Some(text.into()),
            data_at: None,
            retry: None,
        }
    }

    #[test]
    fn only_changed_fields_are_shown_and_short_values_whole() {
        let lines = event_diff(&data("key sk-live-abc123"), &data("key [REDACTED]"));
        assert_eq!(
            lines,
            vec!["- data: key sk-live-abc123", "+ data: key [REDACTED]"]
        );
    }

    #[test]
    fn long_values_are_cut_around_the_change() {
        let head = "a".repeat(500);
        let tail = "z".repeat(500);
        let lines = event_diff(
            &data(&format!("{head}secret{tail}")),
            &data(&format!("{head}[X]{tail}")),
        );
        let context = "a".repeat(CONTEXT);
        let after = "z".repeat(CONTEXT);
        assert_eq!(
            lines,
            vec![
                format!("- data: …{context}secret{after}…"),
                format!("+ data: …{context}[X]{after}…"),
            ]
        );
    }

    #[test]
    fn a_long_change_keeps_its_ends_and_counts_the_rest() {
        let old = "x".repeat(1000);
        let new = "y".repeat(1000);
        let lines = event_diff(&data(&old), &data(&new));
        let expected_old = format!(
            "- data: {}…[800 chars]…{}",
            "x".repeat(100),
            "x".repeat(100)
        );
        assert_eq!(lines[0], expected_old);
    }

    #[test]
    fn removed_and_added_fields_have_one_side_and_lines_stay_lines() {
        let before = data("line one\nline two");
        let after = TapeEvent {
            id: Some("7".into()),
            event: Some("message".into()),
            data: None,
            data_at: None,
            retry: Some(500),
        };
        assert_eq!(
            event_diff(&before, &after),
            vec![
                "+ event: message",
                "- data: line one\\nline two",
                "+ retry: 500"
            ]
        );
    }

    #[test]
    fn multibyte_text_is_cut_on_characters() {
        let head = "é".repeat(300);
        let lines = event_diff(&data(&format!("{head}ü")), &data(&format!("{head}ö")));
        assert_eq!(lines[0], format!("- data: …{}ü", "é".repeat(CONTEXT)));
    }
}
