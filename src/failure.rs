//! How a plugin call can fail: the kinds that logs, metrics, the failure policy and the
//! JSON-RPC errors a client gets all name.

/// How a plugin call went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin trapped (e.g. `unreachable`, a panic, an out-of-bounds access).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The instance asked for more memory than its cap.
    OutOfMemory,
    /// The call used up its fuel (the plugin's instruction budget per call).
    Fuel,
    /// The call answered `modify` with an event larger than the proxy's event size
    /// limit (`--max-event-bytes`); the result was refused.
    Oversized,
    /// A new instance could not be created or its `init` failed.
    Instantiate,
    /// The event was larger than the plugin's `max_message_bytes`: it was not handed to
    /// the plugin at all.
    TooLarge,
    /// A `modify` result that is not what the plugin was given the shape of: a
    /// JSON-RPC message (one JSON object) modified into anything but exactly one JSON
    /// object with distinct member names (two messages spliced into a batch, say).
    Malformed,
}

impl FailureKind {
    /// Every kind, in the order of their discriminants (`kind as usize` indexes it).
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Trap,
        FailureKind::Deadline,
        FailureKind::OutOfMemory,
        FailureKind::Fuel,
        FailureKind::Oversized,
        FailureKind::Instantiate,
        FailureKind::TooLarge,
        FailureKind::Malformed,
    ];

    /// A stable lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::Fuel => "fuel",
            FailureKind::Oversized => "oversized",
            FailureKind::Instantiate => "instantiate",
            FailureKind::TooLarge => "too_large",
            FailureKind::Malformed => "malformed",
        }
    }

    /// True when the instance cannot be trusted after this failure (it trapped or was
    /// cut mid-call): it is discarded and the next event gets a fresh one. A refused
    /// result or an event never handed over leaves a healthy instance, and its state
    /// (what the exchange asked) is kept.
    pub fn breaks_instance(self) -> bool {
        !matches!(self, FailureKind::TooLarge | FailureKind::Malformed)
    }

    /// What an operator can do about it, for the JSON-RPC error a client gets and the
    /// log line: the failure is usually the plugin's limit, not the client's fault.
    pub fn hint(self) -> &'static str {
        match self {
            FailureKind::Trap => "the plugin crashed",
            FailureKind::Deadline => "it ran past its deadline; raise deadline_ms",
            FailureKind::OutOfMemory => "it ran out of memory; raise memory_mib",
            FailureKind::Fuel => "it used up its fuel; raise fuel",
            FailureKind::Oversized => {
                "its modified message was over the event size limit (max_event_bytes)"
            }
            FailureKind::Instantiate => "it could not be instantiated",
            FailureKind::TooLarge => "it is over the plugin's max_message_bytes",
            FailureKind::Malformed => {
                "its modified message was not exactly one JSON object with distinct keys"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureKind;

    #[test]
    fn all_lists_every_kind_at_its_discriminant() {
        for (i, kind) in FailureKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{}", kind.as_str());
        }
    }
}
