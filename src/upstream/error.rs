//! Upstream failures, typed so the proxy can answer each with the right status.

/// The request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The `--upstream` URL is not usable.
    #[error("invalid upstream URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The `--upstream` URL is not a URL.
    #[error("invalid upstream URL {url:?}: {source}")]
    UnparsableUrl {
        /// The URL as given.
        url: String,
        /// The cause.
        source: http::uri::InvalidUri,
    },
    /// Connecting or exchanging headers failed (refused, reset, DNS, timeout).
    #[error("upstream {uri} unreachable: {source}")]
    Unreachable {
        /// The URL the request went to.
        uri: String,
        /// The cause.
        source: hyper_util::client::legacy::Error,
    },
    /// A stdio server could not be started for a new session.
    #[error(transparent)]
    Spawn(#[from] super::stdio::SpawnError),
    /// The TLS settings of an `https://` upstream cannot be used (a PEM file, the
    /// system trust store).
    #[error("upstream TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Reading a whole body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit.
    #[error("body larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("reading the body failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}
