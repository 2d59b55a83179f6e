//! Front ends other than the HTTP listener: ways in that turn what a client sends into
//! requests for the same [`Proxy`](crate::proxy::Proxy), so that every message takes
//! the one chain path (verdicts, fail-closed errors, tapes, metrics, hot swap).

pub mod stdio;
