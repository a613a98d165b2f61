//! The agent's connection to the coordinator: connect over mutual TLS,
//! register, heartbeat, and reconnect with backoff whenever anything breaks.
//! Losing the coordinator never stops the agent (static stability).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_certs::{MeshTls, PeerExpectation, Role};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::agent_message::Body as AgentBody;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::coordinator_message::Body as CoordBody;
use mesh_proto::v1::{AgentMessage, ContainerReport, Heartbeat, Register};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::inventory::InventorySource;
use crate::manager::Input;

/// The agent's link to its container manager, when it has one.
pub struct ManagerLink {
    pub inputs: mpsc::Sender<Input>,
    pub report: watch::Receiver<ContainerReport>,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("coordinator refused the agent stream: {0}")]
    Refused(String),
    #[error("agent stream broke: {0}")]
    Broken(String),
    #[error("no acknowledgement from the coordinator for {0:?}; reconnecting")]
    Silent(Duration),
}

pub struct Agent {
    config: Config,
    client_tls: Arc<rustls::ClientConfig>,
    inventory: InventorySource,
    backoff: Backoff,
    options: ConnectOptions,
    manager: Option<ManagerLink>,
    bridges: Option<Arc<crate::bridges::BridgeHost>>,
}

impl Agent {
    pub fn new(
        config: Config,
        tls: &MeshTls,
        inventory: InventorySource,
    ) -> Result<Agent, mesh_certs::Error> {
        let expect = PeerExpectation {
            mesh: tls.identity().mesh.clone(),
            role: Role::Coordinator,
        };
        Ok(Agent {
            client_tls: tls.client_config(expect, &[ALPN_H2])?,
            config,
            inventory,
            backoff: Backoff::default(),
            options: ConnectOptions::default(),
            manager: None,
            bridges: None,
        })
    }

    /// Containers: desired sets and commands go to `link`, and its
    /// reports ride on every heartbeat.
    pub fn with_manager(mut self, link: ManagerLink) -> Agent {
        self.manager = Some(link);
        self
    }

    /// Bridges: the directory goes to `host`, and checks run there.
    pub fn with_bridges(mut self, host: Arc<crate::bridges::BridgeHost>) -> Agent {
        self.bridges = Some(host);
        self
    }

    /// Runs until `shutdown`: one session after another.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.session(&shutdown) => r,
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    // A session that got going resets the backoff.
                    if started.elapsed() > Duration::from_secs(10) {
                        attempt = 0;
                    }
                    let delay = self.backoff.delay(attempt, rand::random::<f64>());
                    attempt = attempt.saturating_add(1);
                    let hint = transport::explain(&e.to_string());
                    tracing::warn!(error = %e, hint = hint.unwrap_or(""), retry_in = ?delay, "coordinator session ended");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        let cfg = &self.config;
        let channel =
            transport::connect(&cfg.coordinator, self.client_tls.clone(), &self.options).await?;
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<AgentMessage>(4);
        let register = AgentMessage {
            body: Some(AgentBody::Register(Register {
                node: cfg.node.clone(),
                labels: cfg.labels.clone().into_iter().collect(),
                agent_version: VERSION.to_string(),
                advertise_address: cfg.advertise_address.clone(),
                heartbeat_interval_ms: cfg.heartbeat.as_millis() as u32,
                tunnel_port: self
                    .bridges
                    .as_ref()
                    .map_or(0, |b| u32::from(b.tunnel_port())),
            })),
        };
        tx.try_send(register)
            .map_err(|e| SessionError::Broken(e.to_string()))?;
        let mut inbound = client
            .connect(ReceiverStream::new(rx))
            .await
            .map_err(|s| SessionError::Refused(status_text(&s)))?
            .into_inner();
        match inbound.message().await {
            Ok(Some(m)) => match m.body {
                Some(CoordBody::Registered(r)) => tracing::info!(
                    mesh = %r.mesh,
                    coordinator_version = %r.coordinator_version,
                    "registered with coordinator"
                ),
                other => {
                    return Err(SessionError::Broken(format!(
                        "expected Registered, got {other:?}"
                    )))
                }
            },
            Ok(None) => {
                return Err(SessionError::Broken(
                    "stream closed before Registered".into(),
                ))
            }
            Err(s) => return Err(SessionError::Refused(status_text(&s))),
        }

        let silence_limit = (cfg.heartbeat * 10).max(Duration::from_secs(5));
        let mut ticker = tokio::time::interval(cfg.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut last_ack = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {
                    if last_ack.elapsed() > silence_limit {
                        return Err(SessionError::Silent(last_ack.elapsed()));
                    }
                    seq += 1;
                    let hb = AgentMessage { body: Some(AgentBody::Heartbeat(Heartbeat {
                        seq,
                        inventory: Some(self.inventory.collect()),
                        containers: self.manager.as_ref().map(|m| m.report.borrow().clone()),
                        directory_generation: 0,
                    }))};
                    // A full queue means the connection is stalled: skip
                    // this beat rather than pile up stale inventory.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(hb) {
                        return Err(SessionError::Broken("outbound stream closed".into()));
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(m)) => match m.body {
                        Some(CoordBody::HeartbeatAck(_)) => last_ack = Instant::now(),
                        Some(CoordBody::Desired(desired)) => {
                            tracing::info!(generation = desired.generation, containers = desired.containers.len(), "desired containers received");
                            match &self.manager {
                                Some(link) => {
                                    let _ = link.inputs.send(Input::Desired(desired)).await;
                                }
                                None => tracing::warn!("this agent runs no container manager; desired set ignored"),
                            }
                        }
                        Some(CoordBody::Command(command)) => self.forward_command(command, tx.clone()),
                        Some(CoordBody::Directory(directory)) => {
                            tracing::info!(generation = directory.generation, bridges = directory.bridges.len(), peers = directory.peers.len(), "bridge directory received");
                            // Applied before the next message: the coordinator
                            // sends a directory before the desired set that goes
                            // with it, and a service moving onto this host needs
                            // its bridge endpoint's port back before its
                            // container can publish it.
                            if let Some(b) = &self.bridges {
                                b.apply(directory).await;
                            }
                        }
                        Some(CoordBody::Check(request)) => self.run_check(request, tx.clone()),
                        _ => {}
                    },
                    Ok(None) => return Err(SessionError::Broken("coordinator closed the stream".into())),
                    Err(s) => return Err(SessionError::Broken(status_text(&s))),
                },
            }
        }
    }
}

impl Agent {
    /// Runs the connectivity checks without holding up the stream.
    fn run_check(&self, request: mesh_proto::v1::CheckRequest, tx: mpsc::Sender<AgentMessage>) {
        let bridges = self.bridges.clone();
        let node = self.config.node.clone();
        tokio::spawn(async move {
            let report = match bridges {
                Some(b) => b.check(&request).await,
                None => mesh_proto::v1::CheckReport {
                    id: request.id,
                    node,
                    ..Default::default()
                },
            };
            let _ = tx
                .send(AgentMessage {
                    body: Some(AgentBody::CheckReport(report)),
                })
                .await;
        });
    }

    /// Runs a command through the manager without holding up the stream,
    /// and sends the result back when it is done.
    fn forward_command(
        &self,
        command: mesh_proto::v1::ContainerCommand,
        tx: mpsc::Sender<AgentMessage>,
    ) {
        let id = command.id;
        let inputs = self.manager.as_ref().map(|m| m.inputs.clone());
        tokio::spawn(async move {
            let result = match inputs {
                None => mesh_proto::v1::CommandResult {
                    id,
                    ok: false,
                    message: "this agent runs no container manager".into(),
                    lines: vec![],
                },
                Some(inputs) => {
                    let (reply, rx) = oneshot::channel();
                    if inputs.send(Input::Command(command, reply)).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            let _ = tx
                .send(AgentMessage {
                    body: Some(AgentBody::CommandResult(result)),
                })
                .await;
        });
    }
}

fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&transport::error_chain(source));
    }
    text
}
