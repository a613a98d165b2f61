//! rustls configurations for the mesh: TLS 1.3 only, the ring provider, mutual authentication
//! against the mesh CA, and identities read from certificates.

mod keys;
pub mod limits;
mod verifier;

pub use keys::Revocations;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{init_hint, issue_hint, Error, Result};
use crate::identity::{Identity, Role};
use crate::store::{ca_cert_path, leaf_paths, read_text};
use crate::x509;

use keys::KeyCell;
use verifier::{MeshClientVerifier, MeshServerVerifier};

/// The three files a mesh member needs for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The mesh CA certificate (trust anchor).
    pub ca: PathBuf,
    /// Our certificate (leaf first, PEM).
    pub cert: PathBuf,
    /// Our private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// `DIR/ca.crt`, `DIR/ROLE-NAME.crt` and `DIR/ROLE-NAME.key`.
    pub fn in_dir(dir: &Path, role: Role, name: &str) -> TlsFiles {
        let (cert, key) = leaf_paths(dir, role, name);
        TlsFiles {
            ca: ca_cert_path(dir),
            cert,
            key,
        }
    }
}

impl TlsFiles {
    /// The files from explicit paths, or else from a `meshctl certs`
    /// directory by role and name. Explicit paths win one by one, so a user
    /// can keep the directory and point at a key elsewhere. The error says
    /// what is missing and how to give it.
    pub fn resolve(
        certs_dir: Option<&Path>,
        role: Role,
        name: &str,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> std::result::Result<TlsFiles, String> {
        let from_dir = certs_dir.map(|d| TlsFiles::in_dir(d, role, name));
        let pick = |explicit: Option<PathBuf>, which: &str, dir: Option<&PathBuf>| {
            explicit.or_else(|| dir.cloned()).ok_or_else(|| {
                format!(
                    "no {which} given: pass --certs-dir DIR (a directory made by `meshctl certs`) or --{which} FILE"
                )
            })
        };
        Ok(TlsFiles {
            ca: pick(ca, "ca", from_dir.as_ref().map(|f| &f.ca))?,
            cert: pick(cert, "cert", from_dir.as_ref().map(|f| &f.cert))?,
            key: pick(key, "key", from_dir.as_ref().map(|f| &f.key))?,
        })
    }
}

/// What the client requires of the server it connects to.
#[derive(Clone, Debug)]
pub struct PeerExpectation {
    /// The server must belong to this mesh.
    pub mesh: String,
    /// The server must have this role.
    pub role: Role,
}

/// Our trust anchors, certificate chain, key and identity, ready to build rustls configs.
///
/// Clones share the current key and the revocation list: configurations
/// built from any clone present the newest certificate after
/// [`MeshTls::renew`] and refuse what [`MeshTls::revocations`] holds.
#[derive(Clone)]
pub struct MeshTls {
    roots: Arc<RootCertStore>,
    keys: Arc<KeyCell>,
    identity: Identity,
    revoked: Arc<Revocations>,
}

/// Facts about our current leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafFacts {
    /// The serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// Seconds since the Unix epoch.
    pub not_after_unix: i64,
}

impl fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTls")
            .field("identity", &self.identity)
            .field("roots", &self.roots.len())
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

/// The crypto provider for everything in the mesh.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl MeshTls {
    /// Reads the CA certificate, our certificate and our key. Errors name the file that is
    /// missing or unusable. Whether our certificate chains to the CA is not checked here.
    pub fn load(files: &TlsFiles) -> Result<MeshTls> {
        let dir = files.ca.parent().unwrap_or(Path::new("."));
        let ca_pem = read_text(&files.ca, "read CA certificate", || init_hint(dir))?;
        let leaf_hint = || {
            let stem = files
                .cert
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match stem.split_once('-') {
                Some((role, name)) => match role.parse::<Role>() {
                    Ok(role) => issue_hint(dir, role, name),
                    Err(_) => "issue one with `meshctl certs issue`".to_string(),
                },
                None => "issue one with `meshctl certs issue`".to_string(),
            }
        };
        let cert_pem = read_text(&files.cert, "read certificate", leaf_hint)?;
        let key_pem = read_text(&files.key, "read private key", leaf_hint)?;
        Self::from_pem_named(
            &ca_pem,
            &format!("CA certificate {}", files.ca.display()),
            &cert_pem,
            &format!("certificate {}", files.cert.display()),
            &key_pem,
            &format!("private key {}", files.key.display()),
        )
    }

    /// Same as [`MeshTls::load`], from PEM text in memory.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<MeshTls> {
        Self::from_pem_named(
            ca_pem,
            "CA certificate",
            cert_pem,
            "certificate",
            key_pem,
            "private key",
        )
    }

    fn from_pem_named(
        ca_pem: &str,
        ca_what: &str,
        cert_pem: &str,
        cert_what: &str,
        key_pem: &str,
        key_what: &str,
    ) -> Result<MeshTls> {
        let mut roots = RootCertStore::empty();
        for der in x509::certs_from_pem(ca_pem, ca_what)? {
            roots.add(der).map_err(|e| {
                Error::invalid(ca_what, format!("it is not a usable trust anchor: {e}"))
            })?;
        }
        let (identity, key) = certified_key(cert_pem, cert_what, key_pem, key_what)?;
        Ok(MeshTls {
            roots: Arc::new(roots),
            keys: Arc::new(KeyCell::new(key)),
            identity,
            revoked: Arc::default(),
        })
    }

    /// Replaces our certificate and key (PEM) for every handshake from now
    /// on, in every configuration built from this `MeshTls` or its clones.
    /// Connections already established are not touched. Refused, changing
    /// nothing, unless the new certificate carries the same identity and
    /// chains to the mesh CA.
    pub fn renew(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let (identity, key) =
            certified_key(cert_pem, "renewed certificate", key_pem, "renewed key")?;
        if identity != self.identity {
            return Err(Error::invalid(
                "renewed certificate",
                format!("it is for {identity}, not for {}", self.identity),
            ));
        }
        let leaf = key
            .cert
            .first()
            .ok_or_else(|| Error::invalid("renewed certificate", "it is empty"))?;
        let parsed = rustls::server::ParsedCertificate::try_from(leaf)
            .map_err(|e| Error::invalid("renewed certificate", e.to_string()))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            &key.cert[1..],
            rustls_pki_types::UnixTime::now(),
            provider().signature_verification_algorithms.all,
        )
        .map_err(|e| {
            Error::invalid(
                "renewed certificate",
                format!("it does not chain to the mesh CA: {e}"),
            )
        })?;
        self.keys.set(key);
        Ok(())
    }

    /// The serials this member refuses (shared by its clones and every
    /// configuration built from them).
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revoked
    }

    /// Serial and validity of the certificate presented now.
    pub fn leaf(&self) -> Result<LeafFacts> {
        let key = self.keys.get();
        let der = key
            .cert
            .first()
            .ok_or_else(|| Error::invalid("certificate", "it is empty"))?;
        leaf_facts(der)
    }

    /// The current certificate chain, PEM (leaf first).
    pub fn chain_pem(&self) -> String {
        self.keys
            .get()
            .cert
            .iter()
            .map(|c| x509::to_pem(c))
            .collect()
    }
}

/// A certificate chain and its key, checked to belong together, and the
/// identity the leaf carries.
fn certified_key(
    cert_pem: &str,
    cert_what: &str,
    key_pem: &str,
    key_what: &str,
) -> Result<(Identity, rustls::sign::CertifiedKey)> {
    let chain = x509::certs_from_pem(cert_pem, cert_what)?;
    let identity = chain
        .first()
        .map(|leaf| Identity::from_cert_der_named(leaf, cert_what))
        .ok_or_else(|| Error::invalid(cert_what, "it is empty"))??;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        Error::invalid(key_what, format!("it holds no usable PEM private key: {e}"))
    })?;
    let key = rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        Error::invalid(
            key_what,
            format!(
                "it cannot be used with {cert_what}: {e}; keep a certificate and the \
                 key issued with it together"
            ),
        )
    })?;
    Ok((identity, key))
}

impl MeshTls {
    /// Our identity, from our certificate.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Server side: requires a client certificate chaining to the mesh CA; ALPN protocols as
    /// given (gRPC passes `[b"h2"]`).
    ///
    /// The client's identity is not checked here: read it with [`peer_identity`] and decide
    /// per request what that peer may do.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let provider = provider();
        let webpki =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| Error::invalid("mesh CA trust anchors", e.to_string()))?;
        let verifier = Arc::new(MeshClientVerifier::new(webpki, self.revoked.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|source| Error::Tls {
                what: "server TLS configuration",
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.keys.clone());
        // No session resumption: a resumed TLS 1.3 session skips the
        // certificate checks, so a revoked or expired peer could come back
        // on an old ticket.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Server side for hosts that hold no mesh certificate yet (the join
    /// port): our chain with the root CA `root_pem` appended (the joining
    /// host pins it by fingerprint), no client certificate asked for.
    /// Whoever connects is anonymous; the service decides on its own
    /// credential (the token).
    pub fn server_config_for_join(
        &self,
        root_pem: &str,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>> {
        let root = x509::first_cert_from_pem(root_pem, "CA certificate")?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|source| Error::Tls {
                what: "join server TLS configuration",
                source,
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(keys::WithRoot {
                keys: self.keys.clone(),
                root,
            }));
        config.send_tls13_tickets = 0;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client side for joining: accepts only a coordinator whose chain
    /// includes a CA certificate with SHA-256 `ca_fingerprint` (from the
    /// token) and chains to it; presents no certificate. The mesh is the
    /// pinned CA's.
    pub fn join_client_config(ca_fingerprint: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
        let provider = provider();
        let verifier = verifier::PinnedServerVerifier::new(
            ca_fingerprint,
            provider.signature_verification_algorithms,
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|source| Error::Tls {
                what: "join client TLS configuration",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client side: presents our certificate; verifies the server chain against the mesh CA
    /// (expiry included) and then that the server's identity has the expected mesh and role.
    ///
    /// There is no host name check: the identity is the SPIFFE ID in the certificate. Users
    /// connect by IP address on a LAN, where names are neither stable nor known in advance,
    /// and the mesh CA only signs mesh identities, so the SPIFFE ID is the meaningful name.
    pub fn client_config(
        &self,
        expect: PeerExpectation,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>> {
        let provider = provider();
        let verifier = MeshServerVerifier::new(
            self.roots.clone(),
            expect,
            provider.signature_verification_algorithms,
            self.revoked.clone(),
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(TLS13_ONLY)
            .map_err(|source| Error::Tls {
                what: "client TLS configuration",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(self.keys.clone());
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`
/// (Unix seconds), seen at `now`: two thirds into its life, never before
/// now. Agents, admins and the coordinator renew on this schedule.
pub fn renew_in(not_before: i64, not_after: i64, now: i64) -> std::time::Duration {
    let life = (not_after - not_before).max(0);
    let at = not_before + life * 2 / 3;
    std::time::Duration::from_secs(u64::try_from(at - now).unwrap_or(0))
}

/// Serial and validity of a leaf certificate (DER).
pub fn leaf_facts(der: &[u8]) -> Result<LeafFacts> {
    let cert = x509::parse_der(der, "certificate")?;
    Ok(LeafFacts {
        serial: cert.raw_serial().to_vec(),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

/// [`leaf_facts`] of the first certificate in a PEM text.
pub fn leaf_facts_pem(pem: &str) -> Result<LeafFacts> {
    leaf_facts(&x509::first_cert_from_pem(pem, "certificate")?)
}

/// Identity of the peer from the certificates rustls saw (leaf first). Used by the coordinator
/// per RPC.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<Identity> {
    let leaf = certs.first().ok_or(Error::NoPeerCertificate)?;
    Identity::from_cert_der(leaf)
}
