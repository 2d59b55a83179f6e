//! `sluice reload`: asks a running proxy's admin API (`POST /admin/reload`) to reload
//! its chain, re-pointing the plugins named `NAME=FILE` at other files, and says what
//! it answered. The admin API is plain HTTP on loopback (`admin`), so this is a hyper
//! client with no TLS.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Flags of `sluice reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Plugins to re-point at other files, by name (the `name` of a `[[plugin]]`, or
    /// the file stem of a `--plugin`). A relative FILE is made absolute against this
    /// directory. None: reload the chain from its files as it is.
    #[arg(value_name = "NAME=FILE")]
    pub swaps: Vec<String>,
    /// The admin API: the address the proxy was given with --admin-listen, or its
    /// http:// URL.
    #[arg(
        long,
        value_name = "ADDR|URL",
        env = "SLUICE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin: String,
    /// The admin API's bearer token. Prefer SLUICE_ADMIN_TOKEN or --admin-token-file:
    /// a token on the command line is in the process list.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Read the admin API's bearer token from this file (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Reload this `[[route]]`'s chain instead of the default one.
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    /// Print the admin API's JSON answer as it came.
    #[arg(long)]
    pub json: bool,
}

/// Why `sluice reload` could not get an answer (a refusal is an answer: [`Answer`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An argument is not `NAME=FILE`.
    #[error("{0:?} is not NAME=FILE (a plugin's name, `=`, the file to load)")]
    NotASwap(String),
    /// The current directory, to make a relative FILE absolute, is unknown.
    #[error("cannot make {path} absolute: {source}")]
    Absolute {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--admin` is neither an address nor an http:// URL.
    #[error("--admin {given:?}: {reason}")]
    AdminUrl {
        /// What was given.
        given: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token file cannot be read.
    #[error("cannot read --admin-token-file {}: {source}", .path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file's first line is empty.
    #[error("--admin-token-file {} is empty", .path.display())]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// No answer: nothing listens there, or the connection broke.
    #[error(
        "cannot reach the admin API at {url} (is the proxy running with --admin-listen?): {source}"
    )]
    Unreachable {
        /// Where it was asked.
        url: String,
        /// The cause.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer's body could not be read.
    #[error("reading the admin API's answer: {0}")]
    Read(#[source] hyper::Error),
    /// The answer is not the admin API's JSON.
    #[error("the admin API at {url} answered {status} with no JSON: {body}")]
    NotJson {
        /// Where it was asked.
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
}

/// What the admin API answered.
#[derive(Debug)]
pub struct Answer {
    /// True when the new chain is current.
    pub reloaded: bool,
    /// Its status.
    pub status: StatusCode,
    /// Its JSON.
    pub body: Value,
}

impl Answer {
    /// The answer for a person: the new generation and each plugin's file and hash,
    /// or why the reload was refused (and the chain's names, for an unknown one).
    pub fn plain(&self) -> String {
        let body = &self.body;
        if !self.reloaded {
            let mut text = format!(
                "reload refused ({}): {}",
                self.status,
                body["error"].as_str().unwrap_or("(no reason given)")
            );
            if let Some(generation) = body["generation"].as_u64() {
                text.push_str(&format!("\ngeneration {generation} keeps serving"));
            }
            return text;
        }
        let mut text = format!("reloaded: generation {}", body["generation"]);
        if let Some(swapped) = body["swapped"].as_array() {
            let names: Vec<&str> = swapped.iter().filter_map(Value::as_str).collect();
            text.push_str(&format!(" (swapped: {})", names.join(", ")));
        }
        let plugins = body["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let width = plugins
            .iter()
            .filter_map(|p| p["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(0);
        for plugin in plugins {
            text.push_str(&format!(
                "\n  {:width$}  {}  sha256:{}",
                plugin["name"].as_str().unwrap_or("?"),
                plugin["file"].as_str().unwrap_or("(built in)"),
                plugin["sha256"].as_str().unwrap_or("-"),
            ));
        }
        text
    }
}

/// The admin token: `--admin-token-file`'s first line (trimmed), else `--admin-token`
/// (or SLUICE_ADMIN_TOKEN).
pub fn token(args: &ReloadArgs) -> Result<Option<String>, ClientError> {
    match &args.admin_token_file {
        Some(path) => read_token_file(path).map(Some),
        None => Ok(args.admin_token.clone().filter(|t| !t.is_empty())),
    }
}

/// The token in `path`: its first line without surrounding whitespace; an empty one is
/// an error (it would be no token at all).
pub fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(ClientError::EmptyToken {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// The request body: each `NAME=FILE` with FILE made absolute (the proxy refuses a
/// relative path: its working directory is not this one), and the route.
pub fn request_body(args: &ReloadArgs) -> Result<Value, ClientError> {
    let mut plugins = Vec::with_capacity(args.swaps.len());
    for swap in &args.swaps {
        let (name, file) = swap
            .split_once('=')
            .filter(|(name, file)| !name.is_empty() && !file.is_empty())
            .ok_or_else(|| ClientError::NotASwap(swap.clone()))?;
        let file = std::path::absolute(file).map_err(|source| ClientError::Absolute {
            path: file.into(),
            source,
        })?;
        plugins.push(json!({"name": name, "file": file}));
    }
    let mut body = json!({ "plugins": plugins });
    if let Some(route) = &args.route {
        body["route"] = json!(route);
    }
    Ok(body)
}

/// `http://ADDR/admin/reload` from `--admin` (an address or an http:// URL).
pub fn reload_url(admin: &str) -> Result<Uri, ClientError> {
    let bad = |reason| ClientError::AdminUrl {
        given: admin.to_string(),
        reason,
    };
    let base = if admin.contains("://") {
        admin.to_string()
    } else {
        format!("http://{admin}")
    };
    let uri: Uri = base
        .parse()
        .map_err(|_| bad("not an address (127.0.0.1:9090) or a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("the admin API speaks plain http (on loopback)"));
    }
    let authority = uri.authority().ok_or(bad("no host"))?;
    let prefix = uri.path().trim_end_matches('/');
    format!("http://{authority}{prefix}/admin/reload")
        .parse()
        .map_err(|_| bad("not a usable URL"))
}

/// Sends the reload and reads the answer.
pub async fn reload(args: &ReloadArgs) -> Result<Answer, ClientError> {
    let url = reload_url(&args.admin)?;
    let body = request_body(args)?;
    let mut request = Request::post(url.clone()).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token(args)? {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a parsed URI and static headers form a valid request");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request)
        .await
        .map_err(|source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Read)?
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson {
        url: url.to_string(),
        status,
        body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
    })?;
    Ok(Answer {
        reloaded: status == StatusCode::OK,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_address_or_url_becomes_the_reload_url() {
        assert_eq!(
            reload_url("127.0.0.1:9090").unwrap(),
            "http://127.0.0.1:9090/admin/reload"
        );
        assert_eq!(
            reload_url("http://[::1]:9090/").unwrap(),
            "http://[::1]:9090/admin/reload"
        );
        assert!(matches!(
            reload_url("https://127.0.0.1:9090"),
            Err(ClientError::AdminUrl { .. })
        ));
        assert!(matches!(
            reload_url("not an address"),
            Err(ClientError::AdminUrl { .. })
        ));
    }

    fn args(swaps: &[&str]) -> ReloadArgs {
        ReloadArgs {
            swaps: swaps.iter().map(|s| s.to_string()).collect(),
            admin: "127.0.0.1:9090".into(),
            admin_token: None,
            admin_token_file: None,
            route: Some("github".into()),
            json: false,
        }
    }

    #[test]
    fn swaps_are_named_and_their_files_made_absolute() {
        let body = request_body(&args(&["guard=target/new.wasm"])).unwrap();
        let file = body["plugins"][0]["file"].as_str().unwrap();
        assert_eq!(body["plugins"][0]["name"], "guard");
        assert!(Path::new(file).is_absolute(), "{file}");
        assert!(file.ends_with("target/new.wasm"), "{file}");
        assert_eq!(body["route"], "github");
        for bad in ["guard", "=x.wasm", "guard="] {
            assert!(
                matches!(request_body(&args(&[bad])), Err(ClientError::NotASwap(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_refusal_reads_as_its_reason() {
        let answer = Answer {
            reloaded: false,
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "no plugin named \"x\" in the chain; its plugins: a, b", "generation": 2}),
        };
        assert_eq!(
            answer.plain(),
            "reload refused (404 Not Found): no plugin named \"x\" in the chain; its plugins: a, b\ngeneration 2 keeps serving"
        );
    }
}
