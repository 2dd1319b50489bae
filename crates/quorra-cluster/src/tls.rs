//! TLS: certificates and keys read from PEM files, for the client ports and for mutual
//! TLS between nodes, the way Redis configures it (`tls-cert-file`, `tls-key-file`,
//! `tls-ca-cert-file`, `tls-auth-clients`, `tls-cluster`).
//!
//! One certificate and key serve every port. The CA bundle verifies certificates that
//! clients present (`tls-auth-clients`: required, optional, or not asked for) and, with
//! mutual TLS between nodes, the certificates of peers in both directions. As Redis does,
//! a node checks that a peer's certificate chains to the CA, not that it names the
//! address it dialled: nodes are reached by IP address and a cluster's certificates are
//! issued by its own CA, so possession of a CA-signed certificate is the credential.
//!
//! [`TlsMaterial::reload`] reads the files again and swaps the configurations in one
//! step; connections opened afterwards use the new ones and open connections keep theirs.
//! If the new files are unusable the old configurations stay and the error is returned,
//! so a bad rotation never takes a node's TLS down.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Whether clients of the RESP port must present a certificate (Redis's
/// `tls-auth-clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertificates {
    /// A certificate signed by the CA is required (`yes`, Redis's default).
    Required,
    /// A certificate is checked if presented (`optional`).
    Optional,
    /// No certificate is asked for (`no`).
    NotAsked,
}

/// Where the PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain.
    pub cert_file: PathBuf,
    /// The node's private key.
    pub key_file: PathBuf,
    /// CA certificates that client and peer certificates must chain to.
    pub ca_cert_file: Option<PathBuf>,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificates and key do not make a configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The configurations built from one reading of the files.
struct Configs {
    clients: Arc<ServerConfig>,
    admin: Arc<ServerConfig>,
    cluster: Option<(Arc<ServerConfig>, Arc<ClientConfig>)>,
}

/// A node's TLS material, reloadable.
pub struct TlsMaterial {
    files: TlsFiles,
    client_certificates: ClientCertificates,
    cluster: bool,
    current: RwLock<Arc<Configs>>,
}

impl TlsMaterial {
    /// Reads the files and builds the configurations: the RESP port's (asking clients
    /// for certificates as `client_certificates` says), the admin port's (which does not
    /// ask: HTTP clients authenticate with the bearer token), and, with `cluster`, mutual
    /// TLS between nodes. A CA file is needed for client certificates and for `cluster`.
    pub fn load(
        files: TlsFiles,
        client_certificates: ClientCertificates,
        cluster: bool,
    ) -> Result<TlsMaterial, TlsError> {
        let configs = build(&files, client_certificates, cluster)?;
        Ok(TlsMaterial {
            files,
            client_certificates,
            cluster,
            current: RwLock::new(Arc::new(configs)),
        })
    }

    /// Reads the files again; keeps the current configurations if they are unusable.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.files, self.client_certificates, self.cluster)?;
        *self.current.write() = Arc::new(configs);
        Ok(())
    }

    /// Accepts TLS on the RESP port.
    pub fn client_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clients.clone())
    }

    /// Accepts TLS on the admin HTTP port.
    pub fn admin_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().admin.clone())
    }

    /// Accepts peers' mutual TLS on the cluster port; `None` without `cluster`.
    pub fn cluster_acceptor(&self) -> Option<TlsAcceptor> {
        let current = self.current.read();
        let (server, _) = current.cluster.as_ref()?;
        Some(TlsAcceptor::from(server.clone()))
    }

    /// Dials peers with mutual TLS; `None` without `cluster`.
    pub fn cluster_connector(&self) -> Option<TlsConnector> {
        let current = self.current.read();
        let (_, client) = current.cluster.as_ref()?;
        Some(TlsConnector::from(client.clone()))
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .field("client_certificates", &self.client_certificates)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// The name a peer's address gives for TLS (the certificate is checked against the CA,
/// not against this name; see the module docs).
pub fn peer_name(peer: std::net::SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(peer.ip().into())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, error))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certificates)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| file_error(path, error))?;
    }
    Ok(Arc::new(roots))
}

fn build(
    files: &TlsFiles,
    client_certificates: ClientCertificates,
    cluster: bool,
) -> Result<Configs, TlsError> {
    let chain = certificates(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|error| file_error(&files.key_file, error))?;
    let roots = match &files.ca_cert_file {
        Some(path) => Some(roots(path)?),
        None => None,
    };
    let need_ca = |what: &str| {
        TlsError::Config(format!(
            "{what} needs a CA certificate file (tls-ca-cert-file)"
        ))
    };
    let config_error = |error: rustls::Error| TlsError::Config(error.to_string());
    let builder = || {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)
    };
    let client_verifier = |roots: &Arc<RootCertStore>, optional: bool| {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let verifier = if optional {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        verifier
            .build()
            .map_err(|error| TlsError::Config(error.to_string()))
    };
    let clients = match client_certificates {
        ClientCertificates::NotAsked => builder()?.with_no_client_auth(),
        asked => {
            let roots = roots.as_ref().ok_or_else(|| need_ca("tls-auth-clients"))?;
            let optional = asked == ClientCertificates::Optional;
            builder()?.with_client_cert_verifier(client_verifier(roots, optional)?)
        }
    }
    .with_single_cert(chain.clone(), key.clone_key())
    .map_err(config_error)?;
    let admin = builder()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(config_error)?;
    let cluster = match cluster {
        false => None,
        true => {
            let roots = roots.as_ref().ok_or_else(|| need_ca("tls-cluster"))?;
            let server = builder()?
                .with_client_cert_verifier(client_verifier(roots, false)?)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(config_error)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            let client = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                .with_client_auth_cert(chain, key)
                .map_err(config_error)?;
            Some((Arc::new(server), Arc::new(client)))
        }
    };
    Ok(Configs {
        clients: Arc::new(clients),
        admin: Arc::new(admin),
        cluster,
    })
}

/// Verifies a peer's certificate chain against the cluster's CA, but not the name in
/// it (see the module docs).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A throwaway PKI for tests: a CA, and certificates it signs written as PEM files.
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki {
    use std::path::{Path, PathBuf};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    use super::TlsFiles;

    /// A certificate authority whose files live in one directory.
    pub struct TestCa {
        issuer: CertifiedIssuer<'static, KeyPair>,
        dir: PathBuf,
        name: String,
    }

    impl TestCa {
        /// A new CA named `name`, its certificate written to `<dir>/<name>-ca.pem`.
        pub fn new(dir: &Path, name: &str) -> TestCa {
            std::fs::create_dir_all(dir).expect("test PKI directory");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} test CA"));
            let key = KeyPair::generate().expect("CA key");
            let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
            let ca = TestCa {
                issuer,
                dir: dir.to_owned(),
                name: name.to_owned(),
            };
            std::fs::write(ca.ca_path(), ca.issuer.pem()).expect("CA file");
            ca
        }

        /// The CA certificate's PEM file.
        pub fn ca_path(&self) -> PathBuf {
            self.dir.join(format!("{}-ca.pem", self.name))
        }

        /// Issues a certificate for `names` (DNS names or IP addresses), writes
        /// `<dir>/<file>.pem` and `<dir>/<file>.key`, and returns the files with this CA
        /// as the CA file.
        pub fn issue(&self, file: &str, names: &[&str]) -> TlsFiles {
            let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
            let mut params = CertificateParams::new(names).expect("certificate params");
            params.distinguished_name.push(DnType::CommonName, file);
            let key = KeyPair::generate().expect("key");
            let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
            let cert_file = self.dir.join(format!("{file}.pem"));
            let key_file = self.dir.join(format!("{file}.key"));
            std::fs::write(&cert_file, certificate.pem()).expect("certificate file");
            std::fs::write(&key_file, key.serialize_pem()).expect("key file");
            TlsFiles {
                cert_file,
                key_file,
                ca_cert_file: Some(self.ca_path()),
            }
        }
    }
}
