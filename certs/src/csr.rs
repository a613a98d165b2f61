//! Certificate signing requests: a member makes its key and a CSR on its
//! own host (the key never leaves it); the signer takes only the CSR's
//! public key, after checking the CSR's signature proves the requester
//! holds the private key.

use rcgen::{CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;

use crate::error::{Error, Result};
use crate::identity::Identity;

/// Largest CSR accepted, in bytes of PEM: an ECDSA P-256 CSR is about
/// 400. Anything longer is refused before it is decoded.
pub const MAX_CSR_PEM_BYTES: usize = 8 * 1024;

/// A new private key and the CSR that asks for `identity` with it.
#[derive(Clone, Debug)]
pub struct KeyAndCsr {
    /// PKCS#8 PEM; stays on this host.
    pub key_pem: String,
    /// What goes to the signer.
    pub csr_pem: String,
}

/// Generates an ECDSA P-256 key and a CSR (subject CN = the name; no
/// extensions: the signer decides what the certificate says).
pub fn new_key_and_csr(identity: &Identity) -> Result<KeyAndCsr> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::generate("private key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.clone());
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Error::generate("certificate signing request", e))?;
    let csr_pem = csr
        .pem()
        .map_err(|e| Error::generate("certificate signing request", e))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem,
    })
}

/// The public key of a CSR whose signature checks out.
pub(crate) fn public_key_of(csr_pem: &str) -> Result<rcgen::PublicKey> {
    let what = "certificate signing request";
    if csr_pem.len() > MAX_CSR_PEM_BYTES {
        return Err(Error::invalid(
            what,
            format!(
                "it is {} bytes, more than the {MAX_CSR_PEM_BYTES} a mesh CSR can need",
                csr_pem.len()
            ),
        ));
    }
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| Error::invalid(what, format!("it is not a PEM `CERTIFICATE REQUEST`: {e}")))?;
    let params = CertificateSigningRequestParams::from_der(&der).map_err(|e| {
        Error::invalid(
            what,
            format!("it cannot be used: {e}; make one with the mesh's tools (mesh-agent join, meshctl certs renew)"),
        )
    })?;
    Ok(params.public_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{CertificateAuthority, Validity};
    use crate::identity::Role;
    use crate::tls::MeshTls;

    #[test]
    fn csr_signed_by_an_intermediate_makes_a_working_identity() {
        let (root, inter) = CertificateAuthority::generate_root_and_intermediate(
            "prod",
            Validity::days(30),
            Validity::days(10),
        )
        .unwrap();
        assert!(inter.is_intermediate().unwrap());
        assert!(!root.is_intermediate().unwrap());
        let id = Identity::new("prod", Role::Agent, "pc3").unwrap();
        let req = new_key_and_csr(&id).unwrap();
        let chain = inter
            .sign_csr(&id, &req.csr_pem, Validity::days(1))
            .unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let tls = MeshTls::from_pem(root.cert_pem(), &chain, &req.key_pem).unwrap();
        assert_eq!(tls.identity(), &id);
        // A second renewal swaps in a new key and serial.
        let before = tls.leaf().unwrap();
        let again = new_key_and_csr(&id).unwrap();
        let chain2 = inter
            .sign_csr(&id, &again.csr_pem, Validity::days(1))
            .unwrap();
        tls.renew(&chain2, &again.key_pem).unwrap();
        assert_ne!(tls.leaf().unwrap().serial, before.serial);
        // The wrong key, another identity or another CA: refused, nothing changes.
        assert!(tls.renew(&chain2, &req.key_pem).is_err());
        let other = Identity::new("prod", Role::Agent, "pc4").unwrap();
        let chain3 = inter
            .sign_csr(&other, &again.csr_pem, Validity::days(1))
            .unwrap();
        assert!(tls
            .renew(&chain3, &again.key_pem)
            .unwrap_err()
            .to_string()
            .contains("pc4"));
        let stranger = CertificateAuthority::generate("prod", Validity::days(1)).unwrap();
        let chain4 = stranger
            .sign_csr(&id, &again.csr_pem, Validity::days(1))
            .unwrap();
        let e = tls.renew(&chain4, &again.key_pem).unwrap_err().to_string();
        assert!(e.contains("does not chain"), "{e}");
        assert_eq!(tls.chain_pem(), chain2);
    }

    #[test]
    fn bad_csrs_are_refused_with_the_reason() {
        let ca = CertificateAuthority::generate("prod", Validity::days(1)).unwrap();
        let id = Identity::new("prod", Role::Agent, "pc3").unwrap();
        let huge = "A".repeat(MAX_CSR_PEM_BYTES + 1);
        let e = ca
            .sign_csr(&id, &huge, Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than"), "{e}");
        let e = ca
            .sign_csr(&id, "garbage", Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CERTIFICATE REQUEST"), "{e}");
        // A CSR whose signature does not match its key.
        let req = new_key_and_csr(&id).unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(req.csr_pem.as_bytes())
            .unwrap()
            .to_vec();
        let last = der.len() - 3;
        der[last] ^= 0xff;
        let tampered = pem_of(&der);
        let e = ca
            .sign_csr(&id, &tampered, Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used"), "{e}");
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }
}
