//! The patterns: the built-in credential shapes and the operator's own, read from the
//! configuration.

use std::cell::OnceCell;

use memchr::memmem::Finder;
use regex_lite::Regex;
use serde::Deserialize;

/// The replacement when the config gives none; `{name}` is the pattern's name.
pub const DEFAULT_REPLACEMENT: &str = "[REDACTED:{name}]";

/// A built-in pattern: its name, the literals one of which every match contains (the
/// prefilter), and the regex (syntax of `regex-lite`: `\b`, `\w`, `(?i)` are ASCII).
struct Builtin {
    name: &'static str,
    literals: &'static [&'static str],
    regex: &'static str,
}

/// The credentials masked by default. Each regex asks for the token's known prefix and
/// a realistic length, so the words around it and short lookalikes (`sk-test`, an
/// `AKIA` in prose) are left alone.
const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "aws_access_key_id",
        literals: &["AKIA", "ASIA", "ABIA", "ACCA"],
        regex: r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    },
    Builtin {
        name: "gcp_api_key",
        literals: &["AIza"],
        regex: r"\bAIza[0-9A-Za-z_-]{35}",
    },
    Builtin {
        name: "github_token",
        literals: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        regex: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,})\b",
    },
    Builtin {
        name: "slack_token",
        literals: &["xox"],
        regex: r"\bxox[abeoprs]-[0-9A-Za-z-]{10,}",
    },
    Builtin {
        name: "slack_webhook",
        literals: &["hooks.slack.com/services/"],
        regex: r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    },
    Builtin {
        // Header and payload are base64url JSON objects: both start `eyJ` (`{"`).
        name: "jwt",
        literals: &["eyJ"],
        regex: r"\beyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
    },
    Builtin {
        // The whole block, BEGIN to END; a block cut off before its END is masked to
        // the end of the string (half a key is still a leak).
        name: "private_key",
        literals: &["PRIVATE KEY"],
        regex: r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)",
    },
    Builtin {
        // OpenAI (`sk-`, `sk-proj-`), Anthropic (`sk-ant-`) and alike.
        name: "openai_key",
        literals: &["sk-"],
        regex: r"\bsk-[A-Za-z0-9_-]{20,}",
    },
    Builtin {
        name: "stripe_key",
        literals: &["k_live_", "k_test_"],
        regex: r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}",
    },
];

/// The names of the built-in patterns, for errors and the README.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// `builtin` in the config: all, none, or these by name.
#[derive(Deserialize)]
#[serde(untagged)]
enum BuiltinChoice {
    All(bool),
    Names(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternConfig {
    name: String,
    regex: String,
    /// A literal every match contains, for the prefilter; derived from the regex's
    /// literal start when not given.
    literal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    patterns: Vec<PatternConfig>,
    replacement: Option<String>,
    builtin: Option<BuiltinChoice>,
    direction: Option<String>,
}

/// One pattern, ready to mask. The regex of a built-in is compiled the first time its
/// prefilter lets a string through: an instance serves one exchange, and most
/// exchanges carry no credential, so most never compile one.
pub struct Rule {
    pub name: String,
    /// The prefilter; empty: no literal known, every string is searched.
    literals: Vec<Finder<'static>>,
    source: String,
    regex: OnceCell<Regex>,
    pub replacement: String,
}

impl Rule {
    fn new(name: String, literals: Vec<String>, source: String, replacement: &str) -> Rule {
        // A literal is searched in the raw JSON text, where an encoder may write any
        // character but printable ASCII as an escape (`\u041f`, as Python's json does
        // by default): a rule with such a literal keeps no prefilter, so its regex
        // runs on every decoded string rather than miss an escaped match.
        let raw_safe = |l: &String| {
            l.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        let literals = if literals.iter().all(raw_safe) {
            literals
        } else {
            Vec::new()
        };
        Rule {
            replacement: replacement.replace("{name}", &name),
            name,
            literals: literals
                .iter()
                .map(|l| Finder::new(l.as_bytes()).into_owned())
                .collect(),
            source,
            regex: OnceCell::new(),
        }
    }

    /// Whether `text` may hold a match (one of the literals is in it).
    pub fn may_match(&self, text: &[u8]) -> bool {
        self.literals.is_empty() || self.literals.iter().any(|f| f.find(text).is_some())
    }

    /// The compiled regex. A built-in's source is known to compile (the unit test
    /// checks it), and an operator's was compiled once at `init`.
    pub fn regex(&self) -> &Regex {
        self.regex
            .get_or_init(|| Regex::new(&self.source).expect("checked at init"))
    }
}

/// Which ways the plugin masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    ToServer,
    ToClient,
}

/// The parsed configuration.
pub struct Rules {
    pub rules: Vec<Rule>,
    pub direction: Direction,
}

/// The literal text every match of `pattern` starts with, if it is simple enough to be
/// sure (as in the `redact` example): the characters before the first metacharacter,
/// minus the last one when a quantifier follows it. None with `|` or a leading group,
/// class or flag. A literal with `"` or `\` is not used: JSON escapes them, so the raw
/// message would not show it as it is.
fn literal_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let is_meta = |c: char| "\\.^$|?*+()[]{}\"".contains(c);
    let mut prefix: String = pattern.chars().take_while(|&c| !is_meta(c)).collect();
    if matches!(
        pattern[prefix.len()..].chars().next(),
        Some('?' | '*' | '{')
    ) {
        prefix.pop();
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// Reads the configuration (`""` means all the built-ins, masked both ways). Any
/// mistake is an error: a secrets filter that loads with a pattern missing would leak
/// what the operator meant to mask.
pub fn parse(text: &str) -> Result<Rules, String> {
    let config: Config = if text.trim().is_empty() {
        Config {
            patterns: Vec::new(),
            replacement: None,
            builtin: None,
            direction: None,
        }
    } else {
        serde_json::from_str(text).map_err(|e| format!("secrets: invalid config: {e}"))?
    };
    let replacement = config.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);
    let direction = match config.direction.as_deref() {
        None | Some("both") => Direction::Both,
        Some("to-server") => Direction::ToServer,
        Some("to-client") => Direction::ToClient,
        Some(other) => {
            return Err(format!(
                "secrets: direction {other:?} is not one of \"both\", \"to-server\", \"to-client\""
            ));
        }
    };
    let builtins: Vec<&Builtin> = match config.builtin {
        None | Some(BuiltinChoice::All(true)) => BUILTINS.iter().collect(),
        Some(BuiltinChoice::All(false)) => Vec::new(),
        Some(BuiltinChoice::Names(names)) => names
            .iter()
            .map(|name| {
                BUILTINS.iter().find(|b| b.name == name).ok_or_else(|| {
                    let known: Vec<_> = builtin_names().collect();
                    format!(
                        "secrets: builtin {name:?} is not a built-in pattern (known: {})",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut rules: Vec<Rule> = builtins
        .into_iter()
        .map(|b| {
            Rule::new(
                b.name.to_string(),
                b.literals.iter().map(|l| l.to_string()).collect(),
                b.regex.to_string(),
                replacement,
            )
        })
        .collect();
    for (i, pattern) in config.patterns.into_iter().enumerate() {
        if pattern.name.is_empty() {
            return Err(format!("secrets: patterns[{i}].name is empty"));
        }
        if rules.iter().any(|r| r.name == pattern.name) {
            return Err(format!(
                "secrets: patterns[{i}].name {:?} is used twice (built-ins included)",
                pattern.name
            ));
        }
        let regex = Regex::new(&pattern.regex).map_err(|e| {
            format!(
                "secrets: patterns[{i}] ({}) {:?} is not a valid regex: {e}",
                pattern.name, pattern.regex
            )
        })?;
        // "" or "x*" would put a replacement between every two characters.
        if regex.is_match("") {
            return Err(format!(
                "secrets: patterns[{i}] ({}) matches the empty string",
                pattern.name
            ));
        }
        let literal = match pattern.literal {
            Some(l) if l.is_empty() => {
                return Err(format!("secrets: patterns[{i}].literal is empty"));
            }
            Some(l) => Some(l),
            None => literal_prefix(&pattern.regex),
        };
        let rule = Rule::new(
            pattern.name,
            literal.into_iter().collect(),
            pattern.regex,
            replacement,
        );
        let _ = rule.regex.set(regex);
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(
            "secrets: no patterns: \"builtin\" is false or empty and \"patterns\" is empty".into(),
        );
    }
    Ok(Rules { rules, direction })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_compiles_and_matches_no_empty_string() {
        for b in BUILTINS {
            let re = Regex::new(b.regex).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert!(!re.is_match(""), "{}", b.name);
        }
    }

    #[test]
    fn a_bad_config_is_refused() {
        for bad in [
            "{",
            r#"{"builtin": false}"#,
            r#"{"builtin": ["nope"]}"#,
            r#"{"patterns": [{"name": "x", "regex": "("}]}"#,
            r#"{"patterns": [{"name": "x", "regex": "a*"}]}"#,
            r#"{"patterns": [{"name": "jwt", "regex": "abc"}]}"#,
            r#"{"direction": "up"}"#,
            r#"{"unknown": 1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("").unwrap().rules.len(), BUILTINS.len());
    }
}
