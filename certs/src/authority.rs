//! The mesh certificate authority: generating or loading it, and issuing leaf certificates.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::identity::{validate_name, Identity, SPIFFE_PREFIX};
use crate::x509;

/// The period during which a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (tolerates clock skew between machines) until `n` days from now.
    pub fn days(n: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(n)),
        }
    }

    /// Exactly from `not_before` to `not_after` (tests use it for expired certificates).
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Validity {
        Validity {
            not_before,
            not_after,
        }
    }

    fn check(&self) -> Result<()> {
        if self.not_after <= self.not_before {
            return Err(Error::InvalidValidity(format!(
                "it ends ({}) before it starts ({}); give a positive number of days",
                self.not_after, self.not_before
            )));
        }
        Ok(())
    }
}

/// The mesh's CA: its certificate, its private key and the rcgen issuer built from them.
pub struct CertificateAuthority {
    mesh: String,
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("mesh", &self.mesh)
            .finish_non_exhaustive()
    }
}

/// A freshly issued leaf certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct LeafCert {
    /// The identity written into the certificate.
    pub identity: Identity,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM. Keep it secret.
    pub key_pem: String,
    /// When the certificate stops being valid.
    pub not_after: OffsetDateTime,
}

/// A short stable id of a CA key (FNV-1a over the public key), not a security measure.
fn hex_id(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

impl CertificateAuthority {
    /// Generates a new self-signed CA for `mesh` with an ECDSA P-256 key
    /// that signs leaves directly.
    pub fn generate(mesh: &str, validity: Validity) -> Result<Self> {
        Self::generate_ca(mesh, validity, None, 0)
    }

    /// Generates a root CA for `mesh` (to be kept offline) and an
    /// intermediate CA signed by it (for the coordinator, which signs
    /// joining and renewing members' leaves with it). Members trust the
    /// root; leaves carry the intermediate in their chain.
    pub fn generate_root_and_intermediate(
        mesh: &str,
        root_validity: Validity,
        intermediate_validity: Validity,
    ) -> Result<(Self, Self)> {
        let root = Self::generate_ca(mesh, root_validity, None, 1)?;
        let intermediate = Self::generate_ca(mesh, intermediate_validity, Some(&root), 0)?;
        Ok((root, intermediate))
    }

    fn generate_ca(
        mesh: &str,
        validity: Validity,
        parent: Option<&CertificateAuthority>,
        path_len: u8,
    ) -> Result<Self> {
        validate_name("mesh name", mesh)?;
        validity.check()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::generate("CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = match parent {
            None => format!("{mesh} mesh CA"),
            Some(_) => format!("{mesh} mesh intermediate CA"),
        };
        dn.push(DnType::CommonName, cn);
        // A per-CA serial in the subject: two CAs for the same mesh name
        // (a re-init, or an impostor) then differ in name, so a foreign
        // certificate fails as "unknown issuer" instead of as a confusing
        // signature error against a same-named CA.
        dn.push(
            DnType::OrganizationalUnitName,
            format!("ca-{}", hex_id(key.public_key_raw())),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("{SPIFFE_PREFIX}{mesh}")
                .try_into()
                .map_err(|e| Error::generate("CA certificate", e))?,
        )];
        // The CA signs leaves only, never other CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial()?);
        let cert = match parent {
            None => params.self_signed(&key),
            Some(p) => {
                params.use_authority_key_identifier_extension = true;
                params.signed_by(&key, &p.issuer)
            }
        }
        .map_err(|e| Error::generate("CA certificate", e))?;
        Ok(CertificateAuthority {
            mesh: mesh.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key PEM. The mesh name is read back from the
    /// certificate's `spiffe://MESH` URI SAN.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::load_named(cert_pem, "CA certificate", key_pem, "CA key")
    }

    /// [`CertificateAuthority::load`] with the names (usually file paths) used in errors.
    pub(crate) fn load_named(
        cert_pem: &str,
        cert_what: &str,
        key_pem: &str,
        key_what: &str,
    ) -> Result<Self> {
        let der = x509::first_cert_from_pem(cert_pem, cert_what)?;
        let cert = x509::parse_der(&der, cert_what)?;
        if !x509::is_ca(&cert) {
            return Err(Error::invalid(
                cert_what,
                "it is not a CA certificate (no basicConstraints CA:TRUE); point at the mesh's \
                 ca.crt",
            ));
        }
        let mesh = x509::ca_mesh(&cert, cert_what)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            Error::invalid(
                key_what,
                format!("it is not a PEM PKCS#8 private key: {e}; point at the mesh's ca.key"),
            )
        })?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(Error::invalid(
                key_what,
                format!(
                    "it does not belong to {cert_what}; keep ca.crt and ca.key from the same \
                     `meshctl certs init`"
                ),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| Error::invalid(cert_what, format!("it cannot sign leaves: {e}")))?;
        Ok(CertificateAuthority {
            mesh,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The mesh this CA belongs to.
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM. Keep it secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate for `identity` with a fresh ECDSA P-256 key.
    ///
    /// The certificate carries CN = name, the URI SAN `identity.uri()` and each of `sans`
    /// (an IP address SAN when it parses as one, a DNS name otherwise). It is valid for both
    /// TLS server and client authentication, whatever the role, and cannot sign certificates.
    ///
    /// This does not insist that `identity.mesh` is this CA's mesh: verifiers check the mesh
    /// of every peer, and tests need such certificates. [`crate::issue_to_dir`] always uses the
    /// CA's mesh.
    pub fn issue(
        &self,
        identity: &Identity,
        sans: &[String],
        validity: Validity,
    ) -> Result<LeafCert> {
        let what = format!("certificate for {identity}");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::generate(&what, e))?;
        let params = leaf_params(identity, sans, validity)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::generate(&what, e))?;
        let mut cert_pem = cert.pem();
        if self.is_intermediate()? {
            cert_pem.push_str(&self.cert_pem);
        }
        Ok(LeafCert {
            identity: identity.clone(),
            cert_pem,
            key_pem: key.serialize_pem(),
            not_after: validity.not_after,
        })
    }

    /// Signs a certificate for `identity` over the public key of a CSR
    /// (PEM) whose holder kept its private key. Only the CSR's key (and its
    /// proof of possession, the CSR's signature) is used: identity, usages
    /// and validity are ours, whatever the CSR asks for. Returns the leaf
    /// PEM followed by this CA's certificate when it is an intermediate.
    pub fn sign_csr(
        &self,
        identity: &Identity,
        csr_pem: &str,
        validity: Validity,
    ) -> Result<String> {
        let what = format!("certificate for {identity}");
        let public_key = crate::csr::public_key_of(csr_pem)?;
        let params = leaf_params(identity, &[], validity)?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| Error::generate(&what, e))?;
        let mut chain = cert.pem();
        if self.is_intermediate()? {
            chain.push_str(&self.cert_pem);
        }
        Ok(chain)
    }

    /// Whether this CA's certificate is signed by another (an intermediate).
    pub fn is_intermediate(&self) -> Result<bool> {
        let der = x509::first_cert_from_pem(&self.cert_pem, "CA certificate")?;
        let cert = x509::parse_der(&der, "CA certificate")?;
        Ok(cert.subject() != cert.issuer())
    }
}

/// A fresh positive 128-bit serial number: serials must be unique per CA,
/// and the revocation list names certificates by them.
fn random_serial() -> Result<rcgen::SerialNumber> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::invalid("serial number", "the system random source failed"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// What every mesh leaf certificate says: the identity, usable for TLS
/// client and server authentication, never for signing certificates.
fn leaf_params(
    identity: &Identity,
    sans: &[String],
    validity: Validity,
) -> Result<CertificateParams> {
    validity.check()?;
    let what = format!("certificate for {identity}");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.clone());
    params.distinguished_name = dn;
    let uri = identity
        .uri()
        .try_into()
        .map_err(|e| Error::generate(&what, e))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    for san in sans {
        params.subject_alt_names.push(extra_san(san)?);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// An extra SAN given on the command line: an IP address if it parses as one, else a DNS name.
fn extra_san(san: &str) -> Result<SanType> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |reason: &str| {
        Error::invalid(
            format!("extra SAN '{san}'"),
            format!("{reason}; give an IP address or a DNS name such as pc2.lan"),
        )
    };
    if san.is_empty() {
        return Err(bad("it is empty"));
    }
    if san.contains(|c: char| c.is_whitespace() || c == '/' || !c.is_ascii()) {
        return Err(bad("it contains whitespace, '/' or non-ASCII characters"));
    }
    san.to_string()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|_| bad("it is not a valid DNS name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// A certificate signed by `ca` with the mesh identity's URI(s) and
    /// `change` applied to otherwise correct leaf parameters.
    fn crafted(
        ca: &CertificateAuthority,
        uris: &[&str],
        change: impl FnOnce(&mut CertificateParams),
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        change(&mut params);
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        der(&cert.pem())
    }

    #[test]
    fn flawed_leaves_from_the_right_ca_are_refused_with_the_reason() {
        let ca = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        let ok = crafted(&ca, &["spiffe://prod/agent/pc2"], |_| {});
        assert_eq!(
            Identity::from_cert_der(&ok).unwrap().to_string(),
            "spiffe://prod/agent/pc2"
        );
        let refused =
            |c: CertificateDer<'static>| Identity::from_cert_der(&c).unwrap_err().to_string();
        let e = refused(crafted(&ca, &["spiffe://prod/agent/pc2"], |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
        }));
        assert!(e.contains("is a CA certificate"), "{e}");
        let e = refused(crafted(&ca, &["spiffe://prod/agent/pc2"], |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
        }));
        assert!(e.contains("lacks digitalSignature"), "{e}");
        let e = refused(crafted(&ca, &["spiffe://prod/agent/pc2"], |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning]
        }));
        assert!(e.contains("neither TLS client nor server"), "{e}");
        let e = refused(crafted(
            &ca,
            &["spiffe://prod/agent/pc2", "spiffe://prod/admin/root"],
            |_| {},
        ));
        assert!(e.contains("2 spiffe:// URI SANs"), "{e}");
        let e = refused(crafted(&ca, &[], |_| {}));
        assert!(e.contains("no spiffe:// URI SAN"), "{e}");
        for bad in [
            "spiffe://prod/agent",
            "spiffe://prod/wizard/pc2",
            "spiffe://prod/agent/PC_2",
            "spiffe:///agent/pc2",
        ] {
            let e = refused(crafted(&ca, &[bad], |_| {}));
            assert!(
                e.contains("spiffe") || e.contains("name") || e.contains("role"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn generate_then_load_round_trip() {
        let ca = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        assert_eq!(ca.mesh(), "prod");
        let loaded = CertificateAuthority::load(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(loaded.mesh(), "prod");
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.key_pem(), ca.key_pem());

        let ca_der = der(ca.cert_pem());
        let cert = x509::parse_der(&ca_der, "ca").unwrap();
        assert!(cert.is_ca());
        assert_eq!(
            x509::render_sans(&cert, "ca").unwrap(),
            vec!["spiffe://prod".to_string()]
        );
        assert!(format!("{}", cert.subject()).contains("prod mesh CA"));

        // A leaf issued by the loaded CA chains to the original certificate's issuer name.
        let id = Identity::new("prod", Role::Agent, "pc2").unwrap();
        let leaf = loaded.issue(&id, &[], Validity::days(1)).unwrap();
        let leaf_der = der(&leaf.cert_pem);
        let parsed = x509::parse_der(&leaf_der, "leaf").unwrap();
        assert_eq!(parsed.issuer(), cert.subject());
    }

    #[test]
    fn load_rejects_mismatched_key_and_leaf_as_ca() {
        let a = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        let b = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        let err = CertificateAuthority::load(a.cert_pem(), b.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");

        let id = Identity::new("prod", Role::Agent, "pc2").unwrap();
        let leaf = a.issue(&id, &[], Validity::days(1)).unwrap();
        let err = CertificateAuthority::load(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");

        let err = CertificateAuthority::load("garbage", a.key_pem()).unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
    }

    #[test]
    fn issued_leaf_carries_identity_and_sans() {
        let ca = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        let id = Identity::new("prod", Role::Coordinator, "main").unwrap();
        let sans = vec!["192.168.1.10".to_string(), "coord.lan".to_string()];
        let leaf = ca.issue(&id, &sans, Validity::days(10)).unwrap();
        let leaf_der = der(&leaf.cert_pem);
        assert_eq!(Identity::from_cert_der(&leaf_der).unwrap(), id);

        let cert = x509::parse_der(&leaf_der, "leaf").unwrap();
        assert!(!cert.is_ca());
        assert_eq!(
            x509::render_sans(&cert, "leaf").unwrap(),
            vec![
                "spiffe://prod/coordinator/main".to_string(),
                "192.168.1.10".to_string(),
                "coord.lan".to_string()
            ]
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            leaf.not_after.unix_timestamp()
        );
        assert!(KeyPair::from_pem(&leaf.key_pem).is_ok());
    }

    #[test]
    fn ca_has_no_leaf_identity_and_bad_inputs_fail() {
        let ca = CertificateAuthority::generate("prod", Validity::days(30)).unwrap();
        let err = Identity::from_cert_der(&der(ca.cert_pem())).unwrap_err();
        assert!(err.to_string().contains("is a CA certificate"), "{err}");

        let id = Identity::new("prod", Role::Agent, "pc2").unwrap();
        let err = ca.issue(&id, &["bad name".into()], Validity::days(1));
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("extra SAN 'bad name'"));

        let now = OffsetDateTime::now_utc();
        let backwards = Validity::between(now, now - Duration::days(1));
        assert!(ca.issue(&id, &[], backwards).is_err());
        assert!(CertificateAuthority::generate("Bad_Mesh", Validity::days(1)).is_err());
    }
}
