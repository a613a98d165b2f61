//! The client-side server certificate verifier: mesh CA chain, then mesh identity.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::Error;
use crate::identity::Identity;
use crate::tls::keys::Revocations;
use crate::tls::PeerExpectation;

/// Accepts a server whose certificate chains to the mesh CA and whose SPIFFE identity has the
/// expected mesh and role.
///
/// The server name the caller connects with is deliberately ignored: peers are reached by IP
/// address on a LAN, and the mesh CA only signs mesh identities, so the SPIFFE ID in the
/// certificate is what identifies the server.
#[derive(Debug)]
pub(crate) struct MeshServerVerifier {
    roots: Arc<RootCertStore>,
    expect: PeerExpectation,
    algorithms: WebPkiSupportedAlgorithms,
    revoked: Arc<Revocations>,
}

impl MeshServerVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        expect: PeerExpectation,
        algorithms: WebPkiSupportedAlgorithms,
        revoked: Arc<Revocations>,
    ) -> MeshServerVerifier {
        MeshServerVerifier {
            roots,
            expect,
            algorithms,
            revoked,
        }
    }

    /// The mesh/role check, after the chain has been verified.
    fn check_identity(&self, identity: &Identity) -> Result<(), Error> {
        if identity.mesh != self.expect.mesh {
            return Err(Error::PeerWrongMesh {
                identity: identity.uri(),
                mesh: identity.mesh.clone(),
                expected: self.expect.mesh.clone(),
            });
        }
        if identity.role != self.expect.role {
            return Err(Error::PeerWrongRole {
                identity: identity.uri(),
                role: identity.role,
                expected: self.expect.role,
            });
        }
        Ok(())
    }
}

/// Wraps one of our errors the way rustls expects custom verifier failures.
fn reject(e: Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Chain failures keep rustls's own CertificateError (UnknownIssuer, Expired, ...).
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.revoked.refuses(end_entity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        let identity =
            Identity::from_cert_der_named(end_entity, "server certificate").map_err(reject)?;
        self.check_identity(&identity).map_err(reject)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server-side client verifier: the mesh CA chain (webpki), then the
/// revocation list.
#[derive(Debug)]
pub(crate) struct MeshClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revocations>,
}

impl MeshClientVerifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        revoked: Arc<Revocations>,
    ) -> MeshClientVerifier {
        MeshClientVerifier { inner, revoked }
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.revoked.refuses(end_entity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The joining host's verifier: the server's chain must include the CA
/// certificate the token pins (SHA-256 of its DER) and chain to it, and
/// the server must be that mesh's coordinator.
#[derive(Debug)]
pub(crate) struct PinnedServerVerifier {
    fingerprint: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServerVerifier {
    pub(crate) fn new(fingerprint: &str, algorithms: WebPkiSupportedAlgorithms) -> Self {
        PinnedServerVerifier {
            fingerprint: fingerprint.to_ascii_lowercase(),
            algorithms,
        }
    }
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .position(|c| sha256_hex(c) == self.fingerprint)
            .ok_or_else(|| {
                reject(Error::invalid(
                    "coordinator",
                    format!(
                        "it did not present the CA the token pins (SHA-256 {}): it belongs to \
                         another mesh, or the token was made for another mesh",
                        self.fingerprint
                    ),
                ))
            })?;
        let root = intermediates[pinned].clone().into_owned();
        let mesh = crate::x509::parse_der(&root, "pinned CA")
            .and_then(|c| crate::x509::ca_mesh(&c, "pinned CA"))
            .map_err(reject)?;
        let mut roots = RootCertStore::empty();
        roots
            .add(root)
            .map_err(|e| reject(Error::invalid("pinned CA", e.to_string())))?;
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pinned)
            .map(|(_, c)| c.clone())
            .collect();
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, &roots, &rest, now, self.algorithms.all)?;
        let identity =
            Identity::from_cert_der_named(end_entity, "server certificate").map_err(reject)?;
        MeshServerVerifier::new(
            Arc::new(RootCertStore::empty()),
            PeerExpectation {
                mesh,
                role: crate::identity::Role::Coordinator,
            },
            self.algorithms,
            Arc::default(),
        )
        .check_identity(&identity)
        .map_err(reject)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
