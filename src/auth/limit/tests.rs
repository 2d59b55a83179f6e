use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::mcp::client::ClientBody;

fn settings(
    method: Option<&str>,
    requests: u32,
    per_secs: u32,
    burst: Option<u32>,
) -> RateLimitSettings {
    RateLimitSettings {
        method: method.map(str::to_string),
        requests,
        per_secs,
        burst,
        max_callers: None,
    }
}

fn limits(settings: &[RateLimitSettings]) -> (RateLimits, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (RateLimits::new(settings, &metrics).unwrap(), metrics)
}

fn caller(last: u8) -> Identity {
    Identity::anonymous(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
}

fn call(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#)
}

fn list(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#)
}

fn messages(body: &str) -> Vec<ClientMessage> {
    ClientBody::read(body).messages
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_bucket_gives_its_burst_then_one_token_per_interval() {
    // 2 per 10 s, burst 3: one token every 5 s.
    let bucket = Bucket::new(2, secs(10), 3);
    let t0 = Instant::now();
    let mut full_at = None;
    for _ in 0..3 {
        full_at = Some(bucket.take(full_at, 1, t0).unwrap());
    }
    assert_eq!(bucket.take(full_at, 1, t0), Err(secs(5)));
    // 4.9 s on: still not there, 0.1 s to go.
    let almost = t0 + Duration::from_millis(4900);
    assert_eq!(
        bucket.take(full_at, 1, almost),
        Err(Duration::from_millis(100))
    );
    // 5 s on: exactly one token back.
    let later = t0 + secs(5);
    full_at = Some(bucket.take(full_at, 1, later).unwrap());
    assert_eq!(bucket.take(full_at, 1, later), Err(secs(5)));
    // A long quiet spell refills to the burst, not beyond.
    let much_later = later + secs(3600);
    for _ in 0..3 {
        full_at = Some(bucket.take(full_at, 1, much_later).unwrap());
    }
    assert!(bucket.take(full_at, 1, much_later).is_err());
}

#[test]
fn a_bucket_takes_several_tokens_at_once_or_none() {
    let bucket = Bucket::new(1, secs(1), 4);
    let t0 = Instant::now();
    let full_at = bucket.take(None, 3, t0).unwrap();
    // One left: two cannot pass, and the bucket is as it was.
    assert_eq!(bucket.take(Some(full_at), 2, t0), Err(secs(1)));
    assert!(bucket.take(Some(full_at), 1, t0).is_ok());
    // More than the burst can never pass; the wait named is the time to fill it.
    assert_eq!(bucket.take(None, 5, t0), Err(secs(1)));
    assert_eq!(bucket.take(Some(full_at), 5, t0), Err(secs(3)));
}

#[test]
fn a_limit_counts_each_caller_separately() {
    let (limits, _) = limits(&[settings(Some("tools/call"), 2, 3600, None)]);
    let now = Instant::now();
    let body = messages(&call(1));
    for _ in 0..2 {
        limits.check(&caller(1), &body, now).unwrap();
    }
    let refused = limits.check(&caller(1), &body, now).unwrap_err();
    assert_eq!(refused.method, "tools/call");
    assert_eq!(refused.retry_after, secs(1800));
    assert_eq!(retry_after_secs(refused.retry_after), 1800);
    // Another address, and a subject behind the first address, have their own buckets.
    limits.check(&caller(2), &body, now).unwrap();
    let subject = Identity {
        subject: Some("alice".into()),
        ..caller(1)
    };
    limits.check(&subject, &body, now).unwrap();
}

#[test]
fn a_method_limit_ignores_other_methods() {
    let (limits, _) = limits(&[settings(Some("tools/call"), 1, 3600, None)]);
    let now = Instant::now();
    limits.check(&caller(1), &messages(&call(1)), now).unwrap();
    assert!(limits.check(&caller(1), &messages(&call(2)), now).is_err());
    for id in 0..10 {
        limits.check(&caller(1), &messages(&list(id)), now).unwrap();
    }
}

#[test]
fn a_method_less_limit_counts_requests_not_notifications_or_responses() {
    let (limits, _) = limits(&[settings(None, 2, 3600, None)]);
    let now = Instant::now();
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let response = r#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
    for _ in 0..10 {
        limits
            .check(&caller(1), &messages(notification), now)
            .unwrap();
        limits.check(&caller(1), &messages(response), now).unwrap();
        limits.check(&caller(1), &messages(""), now).unwrap();
    }
    let initialize = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
    limits
        .check(&caller(1), &messages(initialize), now)
        .unwrap();
    limits.check(&caller(1), &messages(&list(1)), now).unwrap();
    let refused = limits
        .check(&caller(1), &messages(&call(2)), now)
        .unwrap_err();
    assert_eq!(refused.method, "*");
}

#[test]
fn a_limit_naming_a_notification_counts_it() {
    let (limits, _) = limits(&[settings(Some("notifications/message"), 1, 3600, None)]);
    let now = Instant::now();
    let body = messages(r#"{"jsonrpc":"2.0","method":"notifications/message"}"#);
    limits.check(&caller(1), &body, now).unwrap();
    assert!(limits.check(&caller(1), &body, now).is_err());
}

#[test]
fn a_batch_takes_a_token_per_message_all_or_nothing() {
    let (limits, metrics) = limits(&[settings(Some("tools/call"), 1, 3600, Some(3))]);
    let now = Instant::now();
    let two = messages(&format!("[{},{},{}]", call(1), list(2), call(3)));
    limits.check(&caller(1), &two, now).unwrap();
    // One token left: a batch of two calls is refused and takes nothing…
    assert!(limits.check(&caller(1), &two, now).is_err());
    // …so the single call after it still passes, and then nothing does.
    limits.check(&caller(1), &messages(&call(4)), now).unwrap();
    assert!(limits.check(&caller(1), &messages(&call(5)), now).is_err());
    let text = metrics.encode();
    assert!(
        text.contains(r#"sluice_rate_limited_total{method="tools/call"} 2"#),
        "{text}"
    );
}

#[test]
fn a_batch_over_one_limit_takes_nothing_from_the_others() {
    let (limits, _) = limits(&[
        settings(None, 10, 3600, None),
        settings(Some("tools/call"), 1, 3600, None),
    ]);
    let now = Instant::now();
    let batch = messages(&format!("[{},{}]", list(1), call(2)));
    limits.check(&caller(1), &batch, now).unwrap();
    // The call limit is spent: this batch is refused by it, and the method-less limit
    // keeps its 8 tokens.
    let refused = limits.check(&caller(1), &batch, now).unwrap_err();
    assert_eq!(refused.method, "tools/call");
    for id in 0..8 {
        limits.check(&caller(1), &messages(&list(id)), now).unwrap();
    }
    let refused = limits
        .check(&caller(1), &messages(&list(9)), now)
        .unwrap_err();
    assert_eq!(refused.method, "*");
}

#[test]
fn the_refusal_names_the_longest_wait() {
    let (limits, _) = limits(&[
        settings(None, 1, 10, None),
        settings(Some("tools/call"), 1, 3600, None),
    ]);
    let now = Instant::now();
    limits.check(&caller(1), &messages(&call(1)), now).unwrap();
    let refused = limits
        .check(&caller(1), &messages(&call(2)), now)
        .unwrap_err();
    assert_eq!(
        (refused.method.as_str(), refused.retry_after),
        ("tools/call", secs(3600))
    );
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let metrics = Arc::new(Metrics::new());
    let bad = [
        (settings(None, 0, 1, None), "requests must be at least 1"),
        (
            settings(Some("tools/call"), 1, 0, None),
            "per_secs must be at least 1",
        ),
        (settings(None, 1, 1, Some(0)), "burst must be at least 1"),
        (settings(Some(""), 1, 1, None), "method is empty"),
        (
            RateLimitSettings {
                max_callers: Some(0),
                ..settings(None, 1, 1, None)
            },
            "max_callers must be at least 1",
        ),
    ];
    for (s, message) in bad {
        let error = RateLimits::new(&[settings(None, 1, 1, None), s], &metrics).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(message) && text.starts_with("limit 2"),
            "{text}"
        );
    }
}

#[test]
fn the_keys_parse_and_unknown_ones_are_refused() {
    let parsed: RateLimitSettings = toml::from_str(
        r#"
        method = "tools/call"
        requests = 10
        per_secs = 60
        burst = 20
        max_callers = 500
        "#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        RateLimitSettings {
            method: Some("tools/call".into()),
            requests: 10,
            per_secs: 60,
            burst: Some(20),
            max_callers: Some(500),
        }
    );
    let short: RateLimitSettings = toml::from_str("requests = 1\nper_secs = 1").unwrap();
    assert_eq!(short, settings(None, 1, 1, None));
    assert!(toml::from_str::<RateLimitSettings>("requests = 1\nper_secs = 1\nburts = 2").is_err());
    assert!(toml::from_str::<RateLimitSettings>("requests = 1").is_err());
}

#[test]
fn the_callers_table_forgets_full_buckets_first() {
    let mut callers = Callers::new(4);
    let t0 = Instant::now();
    // Two buckets full again at t0 + 1 s, two draining until t0 + 100 s.
    callers.set("a", t0 + secs(1), t0);
    callers.set("b", t0 + secs(1), t0);
    callers.set("c", t0 + secs(100), t0);
    callers.set("d", t0 + secs(100), t0);
    callers.set("e", t0 + secs(100), t0 + secs(2));
    let mut kept: Vec<&str> = callers.full_at.keys().map(String::as_str).collect();
    kept.sort_unstable();
    assert_eq!(kept, ["c", "d", "e"]);
}

#[test]
fn the_callers_table_evicts_the_buckets_closest_to_full_when_none_is() {
    let mut callers = Callers::new(16);
    let t0 = Instant::now();
    for i in 0..16 {
        callers.set(&format!("c{i}"), t0 + secs(100 + i), t0);
    }
    callers.set("new", t0 + secs(1000), t0);
    // An eighth of the room (2) was made: the two closest to full went.
    assert_eq!(callers.full_at.len(), 15);
    assert!(!callers.full_at.contains_key("c0") && !callers.full_at.contains_key("c1"));
    assert!(callers.full_at.contains_key("c2") && callers.full_at.contains_key("new"));
}

#[test]
fn many_callers_keep_the_table_within_its_cap() {
    let metrics = Arc::new(Metrics::new());
    let limits = RateLimits::new(
        &[RateLimitSettings {
            max_callers: Some(100),
            ..settings(None, 1, 3600, None)
        }],
        &metrics,
    )
    .unwrap();
    let now = Instant::now();
    for i in 0..5000u32 {
        let identity = Identity {
            subject: Some(format!("user-{i}")),
            ..Identity::default()
        };
        limits.check(&identity, &messages(&list(i)), now).unwrap();
    }
    let tracked = limits.limits[0].callers.lock().unwrap().full_at.len();
    assert!(tracked <= 100, "{tracked}");
}

proptest! {
    /// However requests arrive over time, no caller passes more than the burst plus
    /// what the elapsed time refills.
    #[test]
    fn never_more_than_burst_plus_refill(
        requests in 1u32..5,
        per_secs in 1u32..20,
        burst in 1u32..6,
        steps in proptest::collection::vec((0u64..3000, 1u32..4), 1..60),
    ) {
        let bucket = Bucket::new(requests, secs(per_secs.into()), burst);
        let t0 = Instant::now();
        let mut now = t0;
        let mut full_at = None;
        let mut passed = 0u64;
        for (millis, n) in steps {
            now += Duration::from_millis(millis);
            match bucket.take(full_at, n, now) {
                Ok(at) => {
                    full_at = Some(at);
                    passed += u64::from(n);
                }
                Err(wait) => {
                    // Waiting as told is enough (for a take the burst allows).
                    prop_assert!(wait > Duration::ZERO);
                    if n <= burst {
                        prop_assert!(bucket.take(full_at, n, now + wait).is_ok());
                    }
                }
            }
        }
        let elapsed = (now - t0).as_nanos();
        let refilled = elapsed * u128::from(requests) / (u128::from(per_secs) * 1_000_000_000);
        prop_assert!(u128::from(passed) <= u128::from(burst) + refilled);
    }
}
