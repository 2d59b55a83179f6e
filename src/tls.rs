//! TLS on both sides of the proxy, with rustls (ring provider): the trust of an HTTPS
//! upstream (system roots or `--upstream-ca`, an optional client certificate), and the
//! certificate of the client-facing listener, reloaded when its files change.
//!
//! Every PEM file is read here, and every way one can be unusable is a [`TlsError`]
//! naming the file, so a start-up failure is one line that says which file and why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error_chain::ErrorChain;
use crate::metrics::Metrics;

/// How sluice trusts an HTTPS upstream and proves itself to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM certificates to trust instead of the system's roots (`--upstream-ca`).
    pub ca: Option<PathBuf>,
    /// PEM certificate chain sluice presents when the upstream asks for one.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl UpstreamTls {
    /// True when nothing is set (the system roots, no client certificate).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The certificate and key of the TLS listener (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The TLS part of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Trust and client certificate for an `https://` upstream.
    pub upstream: UpstreamTls,
    /// The listener's certificate; `None`: the listener speaks plain HTTP.
    pub listener: Option<ListenerTls>,
}

/// Why a TLS setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not PEM, or holds nothing of the kind wanted.
    #[error("{}: no usable PEM {what} in it: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// A CA file's certificate cannot be a trust anchor.
    #[error("{}: not usable as a trusted CA certificate: {source}", path.display())]
    Anchor {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// A certificate and key do not form a usable pair (unsupported key type, or a key
    /// that is not the certificate's).
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// The system trust store gave no certificate, and no `--upstream-ca` was given: no
    /// HTTPS upstream could ever be trusted.
    #[error(
        "no trusted root certificates for an https:// upstream: the system store has none ({detail}); install the system CA bundle or give --upstream-ca"
    )]
    NoRoots {
        /// What the store loader reported.
        detail: String,
    },
    /// Only one of the client certificate and its key was given.
    #[error("--upstream-client-cert and --upstream-client-key go together: give both or neither")]
    HalfClientCert,
    /// Upstream TLS settings for an upstream that does not speak TLS: they would do
    /// nothing, and a user who set them believes they do.
    #[error(
        "--upstream-ca and --upstream-client-cert/--upstream-client-key apply to an https:// upstream; {upstream} is not one"
    )]
    NotHttps {
        /// The upstream URL.
        upstream: String,
    },
    /// rustls refused the protocol configuration (not expected with its defaults).
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The one crypto provider sluice uses, whatever else in the process installed one:
/// ring, which builds with a C compiler alone. rustls 0.23.48 deprecates it because it
/// has no post-quantum key exchange (aws-lc-rs has X25519MLKEM768); moving is a
/// Cargo feature and this one line.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file; at least one.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |source| TlsError::Pem {
        path: path.to_path_buf(),
        what: "certificate",
        source,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if certs.is_empty() {
        return Err(fail(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::Pem {
        path: path.to_path_buf(),
        what: "private key",
        source,
    })
}

/// The rustls client configuration for an HTTPS upstream. Without `--upstream-ca` the
/// system's roots are trusted (rustls-native-certs: the operating system's store, so a
/// CA the administrator added is trusted, and `SSL_CERT_FILE`/`SSL_CERT_DIR` are
/// honoured); with it, only the certificates of that file, as curl's `--cacert` does:
/// pinning a private upstream to its own CA is the point of giving one.
pub fn client_config(settings: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match &settings.ca {
        Some(path) => {
            for cert in certificates(path, &read(path)?)? {
                roots.add(cert).map_err(|source| TlsError::Anchor {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (_, unparsable) = roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                let detail = native
                    .errors
                    .first()
                    .map_or_else(|| "no certificate found".to_string(), |e| e.to_string());
                return Err(TlsError::NoRoots { detail });
            }
            if unparsable > 0 || !native.errors.is_empty() {
                tracing::warn!(
                    trusted = roots.len(),
                    unparsable,
                    errors = native.errors.len(),
                    "some certificates of the system trust store could not be used"
                );
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    match (&settings.client_cert, &settings.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, &read(cert)?)?;
            let der = private_key(key, &read(key)?)?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|source| TlsError::Pair {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })
        }
        _ => Err(TlsError::HalfClientCert),
    }
}

/// The listener's certificate, swapped whole when its files change: each new connection
/// is served the pair current when its handshake starts; open connections keep theirs.
#[derive(Debug)]
pub struct ServerCert {
    files: ListenerTls,
    current: ArcSwap<CertifiedKey>,
    /// The bytes the current pair was made from: a change event that did not change
    /// them (a touch, another file of the directory) is not a reload.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// What [`ServerCert::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertReload {
    /// A new pair is current.
    Replaced,
    /// The files hold what is already served.
    Unchanged,
}

impl ServerCert {
    /// Reads and checks the pair (the key must be the certificate's).
    pub fn load(files: ListenerTls) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
        let key = certified_key(&files, &cert_pem, &key_pem)?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// The files, for the watcher.
    pub fn files(&self) -> &ListenerTls {
        &self.files
    }

    /// The certificate chain served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads the files again and, if they hold a new usable pair, serves it from the
    /// next handshake on. A pair that cannot be used leaves the current one serving.
    pub fn reload(&self) -> Result<CertReload, TlsError> {
        let (cert_pem, key_pem) = (read(&self.files.cert)?, read(&self.files.key)?);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(CertReload::Unchanged);
        }
        let key = certified_key(&self.files, &cert_pem, &key_pem)?;
        self.current.store(Arc::new(key));
        *loaded = (cert_pem, key_pem);
        Ok(CertReload::Replaced)
    }

    /// [`ServerCert::reload`], logged and counted: what a file change or `SIGHUP` does.
    pub fn reload_reported(&self, metrics: Option<&Metrics>) {
        match self.reload() {
            Ok(CertReload::Unchanged) => {}
            Ok(CertReload::Replaced) => {
                if let Some(metrics) = metrics {
                    metrics.tls_cert_reload(true);
                }
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded; new connections get it");
            }
            Err(error) => {
                if let Some(metrics) = metrics {
                    metrics.tls_cert_reload(false);
                }
                tracing::warn!(
                    "TLS certificate reload refused, the current certificate keeps serving: {}",
                    ErrorChain(&error)
                );
            }
        }
    }

    /// The acceptor of the listener: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, the
    /// certificate resolved per handshake from this (swappable) pair.
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads after each burst of changes in the directories of the two files (any
    /// entry: a Kubernetes secret is swapped by renaming a `..data` link, not the
    /// files). The watcher lives as long as the returned task.
    pub fn watch(
        self: &Arc<Self>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let cert = self.clone();
        crate::watch::watch_files(
            &[self.files.cert.clone(), self.files.key.clone()],
            |_| true,
            move || cert.reload_reported(metrics.as_deref()),
        )
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(
    files: &ListenerTls,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(&files.cert, cert_pem)?;
    let key = private_key(&files.key, key_pem)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM.
    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, (cert, key): &(String, String)) -> ListenerTls {
        let files = ListenerTls {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn unusable_files_are_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let pair = files(dir.path(), &self_signed("a"));
        let missing = ListenerTls {
            cert: dir.path().join("missing.pem"),
            ..pair.clone()
        };
        let err = ServerCert::load(missing).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read ") && err.contains("missing.pem"),
            "{err}"
        );

        let other = self_signed("b");
        std::fs::write(dir.path().join("other.key"), &other.1).unwrap();
        let mismatched = ListenerTls {
            key: dir.path().join("other.key"),
            ..pair.clone()
        };
        let err = ServerCert::load(mismatched).unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");

        std::fs::write(dir.path().join("garbage.pem"), "hello\n").unwrap();
        let garbage = ListenerTls {
            key: dir.path().join("garbage.pem"),
            ..pair
        };
        let err = ServerCert::load(garbage).unwrap_err().to_string();
        assert!(
            err.contains("garbage.pem: no usable PEM private key"),
            "{err}"
        );
    }

    #[test]
    fn a_reload_replaces_a_changed_pair_and_keeps_the_old_one_when_the_new_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed("first");
        let files = files(dir.path(), &first);
        let cert = ServerCert::load(files.clone()).unwrap();
        let served = cert.current().cert[0].clone();
        assert_eq!(cert.reload().unwrap(), CertReload::Unchanged);

        let second = self_signed("second");
        std::fs::write(&files.cert, &second.0).unwrap();
        std::fs::write(&files.key, &second.1).unwrap();
        assert_eq!(cert.reload().unwrap(), CertReload::Replaced);
        let renewed = cert.current().cert[0].clone();
        assert_ne!(renewed, served);

        // The old key with the new certificate: refused, the second pair stays.
        std::fs::write(&files.cert, &first.0).unwrap();
        assert!(matches!(cert.reload(), Err(TlsError::Pair { .. })));
        assert_eq!(cert.current().cert[0], renewed);
        let metrics = Metrics::new();
        cert.reload_reported(Some(&metrics));
        assert!(
            metrics
                .encode()
                .contains("sluice_tls_cert_reloads_total{outcome=\"refused\"} 1"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let pair = files(dir.path(), &self_signed("c"));
        let half = UpstreamTls {
            ca: Some(pair.cert.clone()),
            client_cert: Some(pair.cert.clone()),
            client_key: None,
        };
        assert!(matches!(
            client_config(&half),
            Err(TlsError::HalfClientCert)
        ));
        let key_as_ca = UpstreamTls {
            ca: Some(pair.key.clone()),
            ..UpstreamTls::default()
        };
        let err = client_config(&key_as_ca).unwrap_err().to_string();
        assert!(err.contains("key.pem: no usable PEM certificate"), "{err}");
        let full = UpstreamTls {
            ca: Some(pair.cert.clone()),
            client_cert: Some(pair.cert.clone()),
            client_key: Some(pair.key.clone()),
        };
        assert!(client_config(&full).is_ok());
    }
}
