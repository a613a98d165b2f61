//! The agent stream: registration under the certificate's name, heartbeats
//! with inventory, acknowledgements back.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_certs::Role;
use mesh_proto::v1::agent_message::Body as AgentBody;
use mesh_proto::v1::agent_service_server::AgentService;
use mesh_proto::v1::coordinator_message::Body as CoordBody;
use mesh_proto::v1::{
    AgentMessage, CoordinatorMessage, HeartbeatAck, Registered, VolumeEventRequest,
    VolumeEventResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::decide::sync::Held;
use crate::rpc::auth;
use crate::state::registry::{Now, Registration, SessionId, Transition};
use crate::state::{Shared, VERSION};

/// An agent must say who it is promptly after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentApi {
    shared: Arc<Shared>,
}

impl AgentApi {
    pub fn new(shared: Arc<Shared>) -> AgentApi {
        AgentApi { shared }
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = OutStream;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let shared = &self.shared;
        let identity = auth::require(&request, Role::Agent, shared, "Connect")?;
        let peer_ip = request.remote_addr().map(|a| a.ip().to_string());
        let mut inbound = request.into_inner();

        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Register message within 10 s of connecting")
            })??;
        let register = match first.and_then(|m| m.body) {
            Some(AgentBody::Register(r)) => r,
            _ => {
                shared.metrics.count_call_refused("protocol");
                return Err(Status::invalid_argument(
                    "the first message on the agent stream must be Register",
                ));
            }
        };
        if register.node != identity.name {
            shared.metrics.count_call_refused("wrong_name");
            tracing::warn!(%identity, claimed = %register.node, "registration under another name refused");
            return Err(Status::permission_denied(format!(
                "certificate {identity} may only register as node '{}', not '{}'",
                identity.name, register.node
            )));
        }
        let address = if register.advertise_address.is_empty() {
            peer_ip.unwrap_or_default()
        } else {
            register.advertise_address.clone()
        };
        let registration = Registration {
            node: register.node.clone(),
            labels: register.labels.into_iter().collect::<BTreeMap<_, _>>(),
            agent_version: register.agent_version,
            address,
            heartbeat_interval: Duration::from_millis(u64::from(
                register.heartbeat_interval_ms.max(1),
            )),
            tunnel_port: u16::try_from(register.tunnel_port).unwrap_or(0),
        };
        let node = registration.node.clone();
        let (session, transition) = shared.registry().register(registration, Now::system());
        log_transition(shared, transition);

        let (tx, rx) = mpsc::channel(32);
        let registered = CoordinatorMessage {
            body: Some(CoordBody::Registered(Registered {
                mesh: shared.mesh.clone(),
                coordinator_version: VERSION.to_string(),
            })),
        };
        // Capacity 32 and nothing sent yet: this cannot block.
        let _ = tx.try_send(Ok(registered));
        shared.sessions.attach(&node, session, tx.clone());
        // The agent holds nothing yet: the directory, then its set.
        shared.sync_node(&node, Instant::now());
        let span = tracing::info_span!("agent_stream", node = %node, session);
        tokio::spawn(serve_stream(shared.clone(), node, session, inbound, tx).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew_certificate(
        &self,
        request: Request<mesh_proto::v1::RenewCertificateRequest>,
    ) -> Result<Response<mesh_proto::v1::RenewCertificateResponse>, Status> {
        let caller = auth::require(&request, Role::Agent, &self.shared, "RenewCertificate")?;
        let csr = request.into_inner().csr_pem;
        crate::rpc::identity_api::renew(&self.shared, &caller, &csr).map(Response::new)
    }

    async fn volume_event(
        &self,
        request: Request<VolumeEventRequest>,
    ) -> Result<Response<VolumeEventResponse>, Status> {
        let shared = &self.shared;
        let identity = auth::require(&request, Role::Agent, shared, "VolumeEvent")?;
        let req = request.into_inner();
        let _span = tracing::info_span!("volume_event", node = %identity.name, group = %req.group, volume = %req.volume).entered();
        // The record is committed before the answer leaves; a blocking
        // commit is short (one redb transaction).
        let answer = shared.volumes.event(&identity.name, &req);
        tracing::info!(kind = ?req.kind(), answer = ?answer.answer(), "volume event");
        if answer.answer() == mesh_proto::v1::VolumeEventAnswer::Recorded {
            let what = match req.kind() {
                mesh_proto::v1::VolumeEventKind::OutdateStandby => {
                    "its standby did not answer within the fsync bound: recorded Outdated, the primary goes on alone"
                }
                mesh_proto::v1::VolumeEventKind::StandbyUpToDate => {
                    "its standby finished its resync: recorded UpToDate"
                }
                mesh_proto::v1::VolumeEventKind::Unspecified => "changed",
            };
            shared.events.record(
                "volume",
                &identity.name,
                &req.group,
                format!(
                    "volume {}/{} on {}: {what}",
                    req.group, req.volume, identity.name
                ),
            );
        }
        Ok(Response::new(answer))
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    node: String,
    session: SessionId,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<CoordinatorMessage, Status>>,
) {
    tracing::info!("agent connected");
    let end = loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break "agent closed the stream".to_string(),
            Err(status) => break format!("stream error: {}", status.message()),
        };
        match message.body {
            Some(AgentBody::Heartbeat(hb)) => {
                shared.metrics.count_heartbeat();
                // 0: the agent applied no directory yet, or does not say
                // (no bridges, or an older agent). Directories are numbered
                // from the wall clock, so any it applied is above 0; one lost
                // on connect is sent again on reconnect, and one lost later
                // is repaired once it reports the one before.
                let held = Held {
                    directory: (hb.directory_generation != 0).then_some(hb.directory_generation),
                    desired: hb.containers.as_ref().map(|c| c.desired_generation),
                };
                for (group, message) in shared.volumes.report(&node, hb.volumes) {
                    shared.events.record("volume", &node, &group, message);
                }
                shared.traffic.report(
                    &node,
                    crate::state::traffic::NodeTraffic {
                        bridges: hb.bridges,
                        tunnels: hb.tunnels,
                        usage: hb.usage,
                    },
                );
                let result = shared.registry().heartbeat(
                    &node,
                    session,
                    hb.inventory,
                    hb.containers,
                    Now::system(),
                );
                match result {
                    Ok(transition) => log_transition(&shared, transition),
                    Err(e) => break e.to_string(),
                }
                // Whatever was lost on the way is sent again.
                shared.sessions.heard(&node, session, held);
                shared.sync_node(&node, Instant::now());
                let mut leases: Vec<mesh_proto::v1::LeaseGrant> = shared
                    .volumes
                    .records()
                    .values()
                    .filter(|r| r.replicate && r.primary == node)
                    .map(|r| mesh_proto::v1::LeaseGrant {
                        group: r.group.clone(),
                        epoch: r.epoch,
                    })
                    .collect();
                leases.dedup();
                let ack = CoordinatorMessage {
                    body: Some(CoordBody::HeartbeatAck(HeartbeatAck {
                        seq: hb.seq,
                        leases,
                    })),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break "agent stopped reading".to_string();
                }
            }
            Some(AgentBody::CommandResult(result)) => shared.sessions.complete(result),
            Some(AgentBody::CheckReport(report)) => shared.sessions.complete_check(report),
            Some(AgentBody::LogChunk(chunk)) => shared.sessions.log_chunk(chunk),
            Some(AgentBody::ImageCopy(p)) => shared.sessions.image_progress(p),
            Some(AgentBody::Register(_)) => {
                let _ = tx
                    .send(Err(Status::invalid_argument(
                        "Register sent twice on one stream",
                    )))
                    .await;
                break "Register sent twice".to_string();
            }
            None => {
                tracing::debug!("empty agent message ignored");
            }
        }
    };
    shared.sessions.detach(&node, session);
    shared.registry().disconnect(&node, session);
    tracing::info!(reason = %end, "agent stream ended");
}

pub fn log_transition(shared: &Shared, transition: Option<Transition>) {
    if let Some(t) = transition {
        shared.events.record(
            "node",
            &t.node,
            "",
            format!(
                "{} {} -> {}: {}",
                t.node,
                t.from.label(),
                t.to.label(),
                t.reason
            ),
        );
        tracing::info!(
            node = %t.node,
            from = t.from.label(),
            to = t.to.label(),
            reason = %t.reason,
            "node state changed"
        );
    }
}
