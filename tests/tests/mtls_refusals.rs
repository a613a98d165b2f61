//! Nothing gets in without a mesh certificate, and roles are enforced per
//! RPC. Each refusal is asserted exactly, and none changes the
//! coordinator's state. Real TLS 1.3 over loopback, in-process coordinator.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mesh_certs::{CertificateAuthority, Identity, MeshTls, PeerExpectation, Role, Validity};
use mesh_coordinator::{state::Shared, Coordinator, Settings};
use mesh_proto::transport::{self, error_chain, ConnectOptions, ALPN_H2};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::agent_message::Body;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::{AgentMessage, ListNodesRequest, Register};
use mesh_tests::pki::Pki;
use tokio_util::sync::CancellationToken;

struct Running {
    address: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    pki: Pki,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Running {
    let pki = Pki::new("prod");
    pki.issue(Role::Coordinator, "coordinator", &["127.0.0.1"]);
    pki.issue(Role::Admin, "admin", &[]);
    pki.issue(Role::Agent, "pc2", &[]);
    let coordinator = Coordinator::new(
        &pki.tls(Role::Coordinator, "coordinator"),
        Settings::default(),
    )
    .expect("coordinator");
    let shared = coordinator.shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(coordinator.serve(listener, shutdown.clone()));
    Running {
        address,
        shared,
        shutdown,
        pki,
    }
}

fn expect_coordinator(tls: &MeshTls) -> Arc<rustls::ClientConfig> {
    tls.client_config(
        PeerExpectation {
            mesh: tls.identity().mesh.clone(),
            role: Role::Coordinator,
        },
        &[ALPN_H2],
    )
    .unwrap()
}

/// ListNodes with the given client TLS config; the error text on refusal.
async fn list_nodes(address: &str, tls: Arc<rustls::ClientConfig>) -> Result<usize, String> {
    let channel = transport::connect(address, tls, &ConnectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut client = AdminServiceClient::new(channel);
    match client.list_nodes(ListNodesRequest {}).await {
        Ok(r) => Ok(r.into_inner().nodes.len()),
        Err(status) => Err(status_text(&status)),
    }
}

fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}

/// Opens the agent stream with `tls`, registering as `node`.
async fn register(address: &str, tls: Arc<rustls::ClientConfig>, node: &str) -> Result<(), String> {
    let channel = transport::connect(address, tls, &ConnectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(AgentMessage {
        body: Some(Body::Register(Register {
            node: node.into(),
            heartbeat_interval_ms: 500,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    let first = inbound.message().await.map_err(|s| status_text(&s))?;
    drop(tx);
    first.map(|_| ()).ok_or_else(|| "stream closed".into())
}

/// The coordinator's state that no refused caller may change.
fn state_of(r: &Running) -> (u32, u32, u32, u32) {
    let reg = r.shared.registry();
    let (ready, suspect, down) = reg.counts();
    (ready, suspect, down, reg.open_sessions())
}

fn admin(r: &Running) -> Arc<rustls::ClientConfig> {
    expect_coordinator(&r.pki.tls(Role::Admin, "admin"))
}

#[tokio::test]
async fn valid_agent_registers_and_admin_sees_it() {
    let r = start().await;
    let agent = expect_coordinator(&r.pki.tls(Role::Agent, "pc2"));
    register(&r.address, agent, "pc2").await.unwrap();
    assert_eq!(list_nodes(&r.address, admin(&r)).await, Ok(1));
}

#[tokio::test]
async fn no_client_certificate_is_refused_at_handshake() {
    let r = start().await;
    let before = state_of(&r);
    let ca = std::fs::read(r.pki.dir().join("ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    let err = list_nodes(&r.address, Arc::new(config)).await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
    assert_eq!(state_of(&r), before);
    assert!(r.shared.metrics.connections_refused() >= 1);
    refused_for(&r, "no_certificate").await;
}

/// Waits (bounded) until a connection refusal for `reason` is counted.
async fn refused_for(r: &Running, reason: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let by = r.shared.metrics.connections_refused_by_reason();
        if by.get(reason).is_some_and(|n| *n >= 1) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal counted for {reason}: {by:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let r = start().await;
    let before = state_of(&r);
    let other = Pki::new("prod"); // same mesh name, different CA
    other.issue(Role::Admin, "admin", &[]);
    other.issue(Role::Agent, "pc2", &[]);
    // The impostor must also trust our coordinator to get as far as the handshake.
    let ours_ca = std::fs::read_to_string(r.pki.dir().join("ca.crt")).unwrap();
    let impostor = |role, name: &str| {
        let (crt, key) = mesh_certs::store::leaf_paths(other.dir(), role, name);
        let tls = MeshTls::from_pem(
            &ours_ca,
            &std::fs::read_to_string(crt).unwrap(),
            &std::fs::read_to_string(key).unwrap(),
        )
        .unwrap();
        expect_coordinator(&tls)
    };
    let err = list_nodes(&r.address, impostor(Role::Admin, "admin"))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    let err = register(&r.address, impostor(Role::Agent, "pc2"), "pc2")
        .await
        .unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    assert_eq!(state_of(&r), before);
    refused_for(&r, "unknown_ca").await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let r = start().await;
    let before = state_of(&r);
    let ca_pem = std::fs::read_to_string(r.pki.dir().join("ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(r.pki.dir().join("ca.key")).unwrap();
    let ca = CertificateAuthority::load(&ca_pem, &ca_key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let leaf = ca
        .issue(
            &Identity::new("prod", Role::Admin, "admin").unwrap(),
            &[],
            Validity::between(
                now - time::Duration::days(10),
                now - time::Duration::days(1),
            ),
        )
        .unwrap();
    let tls = MeshTls::from_pem(&ca_pem, &leaf.cert_pem, &leaf.key_pem).unwrap();
    let err = list_nodes(&r.address, expect_coordinator(&tls))
        .await
        .unwrap_err();
    assert!(err.contains("CertificateExpired"), "{err}");
    assert_eq!(state_of(&r), before);
    refused_for(&r, "expired").await;
}

#[tokio::test]
async fn agent_certificate_cannot_call_admin_rpc() {
    let r = start().await;
    let before = state_of(&r);
    let agent = expect_coordinator(&r.pki.tls(Role::Agent, "pc2"));
    let err = list_nodes(&r.address, agent).await.unwrap_err();
    assert_eq!(
        err,
        "PermissionDenied: ListNodes needs a certificate with role admin; spiffe://prod/agent/pc2 has role agent"
    );
    assert_eq!(state_of(&r), before);
    assert_eq!(r.shared.metrics.calls_refused(), 1);
    assert_eq!(r.shared.metrics.calls_refused_by_reason()["wrong_role"], 1);
    // The refusal is in the event history, with who and why.
    let events = r.shared.events.list(&Default::default()).unwrap();
    assert!(
        events.iter().any(|e| e.kind == "admin"
            && e.message.starts_with("ListNodes refused:")
            && e.message.contains("spiffe://prod/agent/pc2")),
        "{events:?}"
    );
    // An allowed read is not recorded.
    list_nodes(&r.address, admin(&r)).await.unwrap();
    let after = r.shared.events.list(&Default::default()).unwrap();
    assert_eq!(after.len(), events.len(), "{after:?}");
}

#[tokio::test]
async fn admin_certificate_cannot_open_agent_stream() {
    let r = start().await;
    let before = state_of(&r);
    let err = register(&r.address, admin(&r), "admin").await.unwrap_err();
    assert_eq!(
        err,
        "PermissionDenied: Connect needs a certificate with role agent; spiffe://prod/admin/admin has role admin"
    );
    assert_eq!(state_of(&r), before);
}

#[tokio::test]
async fn agent_cannot_register_under_another_name() {
    let r = start().await;
    let before = state_of(&r);
    let agent = expect_coordinator(&r.pki.tls(Role::Agent, "pc2"));
    let err = register(&r.address, agent, "mainpc").await.unwrap_err();
    assert_eq!(
        err,
        "PermissionDenied: certificate spiffe://prod/agent/pc2 may only register as node 'pc2', not 'mainpc'"
    );
    assert_eq!(state_of(&r), before);
    assert_eq!(list_nodes(&r.address, admin(&r)).await, Ok(0));
}

#[tokio::test]
async fn agent_refuses_coordinator_of_another_mesh() {
    // A coordinator whose certificate says mesh "lab", signed by our CA.
    let pki = Pki::new("prod");
    pki.issue(Role::Agent, "pc2", &[]);
    let ca_pem = std::fs::read_to_string(pki.dir().join("ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(pki.dir().join("ca.key")).unwrap();
    let ca = CertificateAuthority::load(&ca_pem, &ca_key).unwrap();
    let foreign = ca
        .issue(
            &Identity::new("lab", Role::Coordinator, "coordinator").unwrap(),
            &[],
            Validity::days(1),
        )
        .unwrap();
    let foreign_tls = MeshTls::from_pem(&ca_pem, &foreign.cert_pem, &foreign.key_pem).unwrap();
    let coordinator = Coordinator::new(&foreign_tls, Settings::default()).unwrap();
    let shared = coordinator.shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(coordinator.serve(listener, shutdown.clone()));

    let agent = expect_coordinator(&pki.tls(Role::Agent, "pc2"));
    let err = register(&address, agent, "pc2").await.unwrap_err();
    assert!(
        err.contains("spiffe://lab/coordinator/coordinator")
            && err.contains("expected mesh 'prod'"),
        "{err}"
    );
    assert_eq!(shared.registry().counts(), (0, 0, 0));

    // And a coordinator from another CA altogether is not trusted at all.
    let other = Pki::new("prod");
    other.issue(Role::Coordinator, "coordinator", &[]);
    let other_coordinator = Coordinator::new(
        &other.tls(Role::Coordinator, "coordinator"),
        Settings::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_address = listener.local_addr().unwrap().to_string();
    tokio::spawn(other_coordinator.serve(listener, shutdown.clone()));
    let agent = expect_coordinator(&pki.tls(Role::Agent, "pc2"));
    let err = register(&other_address, agent, "pc2").await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    shutdown.cancel();
}

#[tokio::test]
async fn coordinator_refuses_to_start_with_a_non_coordinator_certificate() {
    let pki = Pki::new("prod");
    pki.issue(Role::Agent, "pc2", &[]);
    let err = Coordinator::new(&pki.tls(Role::Agent, "pc2"), Settings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("needs a certificate with role coordinator"),
        "{err}"
    );
}
