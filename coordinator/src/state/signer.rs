//! The coordinator's signing CA (the intermediate, or the root where a
//! mesh has none): certificates for joining and renewing members, and for
//! the coordinator itself.

use std::path::Path;
use std::time::Duration;

use mesh_certs::{CertificateAuthority, Identity, Role, Validity};
use time::OffsetDateTime;

use crate::state::identities::{serial_hex, CertRecord};

pub struct Signer {
    ca: CertificateAuthority,
    root_pem: String,
    fingerprint: String,
    /// Lifetime of agent and coordinator certificates [24 h].
    pub member_lifetime: Duration,
    /// Lifetime of admin certificates [30 days].
    pub admin_lifetime: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("mesh", &self.ca.mesh())
            .field("fingerprint", &self.fingerprint)
            .field("member_lifetime", &self.member_lifetime)
            .finish_non_exhaustive()
    }
}

/// Whether `dir` holds a key that can sign (intermediate.key or ca.key).
pub fn has_signing_key(dir: &Path) -> bool {
    mesh_certs::intermediate_paths(dir).1.exists() || mesh_certs::ca_key_path(dir).exists()
}

pub const DEFAULT_MEMBER_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_ADMIN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A signed certificate: the chain to send, and its record.
pub struct Signed {
    pub chain_pem: String,
    pub record: CertRecord,
}

impl Signer {
    /// The signing CA in `dir` (intermediate.crt/.key, else ca.crt/.key)
    /// and the root CA certificate `root_ca` members trust.
    pub fn load(dir: &Path, root_ca: &Path) -> Result<Signer, String> {
        let ca = mesh_certs::load_signing_ca(dir).map_err(|e| e.to_string())?;
        let root_pem = std::fs::read_to_string(root_ca)
            .map_err(|e| format!("cannot read CA certificate {}: {e}", root_ca.display()))?;
        let fingerprint = mesh_certs::ca_fingerprint(&root_pem).map_err(|e| e.to_string())?;
        Ok(Signer {
            ca,
            root_pem,
            fingerprint,
            member_lifetime: DEFAULT_MEMBER_LIFETIME,
            admin_lifetime: DEFAULT_ADMIN_LIFETIME,
        })
    }

    pub fn from_parts(
        ca: CertificateAuthority,
        root_pem: &str,
    ) -> Result<Signer, mesh_certs::Error> {
        Ok(Signer {
            fingerprint: mesh_certs::ca_fingerprint(root_pem)?,
            root_pem: root_pem.to_string(),
            ca,
            member_lifetime: DEFAULT_MEMBER_LIFETIME,
            admin_lifetime: DEFAULT_ADMIN_LIFETIME,
        })
    }

    pub fn with_lifetimes(mut self, member: Duration, admin: Duration) -> Signer {
        self.member_lifetime = member;
        self.admin_lifetime = admin;
        self
    }

    pub fn mesh(&self) -> &str {
        self.ca.mesh()
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn lifetime(&self, role: Role) -> Duration {
        match role {
            Role::Admin => self.admin_lifetime,
            Role::Agent | Role::Coordinator => self.member_lifetime,
        }
    }

    /// A certificate for `identity` over the CSR's key, valid from a little
    /// before now (clock skew: a quarter of the lifetime, at most 5
    /// minutes) for the role's lifetime.
    pub fn sign(&self, identity: &Identity, csr_pem: &str) -> Result<Signed, String> {
        let lifetime = self.lifetime(identity.role);
        let skew = (lifetime / 4).min(Duration::from_secs(300));
        let now = OffsetDateTime::now_utc();
        let validity = Validity::between(now - skew, now + lifetime);
        let chain_pem = self
            .ca
            .sign_csr(identity, csr_pem, validity)
            .map_err(|e| e.to_string())?;
        let facts = mesh_certs::leaf_facts_pem(&chain_pem).map_err(|e| e.to_string())?;
        Ok(Signed {
            chain_pem,
            record: CertRecord {
                identity: identity.uri(),
                role: identity.role.to_string(),
                name: identity.name.clone(),
                serial: serial_hex(&facts.serial),
                not_after_unix: facts.not_after_unix,
                issued_unix: now.unix_timestamp(),
                revoked: false,
            },
        })
    }
}
