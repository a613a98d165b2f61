//! What the coordinator sends an agent: a container set or directory the
//! agent never got is sent again on its heartbeats, and an operator's hold
//! reaches it in its desired set before the command. Real coordinator, real mutual TLS over
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
    AgentMessage, CommandAction, CommandResult, ContainerReport, ContainerSpec, CoordinatorMessage,
    Heartbeat, Hold, Register, RunCommandRequest, SetContainersRequest,
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

fn heartbeat(seq: u64, desired_generation: u64, directory_generation: u64) -> AgentMessage {
    AgentMessage {
        body: Some(AgentBody::Heartbeat(Heartbeat {
            seq,
            directory_generation,
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

/// The next directory on the stream, skipping everything else.
async fn next_directory(inbound: &mut tonic::Streaming<CoordinatorMessage>) -> u64 {
    loop {
        let message = inbound.message().await.unwrap().expect("stream open");
        if let Some(Body::Directory(d)) = message.body {
            return d.generation;
        }
    }
}

/// Heartbeats every 100 ms reporting the given generations, until dropped.
fn beat(
    tx: mpsc::Sender<AgentMessage>,
    desired: u64,
    directory: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        for seq in 1.. {
            interval.tick().await;
            if tx.send(heartbeat(seq, desired, directory)).await.is_err() {
                return;
            }
        }
    })
}

struct Mesh {
    pki: Pki,
    address: String,
    _stop: tokio_util::sync::DropGuard,
}

async fn mesh() -> Mesh {
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
    Mesh {
        pki,
        address,
        _stop,
    }
}

/// Connects as agent pc2: the sender for its messages, the stream to it.
async fn agent(
    mesh: &Mesh,
) -> (
    mpsc::Sender<AgentMessage>,
    tonic::Streaming<CoordinatorMessage>,
) {
    let mut agent =
        AgentServiceClient::new(channel(&mesh.address, mesh.pki.client(Role::Agent, "pc2")).await);
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
    let inbound = agent
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, inbound)
}

#[tokio::test]
async fn a_set_the_agent_did_not_get_is_sent_again_on_its_heartbeats() {
    let mesh = mesh().await;
    let (tx, mut inbound) = agent(&mesh).await;
    let mut admin = AdminServiceClient::new(
        channel(&mesh.address, mesh.pki.client(Role::Admin, "admin")).await,
    );
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
    let beats = beat(tx, 0, 0);
    let again = tokio::time::timeout(Duration::from_secs(10), next_set(&mut inbound))
        .await
        .expect("the set is sent again within a few heartbeats");
    assert_eq!(again, set.generation);
    beats.abort();
}

#[tokio::test]
async fn a_directory_the_agent_did_not_apply_is_sent_again_on_its_heartbeats() {
    let mesh = mesh().await;
    let (tx, mut inbound) = agent(&mesh).await;
    // Sent on connect; the agent loses it and reports an older one.
    let sent = next_directory(&mut inbound).await;
    assert!(sent > 1, "numbered from the wall clock: {sent}");
    let beats = beat(tx, 0, sent - 1);
    let again = tokio::time::timeout(Duration::from_secs(10), next_directory(&mut inbound))
        .await
        .expect("the directory is sent again within a few heartbeats");
    assert_eq!(again, sent);
    beats.abort();
}

#[tokio::test]
async fn a_stop_reaches_the_agent_as_a_held_set_before_the_command() {
    let mesh = mesh().await;
    let (tx, mut inbound) = agent(&mesh).await;
    let mut admin = AdminServiceClient::new(
        channel(&mesh.address, mesh.pki.client(Role::Admin, "admin")).await,
    );
    let spec = |name: &str| ContainerSpec {
        name: name.into(),
        image: "localhost/mesh-demo:latest".into(),
        ..Default::default()
    };
    let set = admin
        .set_containers(SetContainersRequest {
            node: "pc2".into(),
            containers: vec![spec("mem"), spec("web")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_set(&mut inbound).await, set.generation);
    let stop = tokio::spawn(async move {
        admin
            .run_command(RunCommandRequest {
                node: "pc2".into(),
                container: "mem".into(),
                action: CommandAction::Stop as i32,
                tail: 0,
            })
            .await
    });
    // The next message after the set is the held set, then the command.
    let held = loop {
        let message = inbound.message().await.unwrap().expect("stream open");
        match message.body {
            Some(Body::Desired(d)) => break d,
            Some(Body::Command(c)) => panic!("command {c:?} before the held set"),
            _ => {}
        }
    };
    assert!(held.generation > set.generation);
    let holds: Vec<(String, Hold)> = held
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.hold()))
        .collect();
    assert_eq!(
        holds,
        vec![("mem".into(), Hold::Stopped), ("web".into(), Hold::None)]
    );
    let command = loop {
        let message = inbound.message().await.unwrap().expect("stream open");
        if let Some(Body::Command(c)) = message.body {
            break c;
        }
    };
    assert_eq!(command.action(), CommandAction::Stop);
    tx.send(AgentMessage {
        body: Some(AgentBody::CommandResult(CommandResult {
            id: command.id,
            ok: true,
            message: "stopped".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let result = stop.await.unwrap().unwrap().into_inner();
    assert!(result.ok);
}
