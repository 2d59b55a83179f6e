//! The `[upstream_auth]` table as the config file gives it, and secrets read at start.

use std::path::{Path, PathBuf};

use super::*;

/// The file's top-level `[upstream_auth]` as read from `text` (a file in /etc/sluice).
fn parse(text: &str) -> Result<CredentialSettings, String> {
    crate::config::file::parse(Path::new("/etc/sluice/sluice.toml"), text)
        .map(|file| file.access.upstream_auth.unwrap_or_default())
        .map_err(|e| e.to_string())
}

fn refused(text: &str, wanted: &str) -> String {
    let err = parse(text).unwrap_err();
    assert!(err.contains(wanted), "{err:?} does not contain {wanted:?}");
    assert!(err.contains("upstream_auth"), "{err:?} names the table");
    err
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-credential-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn running(settings: &CredentialSettings) -> Result<UpstreamCredential, CredentialError> {
    let fetcher = Fetcher::new(&crate::tls::UpstreamTls::default()).unwrap();
    UpstreamCredential::new(settings, fetcher, &Arc::new(Metrics::new()))
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
    let file = crate::config::file::parse(
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

#[test]
fn a_static_secret_is_read_at_start_trimmed_and_never_printed() {
    let dir = scratch("static");
    let file = dir.join("token");
    std::fs::write(&file, "s3cret-value\n").unwrap();
    let credential = running(&CredentialSettings {
        header: Some("X-Api-Key".into()),
        scheme: Some(String::new()),
        ..CredentialSettings::bearer_from_file(file.clone())
    })
    .unwrap();
    let debug = format!("{credential:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let UpstreamCredential::Static(name, value) = &credential else {
        panic!("{debug}")
    };
    assert_eq!(name.as_str(), "x-api-key");
    assert_eq!(value.to_str().unwrap(), "s3cret-value");
    assert!(value.is_sensitive());

    let bearer = running(&CredentialSettings::bearer_from_file(file.clone())).unwrap();
    let UpstreamCredential::Static(name, value) = &bearer else {
        panic!()
    };
    assert_eq!(name, header::AUTHORIZATION);
    assert_eq!(value.to_str().unwrap(), "Bearer s3cret-value");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unusable_secrets_stop_start_up_naming_the_source_not_the_secret() {
    let dir = scratch("unusable");
    let error = |content: Option<&str>| {
        let file = dir.join("token");
        match content {
            Some(content) => std::fs::write(&file, content).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let e = running(&CredentialSettings::bearer_from_file(file.clone())).unwrap_err();
        let text = crate::error_chain::ErrorChain(&e).to_string();
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(!text.contains("hidden"), "{text}");
        text
    };
    assert!(error(None).contains("cannot read it"));
    assert!(error(Some("\n")).contains("the secret is empty"));
    assert!(error(Some("hidden\nline\n")).contains("not a valid HTTP header value"));
    assert!(error(Some("hidden\u{7}")).contains("not a valid HTTP header value"));

    let e = running(&CredentialSettings {
        mode: CredentialMode::Static,
        secret: Some(SecretSource::Env("SLUICE_TEST_CREDENTIAL_NEVER_SET".into())),
        ..CredentialSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("secret_env SLUICE_TEST_CREDENTIAL_NEVER_SET"),
        "{e}"
    );
    let file = dir.join("ok");
    std::fs::write(&file, "t").unwrap();
    let e = running(&CredentialSettings {
        header: Some("bad header".into()),
        ..CredentialSettings::bearer_from_file(file)
    })
    .unwrap_err();
    assert!(matches!(e, CredentialError::BadHeaderName(_)), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn none_removes_and_passthrough_keeps_the_clients_authorization() {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, "Bearer client".parse().unwrap());
    UpstreamCredential::Passthrough
        .apply(&mut headers, Some("client"))
        .await
        .unwrap();
    assert_eq!(headers[header::AUTHORIZATION], "Bearer client");
    UpstreamCredential::None
        .apply(&mut headers, Some("client"))
        .await
        .unwrap();
    assert!(headers.get(header::AUTHORIZATION).is_none());
}

#[tokio::test]
async fn exchange_needs_a_client_token_and_its_debug_hides_the_client_secret() {
    let dir = scratch("exchange");
    let file = dir.join("client-secret");
    std::fs::write(&file, "client-s3cret\n").unwrap();
    let credential = running(&CredentialSettings {
        mode: CredentialMode::Exchange,
        exchange: Some(ExchangeSettings {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "sluice".into(),
            client_secret: SecretSource::File(file),
            audience: None,
            resource: None,
            scope: None,
            requested_token_type: None,
        }),
        ..CredentialSettings::default()
    })
    .unwrap();
    let debug = format!("{credential:?}");
    assert!(!debug.contains("client-s3cret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let mut headers = HeaderMap::new();
    let e = credential.apply(&mut headers, None).await.unwrap_err();
    assert!(matches!(e, CredentialError::NoClientToken), "{e}");
    let UpstreamCredential::Exchange(exchange) = &credential else {
        panic!()
    };
    assert_eq!(exchange.cached_len(), 0);
    let _ = std::fs::remove_dir_all(dir);
}
