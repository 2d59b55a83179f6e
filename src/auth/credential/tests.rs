//! Secrets read at start, and what each mode puts on the upstream request.

use std::path::PathBuf;

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-credential-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn running(settings: &CredentialSettings) -> Result<UpstreamCredential, CredentialError> {
    UpstreamCredential::new(
        settings,
        || Fetcher::new(&crate::tls::UpstreamTls::default()),
        &Arc::new(Metrics::new()),
    )
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
