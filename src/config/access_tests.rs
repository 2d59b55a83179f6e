//! The access tables (`[upstream_auth]`) as the config file gives them: keys, paths
//! resolved against the file, and the refusals named with their place in the file.

use std::path::{Path, PathBuf};

use crate::auth::credential::{CredentialMode, CredentialSettings, SecretSource};

/// The file's top-level `[upstream_auth]` as read from `text` (a file in /etc/sluice).
fn parse(text: &str) -> Result<CredentialSettings, String> {
    super::file::parse(Path::new("/etc/sluice/sluice.toml"), text)
        .map(|file| file.access.upstream_auth.unwrap_or_default())
        .map_err(|e| e.to_string())
}

fn refused(text: &str, wanted: &str) -> String {
    let err = parse(text).unwrap_err();
    assert!(err.contains(wanted), "{err:?} does not contain {wanted:?}");
    assert!(err.contains("upstream_auth"), "{err:?} names the table");
    err
}

#[test]
fn none_is_the_default_with_or_without_the_table() {
    assert_eq!(parse("").unwrap(), CredentialSettings::default());
    assert_eq!(
        parse("[upstream_auth]\n").unwrap().mode,
        CredentialMode::None
    );
    assert_eq!(
        parse("[upstream_auth]\nmode = \"none\"\n").unwrap().mode,
        CredentialMode::None
    );
}

#[test]
fn static_keys_are_read_and_the_file_resolves_against_the_config() {
    let settings = parse(
        "[upstream_auth]\nmode = \"static\"\nsecret_file = \"secrets/upstream\"\nheader = \"x-api-key\"\nscheme = \"\"\n",
    )
    .unwrap();
    assert_eq!(settings.mode, CredentialMode::Static);
    assert_eq!(
        settings.secret,
        Some(SecretSource::File(PathBuf::from(
            "/etc/sluice/secrets/upstream"
        )))
    );
    assert_eq!(settings.header.as_deref(), Some("x-api-key"));
    assert_eq!(settings.scheme.as_deref(), Some(""));
    let settings =
        parse("[upstream_auth]\nmode = \"static\"\nsecret_env = \"UPSTREAM_TOKEN\"\n").unwrap();
    assert_eq!(
        settings.secret,
        Some(SecretSource::Env("UPSTREAM_TOKEN".into()))
    );
}

#[test]
fn exchange_keys_are_read() {
    let settings = parse(
        "[upstream_auth]\nmode = \"exchange\"\ntoken_url = \"https://idp.example.com/token\"\nclient_id = \"sluice\"\nclient_secret_file = \"client-secret\"\naudience = \"upstream\"\nresource = \"https://upstream.example.com/mcp\"\nscope = \"read write\"\n",
    )
    .unwrap();
    let exchange = settings.exchange.unwrap();
    assert_eq!(exchange.token_url, "https://idp.example.com/token");
    assert_eq!(exchange.client_id, "sluice");
    assert_eq!(
        exchange.client_secret,
        SecretSource::File("/etc/sluice/client-secret".into())
    );
    assert_eq!(exchange.audience.as_deref(), Some("upstream"));
    assert_eq!(
        exchange.resource.as_deref(),
        Some("https://upstream.example.com/mcp")
    );
    assert_eq!(exchange.scope.as_deref(), Some("read write"));
    assert_eq!(exchange.requested_token_type, None);
}

#[test]
fn a_route_has_its_own_table() {
    let file = super::file::parse(
        Path::new("/etc/sluice/sluice.toml"),
        "upstream = \"http://127.0.0.1:1\"\n[upstream_auth]\nmode = \"passthrough\"\n\n[[route]]\nname = \"gh\"\nprefix = \"/gh\"\nupstream = \"http://127.0.0.1:2\"\n[route.upstream_auth]\nmode = \"static\"\nsecret_env = \"GH\"\n",
    )
    .unwrap();
    assert_eq!(
        file.access.upstream_auth.unwrap().mode,
        CredentialMode::Passthrough
    );
    let route = file.routes[0].access.upstream_auth.clone().unwrap();
    assert_eq!(route.secret, Some(SecretSource::Env("GH".into())));
}

#[test]
fn bad_tables_are_refused_when_the_file_is_read() {
    refused(
        "[upstream_auth]\nmode = \"static\"\nsecret_file = \"a\"\nsecret_env = \"B\"\n",
        "give secret_file or secret_env, not both",
    );
    refused(
        "[upstream_auth]\nmode = \"static\"\n",
        "needs secret_file or secret_env",
    );
    refused(
        "[upstream_auth]\nmode = \"forward\"\n",
        "unknown variant `forward`",
    );
    refused("[upstream_auth]\nmod = \"none\"\n", "unknown field `mod`");
    refused(
        "[upstream_auth]\nsecret_env = \"X\"\n",
        "secret_env does not apply to mode = \"none\"",
    );
    refused(
        "[upstream_auth]\nmode = \"passthrough\"\ntoken_url = \"https://idp/token\"\n",
        "token_url does not apply to mode = \"passthrough\"",
    );
    refused(
        "[upstream_auth]\nmode = \"exchange\"\nclient_id = \"s\"\nclient_secret_env = \"S\"\n",
        "needs token_url",
    );
    refused(
        "[upstream_auth]\nmode = \"exchange\"\ntoken_url = \"http://idp.example.com/token\"\nclient_id = \"s\"\nclient_secret_env = \"S\"\n",
        "must be https://",
    );
    refused(
        "[upstream_auth]\nmode = \"exchange\"\ntoken_url = \"https://idp/token\"\nclient_secret_env = \"S\"\n",
        "needs client_id",
    );
    refused(
        "[upstream_auth]\nmode = \"exchange\"\ntoken_url = \"https://idp/token\"\nclient_id = \"s\"\nclient_secret_env = \"S\"\nclient_secret_file = \"f\"\n",
        "give client_secret_file or client_secret_env, not both",
    );
}
