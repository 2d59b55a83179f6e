//! Messages a plugin held (`hold`), waiting for their time or an operator's decision.
//!
//! A hold never blocks a thread: the exchange's task awaits here while other streams
//! and exchanges go on. An approval hold is listed on the admin API (`GET
//! /admin/holds`) until someone decides (`POST /admin/holds/<id>/approve` or `/deny`),
//! its time runs out, or its client goes away. The number waiting for a decision is
//! bounded, per process ([`MAX_PENDING`]) and per caller ([`MAX_PENDING_PER_CALLER`],
//! so that one client cannot take every slot): past either, a new approval hold is
//! refused (the message is dropped: an approval nobody can be asked for is not
//! granted).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::plugin::HoldSpec;

/// The most approval holds waiting at once (per process).
pub const MAX_PENDING: usize = 1000;
/// The most approval holds one caller (token subject, else client address) may have
/// waiting at once.
pub const MAX_PENDING_PER_CALLER: usize = 100;
/// The most bytes of a held message shown on the admin API.
const SHOWN_BYTES: usize = 4096;

/// What an operator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The message goes on.
    Approve,
    /// The message is dropped.
    Deny,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// A plain delay ran out: the message goes on.
    Delayed,
    /// Approved: it goes on.
    Approved,
    /// Denied: it is dropped.
    Denied,
    /// No decision in time; `passed` as the plugin's `on-timeout` said.
    TimedOut {
        /// The message goes on.
        passed: bool,
    },
    /// Too many holds waiting: dropped.
    Refused,
}

impl HoldEnd {
    /// True when the message goes on to the next plugin.
    pub fn goes_on(self) -> bool {
        matches!(
            self,
            HoldEnd::Delayed | HoldEnd::Approved | HoldEnd::TimedOut { passed: true }
        )
    }

    /// The `outcome` label of `sluice_plugin_holds_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldEnd::Delayed => "delayed",
            HoldEnd::Approved => "approved",
            HoldEnd::Denied => "denied",
            HoldEnd::TimedOut { passed: true } => "timed_out_passed",
            HoldEnd::TimedOut { passed: false } => "timed_out_dropped",
            HoldEnd::Refused => "refused",
        }
    }
}

/// What the admin API shows of a held message.
#[derive(Debug, Clone, Serialize)]
pub struct HeldMessage {
    /// The number to decide it by.
    pub id: u64,
    /// The plugin that held it.
    pub plugin: String,
    /// Its reason.
    pub reason: String,
    /// The route (`default` without `[[route]]`).
    pub route: String,
    /// The exchange's stream id (in the logs too).
    pub stream: u64,
    /// Who asked: `sub:<subject>` when a token named one, else `addr:<client address>`.
    pub caller: String,
    /// The JSON-RPC method, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The message (its first 4 KiB).
    pub message: String,
    /// When it was held (seconds since the epoch).
    pub held_at: u64,
    /// When its time runs out (seconds since the epoch).
    pub expires_at: u64,
}

impl HeldMessage {
    /// What the admin API shows of `message` held by `plugin`; `id` and times are
    /// filled when it is registered.
    pub fn new(
        plugin: &str,
        spec: &HoldSpec,
        (route, stream, caller): (&str, u64, String),
        method: Option<String>,
        message: &str,
    ) -> Self {
        // A plain delay is never listed: nothing of the message is copied for it.
        let message = if spec.approval { message } else { "" };
        let mut shown = message.len().min(SHOWN_BYTES);
        while !message.is_char_boundary(shown) {
            shown -= 1;
        }
        Self {
            id: 0,
            plugin: plugin.to_string(),
            reason: spec.reason.clone(),
            route: route.to_string(),
            stream,
            caller,
            method,
            message: message[..shown].to_string(),
            held_at: 0,
            expires_at: 0,
        }
    }
}

struct Pending {
    shown: HeldMessage,
    decide: oneshot::Sender<Decision>,
}

/// The holds waiting for a decision, shared by every route's proxy and the admin API.
#[derive(Default)]
pub struct Holds {
    pending: Mutex<BTreeMap<u64, Pending>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("pending", &self.lock().len())
            .finish()
    }
}

/// Takes a hold off the list when its waiter goes (decided, timed out, or the client
/// gone and the future dropped).
struct Registered<'a> {
    holds: &'a Holds,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.holds.lock().remove(&self.id);
    }
}

/// Counts a hold whose wait was dropped before it ended (the client went away, the
/// proxy shut down): outcome `gone`.
struct Gone<'a> {
    metrics: &'a Metrics,
    stream: u64,
    over: bool,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        if !self.over {
            self.metrics.hold_ended("gone");
            tracing::info!(stream = self.stream, "hold ended: the exchange went away");
        }
    }
}

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits as `spec` says: a plain delay, or a decision (listed as `shown` until
    /// then) within `spec.timeout`.
    pub async fn wait(&self, spec: &HoldSpec, mut shown: HeldMessage) -> HoldEnd {
        if !spec.approval {
            tokio::time::sleep(spec.timeout).await;
            return HoldEnd::Delayed;
        }
        let (decide, decided) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut pending = self.lock();
            let callers = pending
                .values()
                .filter(|p| p.shown.caller == shown.caller)
                .count();
            if pending.len() >= MAX_PENDING || callers >= MAX_PENDING_PER_CALLER {
                return HoldEnd::Refused;
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            shown.id = id;
            shown.held_at = now.as_secs();
            shown.expires_at = (now + spec.timeout).as_secs();
            pending.insert(id, Pending { shown, decide });
        }
        let _registered = Registered { holds: self, id };
        match tokio::time::timeout(spec.timeout, decided).await {
            Ok(Ok(Decision::Approve)) => HoldEnd::Approved,
            Ok(Ok(Decision::Deny)) => HoldEnd::Denied,
            // The sender lives in the list until decided; gone only if decided.
            Ok(Err(_)) | Err(_) => HoldEnd::TimedOut {
                passed: !spec.drop_on_timeout,
            },
        }
    }

    /// [`Holds::wait`], logged (when the hold begins and how it ends) and counted
    /// (`sluice_plugin_holds_total`): what the proxy does with every hold.
    pub async fn carry_out(
        &self,
        metrics: &Metrics,
        spec: &HoldSpec,
        shown: HeldMessage,
    ) -> HoldEnd {
        let (stream, plugin) = (shown.stream, shown.plugin.clone());
        // An approval is an event for whoever decides; a delay (fault injection, on
        // every message perhaps) only for whoever debugs.
        if spec.approval {
            tracing::info!(
                stream,
                plugin,
                timeout_ms = spec.timeout.as_millis() as u64,
                reason = %spec.reason,
                "message held by a plugin for approval"
            );
        } else {
            tracing::debug!(
                stream,
                plugin,
                timeout_ms = spec.timeout.as_millis() as u64,
                "message delayed by a plugin"
            );
        }
        let mut waiting = Gone {
            metrics,
            stream,
            over: false,
        };
        let end = self.wait(spec, shown).await;
        waiting.over = true;
        metrics.hold_ended(end.as_str());
        if spec.approval {
            tracing::info!(stream, plugin, outcome = end.as_str(), "hold ended");
        }
        end
    }

    /// The holds waiting for a decision, oldest first.
    pub fn list(&self) -> Vec<HeldMessage> {
        self.lock().values().map(|p| p.shown.clone()).collect()
    }

    /// Decides hold `id`; false when there is no such hold waiting.
    pub fn decide(&self, id: u64, decision: Decision) -> bool {
        match self.lock().remove(&id) {
            Some(pending) => pending.decide.send(decision).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spec(approval: bool, timeout_ms: u64, drop_on_timeout: bool) -> HoldSpec {
        HoldSpec {
            timeout: Duration::from_millis(timeout_ms),
            approval,
            reason: "why".into(),
            drop_on_timeout,
        }
    }

    fn shown() -> HeldMessage {
        shown_for("addr:127.0.0.1")
    }

    fn shown_for(caller: &str) -> HeldMessage {
        HeldMessage::new(
            "p",
            &spec(true, 0, true),
            ("default", 1, caller.to_string()),
            None,
            "{}",
        )
    }

    #[tokio::test]
    async fn an_approval_waits_for_its_decision() {
        let holds = Arc::new(Holds::default());
        let waiting = {
            let holds = holds.clone();
            tokio::spawn(async move { holds.wait(&spec(true, 60_000, true), shown()).await })
        };
        let id = loop {
            if let Some(held) = holds.list().first() {
                break held.id;
            }
            tokio::task::yield_now().await;
        };
        assert!(!holds.decide(id + 1, Decision::Approve), "no such hold");
        assert!(holds.decide(id, Decision::Deny));
        assert_eq!(waiting.await.unwrap(), HoldEnd::Denied);
        assert!(holds.list().is_empty());
        assert!(!holds.decide(id, Decision::Approve), "decided once");
    }

    #[tokio::test]
    async fn one_caller_cannot_take_every_approval_slot() {
        let holds = Arc::new(Holds::default());
        let mut waiting = Vec::new();
        for _ in 0..MAX_PENDING_PER_CALLER {
            let holds = holds.clone();
            waiting.push(tokio::spawn(async move {
                holds
                    .wait(&spec(true, 60_000, true), shown_for("sub:mallory"))
                    .await
            }));
        }
        while holds.list().len() < MAX_PENDING_PER_CALLER {
            tokio::task::yield_now().await;
        }
        let end = holds
            .wait(&spec(true, 60_000, true), shown_for("sub:mallory"))
            .await;
        assert_eq!(end, HoldEnd::Refused, "over the caller's share");
        // Another caller still gets a slot.
        let other = {
            let holds = holds.clone();
            tokio::spawn(async move {
                holds
                    .wait(&spec(true, 60_000, true), shown_for("sub:alice"))
                    .await
            })
        };
        let id = loop {
            if let Some(held) = holds.list().iter().find(|h| h.caller == "sub:alice") {
                break held.id;
            }
            tokio::task::yield_now().await;
        };
        assert!(holds.decide(id, Decision::Approve));
        assert_eq!(other.await.unwrap(), HoldEnd::Approved);
        for task in waiting {
            task.abort();
        }
    }

    #[tokio::test]
    async fn time_running_out_follows_the_plugins_policy() {
        let holds = Holds::default();
        let end = holds.wait(&spec(true, 1, true), shown()).await;
        assert_eq!(end, HoldEnd::TimedOut { passed: false });
        assert!(!end.goes_on());
        let end = holds.wait(&spec(true, 1, false), shown()).await;
        assert!(end.goes_on());
        assert!(holds.list().is_empty(), "a timed-out hold leaves the list");
        assert_eq!(
            holds.wait(&spec(false, 1, true), shown()).await,
            HoldEnd::Delayed
        );
    }
}
