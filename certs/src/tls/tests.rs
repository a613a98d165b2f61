//! Real TLS 1.3 handshakes between rustls connections driven through in-memory buffers.

use std::sync::Arc;

use rustls::{CertificateError, ClientConfig, ClientConnection, Connection, ServerConnection};
use rustls_pki_types::ServerName;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::authority::{CertificateAuthority, LeafCert, Validity};
use crate::store::{init_dir, issue_to_dir, IssueRequest};

struct Outcome {
    client: std::result::Result<(), rustls::Error>,
    server: std::result::Result<(), rustls::Error>,
    server_conn: ServerConnection,
    client_conn: ClientConnection,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.client.is_ok()
            && self.server.is_ok()
            && !self.client_conn.is_handshaking()
            && !self.server_conn.is_handshaking()
    }
}

/// Moves whatever `from` wants to send into `to`; records `to`'s first error. Returns whether
/// any bytes moved.
fn pump(
    from: &mut Connection,
    to: &mut Connection,
    to_result: &mut std::result::Result<(), rustls::Error>,
) -> bool {
    let mut buf = Vec::new();
    while from.wants_write() {
        if from.write_tls(&mut buf).unwrap() == 0 {
            break;
        }
    }
    if buf.is_empty() {
        return false;
    }
    let mut rest = &buf[..];
    while !rest.is_empty() && to_result.is_ok() {
        to.read_tls(&mut rest).unwrap();
        if let Err(e) = to.process_new_packets() {
            *to_result = Err(e);
        }
    }
    true
}

fn handshake(client: Arc<ClientConfig>, server: Arc<rustls::ServerConfig>) -> Outcome {
    // The name is ignored by the mesh verifier; peers are reached by IP address.
    let name = ServerName::try_from("192.168.1.10").unwrap();
    let mut client = Connection::Client(ClientConnection::new(client, name).unwrap());
    let mut server = Connection::Server(ServerConnection::new(server).unwrap());
    let (mut client_result, mut server_result) = (Ok(()), Ok(()));
    for _ in 0..20 {
        let a = pump(&mut client, &mut server, &mut server_result);
        let b = pump(&mut server, &mut client, &mut client_result);
        if !a && !b {
            break;
        }
    }
    let (Connection::Client(client_conn), Connection::Server(server_conn)) = (client, server)
    else {
        unreachable!()
    };
    Outcome {
        client: client_result,
        server: server_result,
        server_conn,
        client_conn,
    }
}

struct Mesh {
    ca: CertificateAuthority,
}

impl Mesh {
    fn new(name: &str) -> Mesh {
        Mesh {
            ca: CertificateAuthority::generate(name, Validity::days(30)).unwrap(),
        }
    }

    fn leaf(&self, mesh: &str, role: Role, name: &str, validity: Validity) -> LeafCert {
        let id = Identity::new(mesh, role, name).unwrap();
        self.ca.issue(&id, &[], validity).unwrap()
    }

    /// TLS material for a leaf of this CA, trusting `trust`.
    fn tls(&self, trust: &Mesh, mesh: &str, role: Role, name: &str) -> MeshTls {
        let leaf = self.leaf(mesh, role, name, Validity::days(1));
        MeshTls::from_pem(trust.ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem).unwrap()
    }
}

fn expect_coordinator() -> PeerExpectation {
    PeerExpectation {
        mesh: "prod".to_string(),
        role: Role::Coordinator,
    }
}

fn coordinator(mesh: &Mesh) -> Arc<rustls::ServerConfig> {
    let tls = mesh.tls(mesh, "prod", Role::Coordinator, "main");
    tls.server_config(&[b"h2"]).unwrap()
}

fn agent_client(issuer: &Mesh, trust: &Mesh) -> Arc<ClientConfig> {
    let tls = issuer.tls(trust, "prod", Role::Agent, "pc2");
    tls.client_config(expect_coordinator(), &[b"h2"]).unwrap()
}

fn past() -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity::between(now - Duration::days(10), now - Duration::days(1))
}

fn is_expired(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        )
    )
}

/// The crate error inside a rejection by our verifier.
fn our_error(e: &rustls::Error) -> &Error {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<Error>().unwrap()
        }
        other => panic!("not a mesh verifier rejection: {other:?}"),
    }
}

#[test]
fn agent_connects_to_coordinator() {
    let prod = Mesh::new("prod");
    let out = handshake(agent_client(&prod, &prod), coordinator(&prod));
    assert!(
        out.succeeded(),
        "client {:?} server {:?}",
        out.client,
        out.server
    );
    let peer = peer_identity(out.server_conn.peer_certificates().unwrap()).unwrap();
    assert_eq!(peer.uri(), "spiffe://prod/agent/pc2");
    let server_id = peer_identity(out.client_conn.peer_certificates().unwrap()).unwrap();
    assert_eq!(server_id.uri(), "spiffe://prod/coordinator/main");
    assert_eq!(out.server_conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        out.client_conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn server_rejects_client_cert_from_another_ca() {
    let prod = Mesh::new("prod");
    for rogue_name in ["prod", "rogue"] {
        let rogue = Mesh::new(rogue_name);
        let out = handshake(agent_client(&rogue, &prod), coordinator(&prod));
        let err = out.server.unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            ),
            "{err:?}"
        );
    }
}

#[test]
fn server_rejects_expired_client_cert() {
    let prod = Mesh::new("prod");
    let leaf = prod.leaf("prod", Role::Agent, "pc2", past());
    let tls = MeshTls::from_pem(prod.ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem).unwrap();
    let client = tls.client_config(expect_coordinator(), &[]).unwrap();
    let out = handshake(client, coordinator(&prod));
    let err = out.server.unwrap_err();
    assert!(is_expired(&err), "{err:?}");
}

#[test]
fn server_rejects_client_without_cert() {
    let prod = Mesh::new("prod");
    let tls = prod.tls(&prod, "prod", Role::Agent, "pc2");
    let verifier = MeshServerVerifier::new(
        tls.roots.clone(),
        expect_coordinator(),
        provider().signature_verification_algorithms,
        Default::default(),
    );
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let out = handshake(Arc::new(client), coordinator(&prod));
    let err = out.server.unwrap_err();
    assert!(
        matches!(err, rustls::Error::NoCertificatesPresented),
        "{err:?}"
    );
}

#[test]
fn client_rejects_server_of_another_mesh() {
    let prod = Mesh::new("prod");
    let server = prod
        .tls(&prod, "other", Role::Coordinator, "x")
        .server_config(&[])
        .unwrap();
    let out = handshake(agent_client(&prod, &prod), server);
    let err = out.client.unwrap_err();
    assert!(matches!(our_error(&err), Error::PeerWrongMesh { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(
            "server identity spiffe://other/coordinator/x belongs to mesh 'other', \
             expected mesh 'prod'"
        ),
        "{msg}"
    );
}

#[test]
fn client_rejects_server_with_wrong_role() {
    let prod = Mesh::new("prod");
    let server = prod
        .tls(&prod, "prod", Role::Agent, "pc3")
        .server_config(&[])
        .unwrap();
    let out = handshake(agent_client(&prod, &prod), server);
    let err = out.client.unwrap_err();
    assert!(matches!(our_error(&err), Error::PeerWrongRole { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(
            "server identity spiffe://prod/agent/pc3 has role agent, expected coordinator"
        ),
        "{msg}"
    );
}

#[test]
fn client_rejects_server_from_another_ca_or_expired() {
    let prod = Mesh::new("prod");
    let rogue = Mesh::new("rogue");
    let out = handshake(agent_client(&prod, &prod), coordinator(&rogue));
    let err = out.client.unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );

    let leaf = prod.leaf("prod", Role::Coordinator, "main", past());
    let tls = MeshTls::from_pem(prod.ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem).unwrap();
    let out = handshake(agent_client(&prod, &prod), tls.server_config(&[]).unwrap());
    let err = out.client.unwrap_err();
    assert!(is_expired(&err), "{err:?}");
}

#[test]
fn load_from_files_and_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_dir(dir, "prod", 30, false).unwrap();
    let req = IssueRequest {
        role: Role::Agent,
        name: "pc2".to_string(),
        sans: vec![],
        days: 1,
        force: false,
    };
    issue_to_dir(dir, &req).unwrap();
    let files = TlsFiles::in_dir(dir, Role::Agent, "pc2");
    assert_eq!(files.ca, dir.join("ca.crt"));
    assert_eq!(files.cert, dir.join("agent-pc2.crt"));
    assert_eq!(files.key, dir.join("agent-pc2.key"));
    let tls = MeshTls::load(&files).unwrap();
    assert_eq!(tls.identity().uri(), "spiffe://prod/agent/pc2");

    std::fs::remove_file(&files.key).unwrap();
    let msg = MeshTls::load(&files).unwrap_err().to_string();
    assert!(msg.contains("agent-pc2.key"), "{msg}");
    assert!(msg.contains("--role agent --name pc2"), "{msg}");

    std::fs::write(&files.key, "garbage").unwrap();
    let msg = MeshTls::load(&files).unwrap_err().to_string();
    assert!(msg.contains("agent-pc2.key"), "{msg}");

    let missing = TlsFiles::in_dir(dir, Role::Admin, "alice");
    let msg = MeshTls::load(&missing).unwrap_err().to_string();
    assert!(msg.contains("admin-alice.crt"), "{msg}");
}

#[test]
fn from_pem_rejects_mismatched_key_and_peer_identity_needs_a_cert() {
    let prod = Mesh::new("prod");
    let a = prod.leaf("prod", Role::Agent, "a", Validity::days(1));
    let b = prod.leaf("prod", Role::Agent, "b", Validity::days(1));
    let err = MeshTls::from_pem(prod.ca.cert_pem(), &a.cert_pem, &b.key_pem).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    assert!(matches!(peer_identity(&[]), Err(Error::NoPeerCertificate)));
}

#[test]
fn revoked_serials_are_refused_both_ways_and_renewal_swaps_the_presented_key() {
    let prod = Mesh::new("prod");
    let agent = prod.tls(&prod, "prod", Role::Agent, "pc2");
    let coord = prod.tls(&prod, "prod", Role::Coordinator, "main");
    let client = agent.client_config(expect_coordinator(), &[]).unwrap();
    let server = coord.server_config(&[]).unwrap();
    assert!(handshake(client.clone(), server.clone()).succeeded());

    // The coordinator revokes the agent's serial: the same, already built
    // server configuration refuses it with the revoked alert.
    coord.revocations().add(&agent.leaf().unwrap().serial);
    let out = handshake(client.clone(), server.clone());
    assert!(
        matches!(
            out.server,
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        ),
        "{:?}",
        out.server
    );
    assert!(matches!(
        out.client,
        Err(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRevoked
        ))
    ));

    // The agent renews: the client config it already handed out presents
    // the new certificate, which is not revoked.
    let id = agent.identity().clone();
    let req = crate::csr::new_key_and_csr(&id).unwrap();
    let chain = prod
        .ca
        .sign_csr(&id, &req.csr_pem, Validity::days(1))
        .unwrap();
    agent.renew(&chain, &req.key_pem).unwrap();
    assert!(handshake(client.clone(), server.clone()).succeeded());

    // And the agent refuses a coordinator whose serial it holds revoked.
    agent.revocations().add(&coord.leaf().unwrap().serial);
    let out = handshake(client, server);
    assert!(
        matches!(
            out.client,
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        ),
        "{:?}",
        out.client
    );
}

#[test]
fn renews_two_thirds_into_the_lifetime() {
    use std::time::Duration as D;
    assert_eq!(renew_in(0, 30, 0), D::from_secs(20));
    assert_eq!(renew_in(0, 30, 15), D::from_secs(5));
    assert_eq!(renew_in(0, 30, 25), D::ZERO);
    assert_eq!(renew_in(100, 90, 100), D::ZERO);
}
