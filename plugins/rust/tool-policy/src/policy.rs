//! The policy: which caller may see and call which tool. Pure logic, no host calls.

use serde::Deserialize;

/// A tool name pattern: exact, or a prefix ending in `*` (`"admin_*"`; `"*"` is every
/// tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str, at: &str) -> Result<Pattern, String> {
        match text.find('*') {
            None if text.is_empty() => Err(format!("tool-policy: {at} is empty")),
            None => Ok(Pattern::Exact(text.to_string())),
            Some(i) if i == text.len() - 1 => Ok(Pattern::Prefix(text[..i].to_string())),
            Some(_) => Err(format!(
                "tool-policy: {at} {text:?}: `*` is allowed only at the end (a prefix)"
            )),
        }
    }

    fn matches(&self, tool: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == tool,
            Pattern::Prefix(prefix) => tool.starts_with(prefix.as_str()),
        }
    }
}

fn any_matches(patterns: &[Pattern], tool: &str) -> bool {
    patterns.iter().any(|p| p.matches(tool))
}

/// Who is calling, as far as the policy looks: the host's `context::caller()`.
#[derive(Debug, Default)]
pub struct Caller {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

/// A rule: the tools it covers and the callers it admits to them.
#[derive(Debug)]
pub struct Rule {
    tools: Vec<Pattern>,
    scopes: Vec<String>,
    subjects: Vec<String>,
    clients: Vec<String>,
}

impl Rule {
    /// A caller holding any of the scopes, or being any of the subjects or clients.
    /// No caller (a route without `[auth]`): nobody is admitted.
    fn admits(&self, caller: Option<&Caller>) -> bool {
        let Some(caller) = caller else { return false };
        caller.scopes.iter().any(|s| self.scopes.contains(s))
            || caller
                .subject
                .as_ref()
                .is_some_and(|s| self.subjects.contains(s))
            || caller
                .client_id
                .as_ref()
                .is_some_and(|c| self.clients.contains(c))
    }
}

/// The parsed configuration.
#[derive(Debug)]
pub struct Policy {
    deny: Vec<Pattern>,
    allow: Option<Vec<Pattern>>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    tools: Vec<String>,
    #[serde(default)]
    allow_scopes: Vec<String>,
    #[serde(default)]
    allow_subjects: Vec<String>,
    #[serde(default)]
    allow_clients: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    deny: Vec<String>,
    allow: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

fn patterns(texts: &[String], at: &str) -> Result<Vec<Pattern>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Pattern::parse(t, &format!("{at}[{i}]")))
        .collect()
}

impl Policy {
    /// Reads the configuration. Any mistake is an error, so the plugin refuses to load
    /// (and sluice to start, or a reload keeps the old chain) rather than guard with a
    /// policy other than the one written.
    pub fn parse(text: &str) -> Result<Policy, String> {
        if text.trim().is_empty() {
            return Err(
                r#"tool-policy: no config; expected {"deny": [...], "allow": [...], "rules": [{"tools": [...], "allow_scopes": [...]}]}"#
                    .into(),
            );
        }
        let config: Config =
            serde_json::from_str(text).map_err(|e| format!("tool-policy: invalid config: {e}"))?;
        if config.deny.is_empty() && config.allow.is_none() && config.rules.is_empty() {
            return Err(
                "tool-policy: the config has no deny, allow or rules: nothing to enforce".into(),
            );
        }
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                if rule.tools.is_empty() {
                    return Err(format!("tool-policy: rules[{i}].tools is empty"));
                }
                if rule.allow_scopes.is_empty()
                    && rule.allow_subjects.is_empty()
                    && rule.allow_clients.is_empty()
                {
                    return Err(format!(
                        "tool-policy: rules[{i}] admits nobody (no allow_scopes, allow_subjects or allow_clients); to hide tools from everyone, list them in deny"
                    ));
                }
                Ok(Rule {
                    tools: patterns(&rule.tools, &format!("rules[{i}].tools"))?,
                    scopes: rule.allow_scopes.clone(),
                    subjects: rule.allow_subjects.clone(),
                    clients: rule.allow_clients.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            deny: patterns(&config.deny, "deny")?,
            allow: config
                .allow
                .as_deref()
                .map(|a| patterns(a, "allow"))
                .transpose()?,
            rules,
        })
    }

    /// Whether `caller` may see and call `tool`: the one decision behind both the
    /// `tools/list` filter and the `tools/call` refusal, so a client is never shown a
    /// tool it may not call, nor allowed to call one it was not shown.
    ///
    /// `deny` hides a tool from everyone. Otherwise the first rule whose `tools` match
    /// decides (the caller must be one it admits); a tool no rule names is visible when
    /// `allow` is absent or matches it.
    pub fn allows(&self, tool: &str, caller: Option<&Caller>) -> bool {
        if any_matches(&self.deny, tool) {
            return false;
        }
        if let Some(rule) = self.rules.iter().find(|r| any_matches(&r.tools, tool)) {
            return rule.admits(caller);
        }
        self.allow
            .as_ref()
            .is_none_or(|allow| any_matches(allow, tool))
    }

    /// Whether the decision can depend on the caller (some rule exists): otherwise the
    /// plugin does not ask the host who is calling.
    pub fn needs_caller(&self) -> bool {
        !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str, scopes: &[&str]) -> Caller {
        Caller {
            subject: Some(subject.into()),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn deny_then_first_rule_then_allow() {
        let policy = Policy::parse(
            r#"{"deny": ["drop_*"], "allow": ["echo", "admin_*"],
                "rules": [{"tools": ["admin_read"], "allow_scopes": ["read"]},
                          {"tools": ["admin_*"], "allow_scopes": ["admin"], "allow_subjects": ["root"]}]}"#,
        )
        .unwrap();
        let reader = caller("r", &["read"]);
        let admin = caller("a", &["admin"]);
        let root = caller("root", &[]);
        assert!(policy.allows("echo", None));
        assert!(!policy.allows("other", Some(&admin)), "not in allow");
        assert!(!policy.allows("drop_table", Some(&admin)), "denied");
        assert!(policy.allows("admin_read", Some(&reader)));
        assert!(
            !policy.allows("admin_read", Some(&admin)),
            "first rule decides"
        );
        assert!(policy.allows("admin_write", Some(&admin)));
        assert!(policy.allows("admin_write", Some(&root)));
        assert!(!policy.allows("admin_write", Some(&reader)));
        assert!(!policy.allows("admin_write", None), "no caller: closed");
    }

    #[test]
    fn a_bad_config_is_refused() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"deny": ["a*b"]}"#,
            r#"{"deny": [""]}"#,
            r#"{"rules": [{"tools": ["x"]}]}"#,
            r#"{"rules": [{"tools": [], "allow_scopes": ["s"]}]}"#,
            r#"{"deny": ["x"], "alow": ["y"]}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }
}
