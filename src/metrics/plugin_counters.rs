//! The `metrics` power: counters a plugin keeps itself, on `/metrics` as
//! `sluice_plugin_counter_total{route, plugin, counter, label}`.
//!
//! A plugin's names and labels come from its code and, through it, perhaps from
//! traffic; each becomes a series that lives for the life of the process. So both are
//! bounded per plugin: at most [`MAX_COUNTERS`] names and [`MAX_LABELS`] label values
//! per name, counted under `other` beyond that, and a name must be a short
//! `[a-z0-9_]` word.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The most counter names of one plugin (on one route).
pub const MAX_COUNTERS: usize = 32;
/// The most label values of one counter.
pub const MAX_LABELS: usize = 64;
/// The longest counter name or label value, in bytes.
const MAX_LEN: usize = 64;
/// Where what is over a bound is counted.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CounterLabels {
    route: String,
    plugin: String,
    counter: String,
    label: String,
}

pub(super) type CounterFamily = Family<CounterLabels, Counter>;

/// The names and labels a plugin has used, shared by every chain generation that
/// loads it (so a reload does not reset the bound).
#[derive(Debug, Default)]
pub(super) struct Seen {
    names: HashMap<String, HashSet<String>>,
}

/// One plugin's counters (on one route).
#[derive(Clone)]
pub struct PluginCounters {
    family: CounterFamily,
    route: String,
    plugin: String,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for PluginCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCounters")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl PluginCounters {
    pub(super) fn new(
        family: CounterFamily,
        route: String,
        plugin: String,
        seen: Arc<Mutex<Seen>>,
    ) -> Self {
        Self {
            family,
            route,
            plugin,
            seen,
        }
    }

    /// Counters that go nowhere (a chain not attached to a proxy's metrics).
    pub fn detached(plugin: &str) -> Self {
        Self::new(
            Family::default(),
            String::new(),
            plugin.to_string(),
            Arc::default(),
        )
    }

    /// Adds `delta` to counter `name` with `label`, within the bounds.
    pub fn add(&self, name: &str, label: &str, delta: u64) {
        let (counter, label) = self.bounded(name, label);
        self.family
            .get_or_create(&CounterLabels {
                route: self.route.clone(),
                plugin: self.plugin.clone(),
                counter,
                label,
            })
            .inc_by(delta);
    }

    /// The (name, label) to count under: as given, or `other` where a bound is met.
    fn bounded(&self, name: &str, label: &str) -> (String, String) {
        let valid = !name.is_empty()
            && name.len() <= MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let room = seen.names.len() < MAX_COUNTERS;
        let name = if valid && (seen.names.contains_key(name) || room) {
            name
        } else {
            OTHER
        };
        let labels = seen.names.entry(name.to_string()).or_default();
        let label =
            if label.len() <= MAX_LEN && (labels.contains(label) || labels.len() < MAX_LABELS) {
                labels.insert(label.to_string());
                label
            } else {
                OTHER
            };
        (name.to_string(), label.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_bounded() {
        let counters = PluginCounters::detached("p");
        assert_eq!(
            counters.bounded("calls", "echo"),
            ("calls".into(), "echo".into())
        );
        assert_eq!(
            counters.bounded("Bad Name", ""),
            ("other".into(), "".into())
        );
        for i in 0..MAX_LABELS {
            counters.bounded("calls", &format!("l{i}"));
        }
        assert_eq!(counters.bounded("calls", "new").1, "other");
        assert_eq!(
            counters.bounded("calls", "echo").1,
            "echo",
            "a known label stays"
        );
        for i in 0..MAX_COUNTERS {
            counters.bounded(&format!("c{i}"), "");
        }
        assert_eq!(counters.bounded("late", "").0, "other");
        assert_eq!(counters.bounded("calls", "echo").0, "calls");
    }
}
