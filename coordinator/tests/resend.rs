//! A container set the agent never got is sent again by the coordinator
//! on the agent's heartbeats. Real coordinator, real mutual TLS over
//! loopback; the test plays the agent.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mesh_certs::{IssueRequest, MeshTls, PeerExpectation, Role, TlsFiles};
use mesh_coordinator::{Coordinator, Settings};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::agent_message::Body as AgentBody;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::coordinator_message::Body;
use mesh_proto::v1::{
    AgentMessage, ContainerReport, ContainerSpec, CoordinatorMessage, Heartbeat, Register,
    SetContainersRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

struct Pki(tempfile::TempDir);

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        mesh_certs::init_dir(dir.path(), "prod", 30, false).unwrap();
        let pki = Pki(dir);
        pki.issue(Role::Coordinator, "coordinator", &["127.0.0.1"]);
        pki.issue(Role::Admin, "admin", &[]);
        pki.issue(Role::Agent, "pc2", &[]);
        pki
    }

    fn issue(&self, role: Role, name: &str, sans: &[&str]) {
        let request = IssueRequest {
            role,
            name: name.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            days: 30,
            force: false,
        };
        mesh_certs::issue_to_dir(self.0.path(), &request).unwrap();
    }

    fn tls(&self, role: Role, name: &str) -> MeshTls {
        MeshTls::load(&TlsFiles::in_dir(self.0.path(), role, name)).unwrap()
    }

    fn client(&self, role: Role, name: &str) -> Arc<rustls::ClientConfig> {
        let expect = PeerExpectation {
            mesh: "prod".into(),
            role: Role::Coordinator,
        };
        self.tls(role, name)
            .client_config(expect, &[ALPN_H2])
            .unwrap()
    }
}

async fn channel(address: &str, tls: Arc<rustls::ClientConfig>) -> tonic::transport::Channel {
    transport::connect(address, tls, &ConnectOptions::default())
        .await
        .unwrap()
}

fn heartbeat(seq: u64, desired_generation: u64) -> AgentMessage {
    AgentMessage {
        body: Some(AgentBody::Heartbeat(Heartbeat {
            seq,
            containers: Some(ContainerReport {
                runtime_available: true,
                desired_generation,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// The next container set on the stream, skipping everything else.
async fn next_set(inbound: &mut tonic::Streaming<CoordinatorMessage>) -> u64 {
    loop {
        let message = inbound.message().await.unwrap().expect("stream open");
        if let Some(Body::Desired(d)) = message.body {
            return d.generation;
        }
    }
}

#[tokio::test]
async fn a_set_the_agent_did_not_get_is_sent_again_on_its_heartbeats() {
    let pki = Pki::new();
    let coordinator = Coordinator::new(
        &pki.tls(Role::Coordinator, "coordinator"),
        Settings::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(coordinator.serve(listener, shutdown));

    let mut agent =
        AgentServiceClient::new(channel(&address, pki.client(Role::Agent, "pc2")).await);
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentMessage {
        body: Some(AgentBody::Register(Register {
            node: "pc2".into(),
            heartbeat_interval_ms: 100,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = agent
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let mut admin =
        AdminServiceClient::new(channel(&address, pki.client(Role::Admin, "admin")).await);
    let set = admin
        .set_containers(SetContainersRequest {
            node: "pc2".into(),
            containers: vec![ContainerSpec {
                name: "mem".into(),
                image: "localhost/mesh-demo:latest".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(set.delivered);
    // The agent loses it (as if the stream had been cut mid-send)...
    assert_eq!(next_set(&mut inbound).await, set.generation);
    // ...and keeps saying it holds nothing: the coordinator sends it again.
    let beats = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        for seq in 1.. {
            interval.tick().await;
            if tx.send(heartbeat(seq, 0)).await.is_err() {
                return;
            }
        }
    });
    let again = tokio::time::timeout(Duration::from_secs(10), next_set(&mut inbound))
        .await
        .expect("the set is sent again within a few heartbeats");
    assert_eq!(again, set.generation);
    beats.abort();
}
