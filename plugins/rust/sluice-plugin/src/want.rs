//! Which messages a plugin is called for (the `interest` interface).

use crate::bindings::sluice::plugin::interest;

/// The messages a plugin wants, returned by [`Plugin::wants`](crate::Plugin::wants).
/// The host calls the plugin only for these, and makes no instance for an exchange
/// with none of them: a plugin that looks at `tools/call` alone costs nothing on the
/// rest of the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    to_server: bool,
    to_client: bool,
    methods: Option<Vec<String>>,
}

impl Want {
    /// Every message, both ways (the default).
    pub fn everything() -> Self {
        Want {
            to_server: true,
            to_client: true,
            methods: None,
        }
    }

    /// Only JSON-RPC messages of these methods: requests and notifications of them, and
    /// the responses and errors that answer such requests (a response whose request the
    /// proxy does not know is still handed over: nothing passes unexamined by guess).
    pub fn methods<I, S>(methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Want {
            methods: Some(methods.into_iter().map(Into::into).collect()),
            ..Want::everything()
        }
    }

    /// Only messages going to the server (client requests and notifications, and the
    /// client's answers to server requests).
    pub fn to_server(mut self) -> Self {
        (self.to_server, self.to_client) = (true, false);
        self
    }

    /// Only messages going to the client (results, errors, server notifications and
    /// server requests).
    pub fn to_client(mut self) -> Self {
        (self.to_server, self.to_client) = (false, true);
        self
    }

    /// Tells the host; called once, after `init`.
    pub(crate) fn declare(&self) {
        if !(self.to_server && self.to_client) {
            interest::directions(self.to_server, self.to_client);
        }
        if let Some(methods) = &self.methods {
            interest::methods(methods);
        }
    }
}
