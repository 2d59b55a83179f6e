//! Printing an error with everything beneath it, for logs and the admin API.
//!
//! sluice's error types keep the error they stand for as their `source` (an I/O error,
//! wasmtime's, hyper's), and their message names that source's own text
//! (`cannot read X: {source}`), so `{}` alone reads well. What lies deeper (hyper's
//! `client error (Connect)` is caused by `tcp connect error`, caused by `Connection
//! refused`) is only in the chain: [`ErrorChain`] writes all of it, the one way an
//! error is printed wherever it is logged.

use std::error::Error;
use std::fmt;

/// `error: cause: cause's cause`, on one line. A cause whose text the line already
/// ends with (an error that names its source in its message) is not written twice.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("upstream unreachable: {source}")]
    struct Outer {
        source: Middle,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Middle {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn every_cause_once_in_order() {
        let error = Outer {
            source: Middle {
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            },
        };
        assert_eq!(
            error.to_string(),
            "upstream unreachable: client error (Connect)"
        );
        assert_eq!(
            ErrorChain(&error).to_string(),
            "upstream unreachable: client error (Connect): refused"
        );
        let alone = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&alone).to_string(), "alone");
    }
}
