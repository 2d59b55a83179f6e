//! Certificates made in the test (rcgen): a CA, server certificates for 127.0.0.1 and
//! localhost signed by it, and a client certificate; written as PEM files to a scratch
//! directory. And TLS clients that trust the CA: reqwest (for the rmcp client) and a
//! bare rustls client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sluice::tls::{ListenerTls, UpstreamTls};

/// A CA and the files of what it signed.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A server certificate for 127.0.0.1 and localhost, and its key.
    pub server: ListenerTls,
    /// A client certificate (for mutual TLS), and its key.
    pub client: ListenerTls,
}

/// The ring provider, as sluice uses it (rustls 0.23.48 deprecates ring's for lack of
/// post-quantum key exchange).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let pki = Pki {
            issuer: Issuer::new(params, key),
            ca,
            server: ListenerTls {
                cert: dir.path().join("server.pem"),
                key: dir.path().join("server.key"),
            },
            client: ListenerTls {
                cert: dir.path().join("client.pem"),
                key: dir.path().join("client.key"),
            },
            dir,
        };
        let (cert, key) = pki.leaf("sluice test server", 1, true);
        std::fs::write(&pki.server.cert, cert).unwrap();
        std::fs::write(&pki.server.key, key).unwrap();
        let (cert, key) = pki.leaf("sluice test client", 2, false);
        std::fs::write(&pki.client.cert, cert).unwrap();
        std::fs::write(&pki.client.key, key).unwrap();
        pki
    }

    /// A certificate (PEM) and key (PEM) signed by the CA: a server certificate for
    /// 127.0.0.1 and localhost, or a client certificate.
    pub fn leaf(&self, common_name: &str, serial: u64, server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if server {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        } else {
            vec![]
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// sluice's upstream settings trusting this CA.
    pub fn upstream(&self) -> UpstreamTls {
        UpstreamTls {
            ca: Some(self.ca.clone()),
            ..UpstreamTls::default()
        }
    }

    /// A rustls client configuration trusting this CA (no ALPN).
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// A reqwest client (what the rmcp client is built on) trusting this CA.
    pub fn reqwest(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client_config())
            .build()
            .unwrap()
    }

    /// The rustls server configuration of a certificate and key (PEM files), with
    /// `client_ca` required of clients when given.
    pub fn server_config(files: &ListenerTls, client_ca: Option<&Path>) -> rustls::ServerConfig {
        let chain: Vec<_> = CertificateDer::pem_file_iter(&files.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder.with_single_cert(chain, key).unwrap()
    }
}

/// Opens a TLS connection to `addr` trusting `config`'s roots, names 127.0.0.1, and
/// returns the server's end-entity certificate (DER) and the stream.
pub async fn handshake(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<(
    Vec<u8>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
)> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = connector.connect(name, tcp).await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((cert, stream))
}
