//! The mesh's own certificate authority and the mutual-TLS configurations built from it.
//!
//! Nothing in the mesh connects without a certificate issued by the mesh's CA. Who a peer is
//! lives in its certificate as a single URI subject alternative name
//! `spiffe://MESH/ROLE/NAME`, where ROLE is `coordinator`, `agent` or `admin`.
//!
//! What this crate is for:
//!
//! * [`identity`]: mesh identities ([`Identity`], [`Role`]) and the naming rules they follow.
//! * [`authority`]: generating and loading the CA, and issuing leaf certificates from it.
//! * [`store`]: the on-disk layout of a certificate directory (`ca.crt`, `ca.key`,
//!   `ROLE-NAME.crt`, `ROLE-NAME.key`), written with safe permissions and never overwritten
//!   without `force`.
//! * [`tls`]: rustls client and server configurations (TLS 1.3 only, ring provider) that
//!   require mutual authentication against the mesh CA, and reading a peer's identity.
//!
//! What it must not do:
//!
//! * trust anything but the mesh CA: no system roots, no anonymous clients;
//! * check host names: the mesh identity in the certificate is what is verified (peers are
//!   reached by IP address on a LAN, and the mesh CA only signs mesh identities);
//! * overwrite keys or certificates unless the caller explicitly asks for it;
//! * write private keys readable by anyone but their owner;
//! * decide authorization: it says who a peer is, callers decide what that peer may do.

#![forbid(unsafe_code)]

pub mod authority;
pub mod csr;
mod error;
pub mod identity;
pub mod join_token;
pub mod store;
pub mod tls;
mod x509;

pub use authority::{CertificateAuthority, LeafCert, Validity};
pub use csr::{new_key_and_csr, KeyAndCsr};
pub use error::{Error, Result};
pub use identity::{validate_name, Identity, Role};
pub use join_token::{ca_fingerprint, JoinToken};
pub use store::{
    ca_cert_path, ca_key_path, init_dir, init_dir_with_intermediate, intermediate_paths,
    issue_to_dir, leaf_paths, list_dir, load_signing_ca, write_ca_cert, write_file_atomic,
    write_leaf, CaSummary, CertInfo, IssueRequest, IssuedCert, EXPIRY_WARNING_DAYS,
};
pub use tls::limits::{HandshakeLimits, HandshakeSlots, LimitHit, Slot};
pub use tls::renew_in;
pub use tls::{
    leaf_facts, leaf_facts_pem, peer_identity, LeafFacts, MeshTls, PeerExpectation, Revocations,
    TlsFiles,
};
