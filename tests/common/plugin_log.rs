//! The log lines plugins write (the `log` interface), captured for assertions.
//!
//! Plugins run on the proxy's plugin workers, so a thread-local subscriber would miss
//! their lines: this installs one global subscriber for the test process, which takes
//! only the plugin log callsite (target `sluice::plugin::state`), so the other tests'
//! events are not even enabled by it. A process has one global subscriber: every test
//! that reads plugin lines goes through here.

use std::sync::{Arc, Mutex, OnceLock};

/// Where the host logs what a plugin wrote.
const PLUGIN_LOG_TARGET: &str = "sluice::plugin::state";

/// Every plugin line so far, as (plugin name, message), in the order written.
#[derive(Clone)]
pub struct PluginLog(Arc<Mutex<Vec<(String, String)>>>);

impl PluginLog {
    /// The messages of the plugin named `plugin` so far, in order.
    pub fn lines(&self, plugin: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == plugin)
            .map(|(_, message)| message.clone())
            .collect()
    }
}

/// The process's plugin log, installed on first use.
pub fn capture() -> PluginLog {
    use tracing::field::{Field, Visit};
    use tracing::subscriber::Interest;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    #[derive(Default)]
    struct Fields {
        plugin: String,
        message: String,
    }
    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "plugin" {
                self.plugin = value.to_string();
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => self.message = format!("{value:?}"),
                "plugin" => self.plugin = format!("{value:?}").trim_matches('"').to_string(),
                _ => {}
            }
        }
    }
    struct Lines(PluginLog);
    impl<S: tracing::Subscriber> Layer<S> for Lines {
        fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
            if metadata.is_event() && metadata.target() == PLUGIN_LOG_TARGET {
                Interest::always()
            } else {
                Interest::never()
            }
        }
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            // `register_callsite` is not the last word: a callsite another test's
            // scoped subscriber is interested in becomes "sometimes" for every
            // subscriber, and its events come here too (seen: the host's
            // `plugin loaded` line, whose `plugin` field named the audit plugin).
            if event.metadata().target() != PLUGIN_LOG_TARGET {
                return;
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            (self.0)
                .0
                .lock()
                .unwrap()
                .push((fields.plugin, fields.message));
        }
    }

    static LOG: OnceLock<PluginLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = PluginLog(Arc::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::registry().with(Lines(log.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
        log
    })
    .clone()
}
