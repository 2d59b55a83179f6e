//! Masking: which rules a message may need (the prefilter over its raw text), and the
//! replacement inside every JSON string value.

use memchr::memmem;
use serde_json::Value;

use crate::rules::Rule;

/// Whether the raw JSON text escapes a printable ASCII character (`\u0041`, `\/`), which
/// no common encoder does but a sender hiding a token from a substring search could:
/// the prefilter then cannot trust the raw text, and every rule is tried on the decoded
/// strings. Rare, so the clean common case stays one substring search per literal.
fn escapes_printable_ascii(data: &[u8]) -> bool {
    if memmem::find(data, br"\/").is_some() {
        return true;
    }
    memmem::find_iter(data, br"\u00").any(|at| {
        let hex = &data[at + 4..data.len().min(at + 6)];
        // \u0020 to \u007e: printable ASCII, never needs escaping.
        matches!(hex, [b'2'..=b'7', _])
    })
}

/// The indices of the rules that may match somewhere in `data` (the message's raw
/// text). Empty: the message is certainly clean and needs no parsing.
pub fn candidates(rules: &[Rule], data: &str) -> Vec<usize> {
    let bytes = data.as_bytes();
    let all = escapes_printable_ascii(bytes);
    (0..rules.len())
        .filter(|&i| all || rules[i].may_match(bytes))
        .collect()
}

/// Counts of masks per rule, in rule order.
pub type Counts = Vec<u64>;

/// Masks every match of the candidate rules in `text`; true when it changed.
pub fn mask_text(
    rules: &[Rule],
    candidates: &[usize],
    text: &mut String,
    counts: &mut Counts,
) -> bool {
    let mut changed = false;
    for &i in candidates {
        let rule = &rules[i];
        if !rule.may_match(text.as_bytes()) {
            continue;
        }
        let mut n = 0;
        let replaced = rule
            .regex()
            .replace_all(text, |_: &regex_lite::Captures<'_>| {
                n += 1;
                rule.replacement.as_str()
            });
        if let std::borrow::Cow::Owned(replaced) = replaced {
            *text = replaced;
            counts[i] += n;
            changed = true;
        }
    }
    changed
}

/// Masks inside the string values of a JSON-RPC message: `params`, `result`, `error`
/// (every string at any depth: text content, `structuredContent`, resource text,
/// arguments), leaving `jsonrpc`, `id` and `method`, and every object key, as they are.
/// The message stays valid JSON with its keys in their order.
pub fn mask_message(
    rules: &[Rule],
    candidates: &[usize],
    message: &mut Value,
    counts: &mut Counts,
) {
    let Some(top) = message.as_object_mut() else {
        sluice_plugin::each_string_mut(message, &mut |s| {
            mask_text(rules, candidates, s, counts);
        });
        return;
    };
    for (key, value) in top.iter_mut() {
        if matches!(key.as_str(), "jsonrpc" | "id" | "method") {
            continue;
        }
        sluice_plugin::each_string_mut(value, &mut |s| {
            mask_text(rules, candidates, s, counts);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    #[test]
    fn a_clean_message_has_no_candidates_and_an_escaped_one_has_all() {
        let rules = rules::parse("").unwrap().rules;
        let clean = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"caf\u00e9 at 12:00"}]}}"#;
        assert!(candidates(&rules, clean).is_empty());
        // `\u0041` is `A`: the raw text hides `AKIA` from the substring search.
        let hidden = r#"{"params":{"arguments":{"k":"\u0041KIAIOSFODNN7EXAMPLE"}}}"#;
        assert_eq!(candidates(&rules, hidden).len(), rules.len());
        let mut message: Value = serde_json::from_str(hidden).unwrap();
        let mut counts = vec![0; rules.len()];
        mask_message(
            &rules,
            &candidates(&rules, hidden),
            &mut message,
            &mut counts,
        );
        assert_eq!(
            message["params"]["arguments"]["k"],
            "[REDACTED:aws_access_key_id]"
        );
    }

    #[test]
    fn a_pattern_beyond_ascii_is_found_when_the_encoder_escaped_it() {
        let config = r#"{"builtin": false, "patterns": [{"name": "pw", "regex": "Пароль: \\S+"}]}"#;
        let rules = rules::parse(config).unwrap().rules;
        // Python's json.dumps writes non-ASCII as \u escapes by default.
        let escaped = r#"{"result":{"text":"\u041f\u0430\u0440\u043e\u043b\u044c: hunter2"}}"#;
        assert_eq!(candidates(&rules, escaped), [0]);
        let mut message: Value = serde_json::from_str(escaped).unwrap();
        let mut counts = vec![0; rules.len()];
        mask_message(&rules, &[0], &mut message, &mut counts);
        assert_eq!(message["result"]["text"], "[REDACTED:pw]");
    }
}
