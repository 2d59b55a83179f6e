//! The library's operations plugins (`plugins/rust/{rate-limit,faults,audit}`), each in
//! a real sluice in front of the rmcp test server, called by the rmcp client: what each
//! catches, and one thing it does not.

use rmcp::service::ServiceError;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice::plugin::{Plugin, PluginSpec, PowerGrants, Runtime, StateLimits};

use super::operations::{plugin_counter as counter, scrape, value};
use super::powers::{connect, named, posts, rpc_error, start_checked, token};
use crate::common::authz::Authz;
use crate::common::mcp;
use crate::common::{plugin_log, proxy};

#[test]
fn a_bad_configuration_is_refused_at_load_with_the_key_it_is_about() {
    let runtime = Runtime::new().unwrap();
    let cases = [
        ("rate-limit", "", "rate-limit: invalid config"),
        (
            "rate-limit",
            r#"{"limits": []}"#,
            "rate-limit: limits is empty",
        ),
        (
            "rate-limit",
            r#"{"limits": [{"max": 0, "window_secs": 60}]}"#,
            "limits[0].max must be at least 1",
        ),
        (
            "rate-limit",
            r#"{"limits": [{"per": ["ip"], "max": 1, "window_secs": 60}]}"#,
            "unknown variant `ip`",
        ),
        (
            "rate-limit",
            r#"{"limits": [{"per": ["tool", "tool"], "max": 1, "window_secs": 60}]}"#,
            "limits[0].per names tool twice",
        ),
        ("faults", r#"{"rules": []}"#, "missing field `seed`"),
        (
            "faults",
            r#"{"seed": 1, "rules": [{"drop": 0.7, "error": 0.7}]}"#,
            "rules[0]: delay + drop + error is more than 1",
        ),
        (
            "faults",
            r#"{"seed": 1, "rules": [{"delay": 0.5}]}"#,
            "rules[0].delay_ms must be from 1",
        ),
        (
            "faults",
            r#"{"seed": 1, "rules": [{"methods": ["ping"], "tools": ["x"], "drop": 1}]}"#,
            "tools matches tools/call, which methods leaves out",
        ),
        (
            "audit",
            r#"{"log_request": true}"#,
            "unknown field `log_request`",
        ),
    ];
    for (plugin, config, expected) in cases {
        let refused = Plugin::load(&runtime, proxy::rust(plugin, config))
            .err()
            .unwrap_or_else(|| panic!("{plugin} accepted {config}"));
        let text = refused.to_string();
        assert!(text.contains(expected), "{plugin} {config}: {text}");
    }
}

#[test]
fn each_readme_example_is_a_config_file_sluice_loads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let runtime = Runtime::new().unwrap();
    for plugin in ["rate-limit", "faults", "audit"] {
        proxy::rust_plugin(plugin); // built, if it was not yet
        let readme = root.join(format!("plugins/rust/{plugin}/README.md"));
        let text = std::fs::read_to_string(&readme).unwrap();
        let example = text
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("{}: no toml example", readme.display()));
        // As a file at the repository's root: its plugin paths are relative to it.
        let file = format!("upstream = \"http://127.0.0.1:9\"\n{example}");
        let parsed = sluice::config::file::parse(&root.join("sluice.toml"), &file)
            .unwrap_or_else(|e| panic!("{plugin}'s README example: {e}"));
        assert_eq!(parsed.plugins.len(), 1, "{plugin}");
        for spec in parsed.plugins {
            if let Err(error) = Plugin::load(&runtime, spec) {
                panic!("{plugin}'s README example is refused: {error}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// rate-limit
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_the_call_over_a_limit_with_retry_data_and_counts_others_apart() {
    let upstream = mcp::spawn_mcp_server().await;
    let authz = Authz::start().await;
    // Windows far longer than the test: no call's fate depends on the clock.
    let config = json!({"limits": [
        {"per": ["caller", "tool"], "max": 3, "window_secs": 3600, "tools": ["echo*"]},
        {"per": ["session"], "max": 1, "window_secs": 600, "tools": ["forecast"], "name": "forecasts"},
    ]});
    let plugin = proxy::rust("rate-limit", &config.to_string());
    let (mut sluice, resource) = start_checked(&upstream, &authz, vec![plugin]).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let erin = token(&authz, &resource, "limit-erin", "mcp:tools");
    let finn = token(&authz, &resource, "limit-finn", "mcp:tools");
    // Two sessions of one caller, and another caller.
    let first = connect(&resource, Some(&erin), &[]).await;
    let second = connect(&resource, Some(&erin), &[]).await;
    let other = connect(&resource, Some(&finn), &[]).await;
    let before = posts(&upstream);

    // Three echo calls of erin's, across her sessions: the limit is per caller.
    for (session, text) in [(&first, "1"), (&second, "2"), (&first, "3")] {
        let echo = session.call_text("echo", json!({"text": text})).await;
        assert_eq!(echo.unwrap(), text);
    }
    // The fourth in the window is refused, with when to retry, and never goes up.
    let error = rpc_error(second.call_text("echo", json!({"text": "4"})).await);
    assert_eq!(error.code.0, -32029);
    assert_eq!(
        error.message,
        "rate limit: at most 3 tools/call per caller and tool every 3600 s"
    );
    let data = error.data.expect("the refusal carries data");
    assert_eq!(data["retry_after_secs"], 3600, "{data}");
    assert_eq!(data["limit"], "limit0", "{data}");
    assert_eq!(posts(&upstream), before + 3);

    // Another caller, and another tool of the same caller, are counted apart.
    let echo = other.call_text("echo", json!({"text": "f"})).await;
    assert_eq!(echo.unwrap(), "f");
    let forecast = first
        .call_text("forecast", json!({"region": "north"}))
        .await;
    assert_eq!(forecast.unwrap(), "forecast for north");
    // The session limit: a second forecast in that session is refused, one in the
    // caller's other session is not.
    let error = rpc_error(
        first
            .call_text("forecast", json!({"region": "south"}))
            .await,
    );
    assert_eq!(error.code.0, -32029);
    assert_eq!(error.data.unwrap()["retry_after_secs"], 600);
    let forecast = second
        .call_text("forecast", json!({"region": "east"}))
        .await;
    assert_eq!(forecast.unwrap(), "forecast for east");
    // A tool no limit names is never counted.
    for _ in 0..5 {
        assert!(first.call_text("get_secret", Value::Null).await.is_ok());
    }
    assert_eq!(posts(&upstream), before + 3 + 3 + 5);

    let metrics = scrape(admin).await;
    assert_eq!(
        counter(&metrics, "rate-limit", "allowed", ""),
        Some(11.0),
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rate-limit", "refused", "limit0"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rate-limit", "refused", "forecasts"),
        Some(1.0),
        "{metrics}"
    );

    for client in [first, second, other] {
        client.service.cancel().await.unwrap();
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_what_it_cannot_count_when_its_store_is_full() {
    let upstream = mcp::spawn_mcp_server().await;
    // One entry: the first tool's counter fills the store, the second tool's cannot be
    // written. A limit that cannot count fails closed.
    let plugin = PluginSpec {
        powers: PowerGrants {
            state: StateLimits {
                max_entries: 1,
                ..StateLimits::default()
            },
            ..PowerGrants::default()
        },
        ..proxy::rust(
            "rate-limit",
            r#"{"limits": [{"per": ["tool"], "max": 100, "window_secs": 3600}]}"#,
        )
    };
    let sluice = proxy::start(&proxy::base_of(&upstream.url), vec![plugin]).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);

    let echo = client.call_text("echo", json!({"text": "a"})).await;
    assert_eq!(echo.unwrap(), "a");
    let error = rpc_error(client.call_text("forecast", json!({"region": "x"})).await);
    assert_eq!(error.code.0, -32029);
    assert!(error.message.contains("state store is full"), "{error:?}");
    assert_eq!(error.data.unwrap()["reason"], "state_full");
    // The counted tool still goes through.
    let echo = client.call_text("echo", json!({"text": "b"})).await;
    assert_eq!(echo.unwrap(), "b");
    assert_eq!(posts(&upstream), before + 2);

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

// ---------------------------------------------------------------------------------------
// faults
// ---------------------------------------------------------------------------------------

/// The draw of `plugins/rust/faults` for the `n`th message of rule `rule` under `seed`,
/// as its README states it (SplitMix64's output function, applied three times).
fn faults_draw(seed: u64, rule: u64, n: u64) -> f64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    (mix(mix(mix(seed) ^ rule) ^ n) >> 11) as f64 / (1u64 << 53) as f64
}

/// What became of each of `calls` echo calls through a fresh sluice running `faults`
/// with `config`: "ok", "error <code>" (injected) or "dropped" (sluice's answer for a
/// dropped request); and how many reached the upstream.
async fn echo_fates(config: &Value, calls: usize) -> (Vec<String>, usize) {
    let upstream = mcp::spawn_mcp_server().await;
    let sluice = proxy::start(
        &proxy::base_of(&upstream.url),
        vec![proxy::rust("faults", &config.to_string())],
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);
    let mut fates = Vec::new();
    for i in 0..calls {
        let text = format!("call {i}");
        let fate = match client.call_text("echo", json!({"text": text})).await {
            Ok(echo) => {
                assert_eq!(echo, text);
                "ok".to_string()
            }
            Err(ServiceError::McpError(error)) if error.code.0 == -32050 => {
                assert!(error.message.contains("faults"), "{error:?}");
                "dropped".to_string()
            }
            Err(ServiceError::McpError(error)) => {
                assert_eq!(error.message, "faults: injected error");
                assert_eq!(error.data.as_ref().unwrap()["n"], i + 1, "{error:?}");
                format!("error {}", error.code.0)
            }
            Err(other) => panic!("call {i}: {other:?}"),
        };
        fates.push(fate);
    }
    let reached = posts(&upstream) - before;
    client.service.cancel().await.unwrap();
    sluice.stop().await;
    (fates, reached)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_a_seed_give_the_same_sequence_in_two_fresh_proxies_and_none_at_zero() {
    let seed = 2026;
    // Half of the calls meet a fault: a quarter an error, a quarter a drop.
    let config = json!({"seed": seed, "rules": [
        {"methods": ["tools/call"], "error": 0.25, "error_code": -32042, "drop": 0.25},
    ]});
    let (first, reached) = echo_fates(&config, 20).await;
    let (second, _) = echo_fates(&config, 20).await;
    assert_eq!(first, second, "the same seed gave different faults");

    // The sequence is the documented one: the nth call's draw, in bands (delay, then)
    // drop [0, .25), error [.25, .5), past them none.
    let expected: Vec<String> = (1..=20)
        .map(|n| match faults_draw(seed, 0, n) {
            u if u < 0.25 => "dropped".to_string(),
            u if u < 0.5 => "error -32042".to_string(),
            _ => "ok".to_string(),
        })
        .collect();
    assert_eq!(first, expected);
    for fate in ["ok", "dropped", "error -32042"] {
        assert!(first.iter().any(|f| f == fate), "no {fate} in {first:?}");
    }
    // Faulted calls never reach the upstream.
    assert_eq!(reached, first.iter().filter(|f| *f == "ok").count());

    // Another seed, another sequence.
    let other = json!({"seed": seed + 1, "rules": config["rules"]});
    assert_ne!(echo_fates(&other, 20).await.0, first);

    // A fraction of 0 changes nothing.
    let none =
        json!({"seed": seed, "rules": [{"methods": ["tools/call"], "error": 0.0, "drop": 0.0}]});
    let (fates, reached) = echo_fates(&none, 20).await;
    assert!(fates.iter().all(|f| f == "ok"), "{fates:?}");
    assert_eq!(reached, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_delay_and_error_answers_going_to_the_client_of_matching_tools_only() {
    let upstream = mcp::spawn_mcp_server().await;
    // Every echo call is delayed a little on its way up; every forecast answer is
    // replaced by an error on its way back (after the server ran the call).
    let config = json!({"seed": 1, "rules": [
        {"tools": ["echo"], "delay": 1.0, "delay_ms": 5},
        {"tools": ["fore*"], "direction": "to-client", "error": 1.0, "error_message": "injected on the way back"},
    ]});
    let mut sluice = proxy::start(
        &proxy::base_of(&upstream.url),
        vec![proxy::rust("faults", &config.to_string())],
    )
    .await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);

    for text in ["a", "b"] {
        let echo = client.call_text("echo", json!({"text": text})).await;
        assert_eq!(echo.unwrap(), text);
    }
    let error = rpc_error(client.call_text("forecast", json!({"region": "n"})).await);
    assert_eq!(error.code.0, -32000);
    assert_eq!(error.message, "injected on the way back");
    // A tool no rule names passes untouched.
    assert!(client.call_text("get_secret", Value::Null).await.is_ok());
    // The forecast went up: its answer was the one replaced.
    assert_eq!(posts(&upstream), before + 4);

    let metrics = scrape(admin).await;
    let delayed = value(
        &metrics,
        "sluice_plugin_holds_total",
        r#"outcome="delayed""#,
    );
    assert_eq!(delayed, Some(2.0), "{metrics}");
    assert_eq!(
        counter(&metrics, "faults", "messages", "delay"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "faults", "messages", "error"),
        Some(1.0),
        "{metrics}"
    );

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

// ---------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The lines of the audit plugin named `name` about calls of `subject`, parsed.
fn audit_lines(log: &plugin_log::PluginLog, name: &str, subject: &str) -> Vec<Value> {
    log.lines(name)
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("an audit line is JSON ({e}): {line:?}"))
        })
        .filter(|line| line["subject"] == subject)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_writes_one_line_per_call_with_its_outcome_and_a_digest_not_the_arguments() {
    let log = plugin_log::capture();
    let upstream = mcp::spawn_mcp_server().await;
    let authz = Authz::start().await;
    // audit first (also logging each call as it goes out); then a guard refusing
    // get_secret, a mock answering flaky with a tool error, a plugin dropping every
    // forecast call, and a second audit after them.
    let chain = vec![
        proxy::rust("audit", r#"{"log_requests": true}"#),
        proxy::rust("cookbook-refuse-tool", r#"{"tools": ["get_secret"]}"#),
        proxy::rust(
            "mock",
            r#"{"tools": {"flaky": {"content": [{"type": "text", "text": "it broke"}], "isError": true}}}"#,
        ),
        named(
            "drop-forecast",
            "faults",
            r#"{"seed": 0, "rules": [{"tools": ["forecast"], "drop": 1.0}]}"#,
        ),
        named("audit-last", "audit", ""),
    ];
    let (sluice, resource) = start_checked(&upstream, &authz, chain).await;
    let subject = "audit-grace";
    let grace = token(&authz, &resource, subject, "mcp:tools");
    let client = connect(&resource, Some(&grace), &[]).await;

    let secret_argument = "hunter2-do-not-log";
    let echo = client
        .call_text("echo", json!({"text": secret_argument}))
        .await;
    assert_eq!(echo.unwrap(), secret_argument);
    let refused = rpc_error(client.call_text("get_secret", Value::Null).await);
    assert_eq!(refused.code.0, -32001);
    let unknown = rpc_error(client.call_text("no_such_tool", json!({})).await);
    let flaky = client.call_text("flaky", json!({"n": 1})).await;
    assert_eq!(flaky.unwrap(), "it broke");
    let dropped = rpc_error(client.call_text("forecast", json!({"region": "w"})).await);
    assert_eq!(dropped.code.0, -32050);

    let (sent, lines): (Vec<Value>, Vec<Value>) = audit_lines(&log, "audit", subject)
        .into_iter()
        .partition(|line| line["outcome"] == "sent");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let echo_line = &lines[0];
    assert_eq!(echo_line["audit"], "tools/call");
    assert_eq!(echo_line["tool"], "echo");
    assert_eq!(echo_line["outcome"], "ok");
    assert_eq!(
        echo_line["arguments_sha256"],
        sha256_hex(&json!({"text": secret_argument}).to_string())
    );
    assert_eq!(echo_line["route"], "default");
    assert_eq!(echo_line["client_address"], "127.0.0.1");
    assert!(echo_line["session"].is_string(), "{echo_line}");
    // Never the arguments themselves, in any line.
    for line in log
        .lines("audit")
        .iter()
        .chain(log.lines("audit-last").iter())
    {
        assert!(!line.contains(secret_argument), "{line}");
    }
    // A refusal by a plugin after audit: the guard's answer passes audit on its way to
    // the client, so the line has the tool and the guard's code.
    assert_eq!(lines[1]["tool"], "get_secret");
    assert_eq!(lines[1]["outcome"], "error");
    assert_eq!(lines[1]["code"], -32001);
    assert_eq!(lines[1]["arguments_sha256"], Value::Null);
    // The server's own error.
    assert_eq!(lines[2]["tool"], "no_such_tool");
    assert_eq!(lines[2]["outcome"], "error");
    assert_eq!(lines[2]["code"], unknown.code.0);
    assert_eq!(lines[2]["arguments_sha256"], sha256_hex("{}"));
    // A result that reports the tool failed.
    assert_eq!(lines[3]["tool"], "flaky");
    assert_eq!(lines[3]["outcome"], "tool_error");
    assert_eq!(lines[3].get("code"), None);
    // What it does not log: the dropped forecast call's answer is sluice's own, which
    // no plugin sees, so its line never comes; only log_requests' line shows the call.
    assert!(lines.iter().all(|l| l["tool"] != "forecast"), "{lines:#?}");
    let sent_tools: Vec<&Value> = sent.iter().map(|l| &l["tool"]).collect();
    assert_eq!(
        sent_tools,
        ["echo", "get_secret", "no_such_tool", "flaky", "forecast"],
        "{sent:#?}"
    );
    assert_eq!(sent[0]["arguments_sha256"], echo_line["arguments_sha256"]);

    // After the guard, audit never sees the refused request: its line has the outcome
    // but no tool (request_seen: false).
    let last = audit_lines(&log, "audit-last", subject);
    assert_eq!(last.len(), 4, "{last:#?}");
    assert_eq!(last[0]["tool"], "echo");
    assert_eq!(last[1]["tool"], Value::Null);
    assert_eq!(last[1]["code"], -32001);
    assert_eq!(last[1]["request_seen"], false);
    assert_eq!(last[2]["tool"], "no_such_tool");
    assert_eq!(last[3]["tool"], Value::Null);
    assert_eq!(last[3]["outcome"], "tool_error");

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}
