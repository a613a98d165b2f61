//! The agent's connection to the coordinator: connect over mutual TLS,
//! register, heartbeat, and reconnect with backoff whenever anything breaks.
//! Losing the coordinator never stops the agent (static stability).
//!
//! Heartbeats never wait for other agent work: the session loop only moves
//! messages. Directories and desired sets are applied by [`apply::Applier`]
//! in a task of its own; checks and commands run in tasks of their own;
//! inventory is collected apart and read from a watch. [`Agent::spawn`]
//! runs the session on a thread of its own, so even a busy or blocked agent
//! runtime cannot delay a heartbeat (failover leases depend on them).

pub mod apply;
pub mod renewal;

use std::sync::Arc;
use std::time::Duration;

use mesh_backoff::Backoff;
use mesh_certs::{MeshTls, PeerExpectation, Role};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::agent_message::Body as AgentBody;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::coordinator_message::Body as CoordBody;
use mesh_proto::v1::{AgentMessage, ContainerReport, Heartbeat, Register};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

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
    inventory: Option<InventorySource>,
    backoff: Backoff,
    options: ConnectOptions,
    manager: Option<ManagerLink>,
    bridges: Option<Arc<crate::bridges::BridgeHost>>,
    /// Image copies between hosts (None: no bridges, so no tunnel to copy over).
    images: Option<Arc<crate::images::ImageHost>>,
    usage: Option<watch::Receiver<Vec<mesh_proto::v1::ContainerUsage>>>,
    /// Follows container logs for `meshctl logs -f` (None: no runtime).
    logs: Option<Arc<dyn crate::runtime::LogFollower>>,
    volumes: Option<watch::Receiver<Vec<mesh_proto::v1::VolumeStatus>>>,
    /// The send time of the newest acknowledged heartbeat: the start of
    /// the coordinator's lease (failover groups fence themselves by it).
    lease: Arc<watch::Sender<Option<HeartbeatLease>>>,
    /// The latest inventory reading (heartbeats and the agent's /metrics).
    inventory_tx: Arc<watch::Sender<mesh_proto::v1::HostInventory>>,
    /// Renews the certificate over the session and refuses revoked peers.
    renewal: Option<renewal::Renewal>,
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
            inventory: Some(inventory),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
                .with_jitter(0.5),
            options: ConnectOptions::default(),
            manager: None,
            bridges: None,
            images: None,
            usage: None,
            logs: None,
            volumes: None,
            lease: Arc::new(watch::channel(None).0),
            inventory_tx: Arc::new(watch::channel(Default::default()).0),
            renewal: None,
        })
    }

    /// Containers: desired sets and commands go to `link`, and its
    /// reports ride on every heartbeat.
    pub fn with_manager(mut self, link: ManagerLink) -> Agent {
        self.manager = Some(link);
        self
    }

    /// Bridges: the directory goes to `host`, and checks run there.
    /// Each container's resource usage (see [`crate::usage`]), for the heartbeat.
    pub fn with_usage(
        mut self,
        usage: watch::Receiver<Vec<mesh_proto::v1::ContainerUsage>>,
    ) -> Agent {
        self.usage = Some(usage);
        self
    }

    /// Certificate renewal at two thirds of its lifetime, and the
    /// directory's revocation list applied to this agent's TLS.
    pub fn with_renewal(mut self, renewal: renewal::Renewal) -> Agent {
        self.renewal = Some(renewal);
        self
    }

    /// Where container logs are followed from (`meshctl logs -f`).
    pub fn with_logs(mut self, logs: Arc<dyn crate::runtime::LogFollower>) -> Agent {
        self.logs = Some(logs);
        self
    }

    /// Image copies: the coordinator's `ImageCopy` commands go to `images`.
    pub fn with_images(mut self, images: Arc<crate::images::ImageHost>) -> Agent {
        self.images = Some(images);
        self
    }

    pub fn with_bridges(mut self, host: Arc<crate::bridges::BridgeHost>) -> Agent {
        self.bridges = Some(host);
        self
    }

    /// The latest inventory reading (empty until the agent runs).
    pub fn inventory(&self) -> watch::Receiver<mesh_proto::v1::HostInventory> {
        self.inventory_tx.subscribe()
    }

    /// Where the coordinator's lease can be read (the send time of the
    /// newest acknowledged heartbeat).
    pub fn lease(&self) -> watch::Receiver<Option<HeartbeatLease>> {
        self.lease.subscribe()
    }

    /// Volumes: their states ride on every heartbeat.
    pub fn with_volumes(
        mut self,
        states: watch::Receiver<Vec<mesh_proto::v1::VolumeStatus>>,
    ) -> Agent {
        self.volumes = Some(states);
        self
    }

    /// Runs the agent's work (applying directories and desired sets,
    /// inventory, checks, commands) on the current runtime, and the
    /// coordinator session with its heartbeats on a thread of its own.
    /// Returns when `shutdown` is cancelled and the session has ended.
    pub async fn spawn(mut self, shutdown: CancellationToken) -> std::io::Result<()> {
        let work = Work::start(&mut self, &shutdown);
        let (done_tx, done_rx) = oneshot::channel();
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("mesh-session".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(self.run_with(work, stop)),
                    Err(e) => tracing::error!(error = %e, "cannot start the session runtime"),
                }
                let _ = done_tx.send(());
            })?;
        let _ = done_rx.await;
        Ok(())
    }

    /// Runs until `shutdown`, everything on the current runtime.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let work = Work::start(&mut self, &shutdown);
        self.run_with(work, shutdown).await
    }

    async fn run_with(mut self, work: Work, shutdown: CancellationToken) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.session(&work, &shutdown) => r,
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    // A session that got going resets the backoff.
                    if started.elapsed() > Duration::from_secs(10) {
                        attempt = 0;
                    }
                    let delay = self
                        .backoff
                        .jittered(attempt.saturating_add(1), rand::random::<f64>());
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

    async fn session(
        &mut self,
        work: &Work,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
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

        // Renewal rides on this connection and ends with it.
        let _renewal = self
            .renewal
            .clone()
            .map(|r| AbortOnDrop(tokio::spawn(renewal::run(client.clone(), r))));
        let silence_limit = (cfg.heartbeat * 10).max(Duration::from_secs(5));
        let mut ticker = tokio::time::interval(cfg.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut last_ack = Instant::now();
        // seq -> when it was sent, for the lease (a few beats at most).
        let mut sent: std::collections::VecDeque<(u64, mesh_volumes::lease_clock::LeaseInstant)> =
            std::collections::VecDeque::new();
        // A volume changing phase (a switchover's handover, an attach) is
        // reported at once, not at the next beat: the coordinator waits on it.
        let mut volumes = self.volumes.clone();
        let mut reported_phases = volume_phases(volumes.as_ref());
        // Logs followed for the coordinator, by its id; stopped with the session.
        let mut follows = Follows::default();
        loop {
            let volume_change = async {
                match volumes.as_mut() {
                    Some(v) => v.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ok = volume_change => {
                    if !ok {
                        volumes = None;
                        continue;
                    }
                    let now = volume_phases(volumes.as_ref());
                    if now == reported_phases {
                        continue;
                    }
                    reported_phases = now;
                    ticker.reset_immediately();
                }
                _ = ticker.tick() => {
                    if last_ack.elapsed() > silence_limit {
                        return Err(SessionError::Silent(last_ack.elapsed()));
                    }
                    seq += 1;
                    sent.push_back((seq, mesh_volumes::lease_clock::LeaseInstant::now()));
                    if sent.len() > 64 {
                        sent.pop_front();
                    }
                    let (bridges, tunnels) = match &self.bridges {
                        Some(b) => b.stats().await,
                        None => Default::default(),
                    };
                    let inventory = work.inventory.borrow().clone();
                    let mut usage = self.usage.as_ref().map(|u| u.borrow().clone()).unwrap_or_default();
                    if let Some(g) = &inventory.gpus {
                        crate::usage::attribute_gpu(&mut usage, &g.processes);
                    }
                    let hb = AgentMessage { body: Some(AgentBody::Heartbeat(Heartbeat {
                        seq,
                        inventory: Some(inventory),
                        containers: self.manager.as_ref().map(|m| m.report.borrow().clone()),
                        directory_generation: work.applier.applied_directory(),
                        volumes: self.volumes.as_ref().map(|v| v.borrow().clone()).unwrap_or_default(),
                        bridges,
                        tunnels,
                        usage,
                    }))};
                    // A full queue means the connection is stalled: skip
                    // this beat rather than pile up stale inventory.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(hb) {
                        return Err(SessionError::Broken("outbound stream closed".into()));
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(m)) => match m.body {
                        Some(CoordBody::HeartbeatAck(ack)) => {
                            last_ack = Instant::now();
                            while let Some(&(s, at)) = sent.front() {
                                if s > ack.seq {
                                    break;
                                }
                                sent.pop_front();
                                if s == ack.seq {
                                    self.lease.send_replace(Some(HeartbeatLease {
                                        sent: at,
                                        grants: ack
                                            .leases
                                            .iter()
                                            .map(|l| (l.group.clone(), l.epoch))
                                            .collect(),
                                    }));
                                }
                            }
                        }
                        Some(CoordBody::Desired(desired)) => {
                            tracing::info!(generation = desired.generation, containers = desired.containers.len(), "desired containers received");
                            work.applier.desired(desired);
                        }
                        Some(CoordBody::Command(command)) => self.forward_command(work, command, tx.clone()),
                        Some(CoordBody::Directory(directory)) => {
                            tracing::info!(generation = directory.generation, bridges = directory.bridges.len(), peers = directory.peers.len(), "bridge directory received");
                            if let Some(r) = &self.renewal {
                                r.tls.revocations().replace(directory.revoked_serials.iter().cloned());
                            }
                            work.applier.directory(directory);
                        }
                        Some(CoordBody::Check(request)) => self.run_check(work, request, tx.clone()),
                        Some(CoordBody::CopyImage(c)) => match &self.images {
                            Some(images) => images.handle(c, tx.clone()),
                            None => {
                                let _ = tx.try_send(AgentMessage {
                                    body: Some(AgentBody::ImageCopy(mesh_proto::v1::ImageCopyProgress {
                                        id: c.id,
                                        phase: "failed".into(),
                                        error: "this agent copies no images: its bridges (the tunnel images travel on) are off; set [bridge] enabled = true".into(),
                                        ..Default::default()
                                    })),
                                });
                            }
                        },
                        Some(CoordBody::FollowLogs(f)) => {
                            if f.stop {
                                follows.stop(f.id);
                            } else {
                                let task = self.follow_logs(work, f.clone(), tx.clone());
                                follows.0.retain(|_, t| !t.is_finished());
                                follows.0.insert(f.id, task);
                            }
                        }
                        _ => {}
                    },
                    Ok(None) => return Err(SessionError::Broken("coordinator closed the stream".into())),
                    Err(s) => return Err(SessionError::Broken(status_text(&s))),
                },
            }
        }
    }
}

/// Log follows under way on this session; aborted when it ends.
#[derive(Default)]
struct Follows(std::collections::HashMap<u64, tokio::task::AbortHandle>);

impl Follows {
    fn stop(&mut self, id: u64) {
        if let Some(t) = self.0.remove(&id) {
            t.abort();
        }
    }
}

impl Drop for Follows {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

/// The coordinator's lease, from its newest heartbeat acknowledgement:
/// when the acknowledged heartbeat was sent, and the (group, epoch) pairs
/// it renews (those this node is the primary of, by the coordinator's
/// records).
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatLease {
    pub sent: mesh_volumes::lease_clock::LeaseInstant,
    pub grants: Vec<(String, u64)>,
}

impl HeartbeatLease {
    /// Whether it holds for `group` at `epoch` within `limit`.
    pub fn holds(&self, group: &str, epoch: u64, limit: std::time::Duration) -> bool {
        self.sent.elapsed() < limit && self.grants.iter().any(|(g, e)| g == group && *e == epoch)
    }
}

/// What of the volumes' states the coordinator acts on.
fn volume_phases(
    v: Option<&watch::Receiver<Vec<mesh_proto::v1::VolumeStatus>>>,
) -> Vec<(String, String, i32, i32, u64, i32)> {
    v.map(|v| {
        v.borrow()
            .iter()
            .map(|s| {
                (
                    s.group.clone(),
                    s.name.clone(),
                    s.role,
                    s.phase,
                    s.epoch,
                    s.disk,
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Agent {
    /// Runs the connectivity checks without holding up the stream.
    /// Follows a container's log for the coordinator: its lines in chunks
    /// (a chunk at most every 100 ms or 200 lines), sent only while the
    /// outbound queue has room to spare, so a chatty log never holds up a
    /// heartbeat.
    fn follow_logs(
        &self,
        work: &Work,
        f: mesh_proto::v1::LogFollow,
        tx: mpsc::Sender<AgentMessage>,
    ) -> tokio::task::AbortHandle {
        use tokio_stream::StreamExt;
        let logs = self.logs.clone();
        let name = mesh_proto::spec::container_name(&f.container);
        work.runtime
            .spawn(async move {
                let chunk = |lines: Vec<String>, end: bool, error: String| AgentMessage {
                    body: Some(AgentBody::LogChunk(mesh_proto::v1::LogChunk {
                        id: f.id,
                        lines,
                        end,
                        error,
                    })),
                };
                let Some(logs) = logs else {
                    let _ = tx
                        .send(chunk(vec![], true, "this agent cannot follow logs".into()))
                        .await;
                    return;
                };
                let stream = logs.follow(&name, f.tail as usize);
                let mut batches =
                    std::pin::pin!(stream.chunks_timeout(200, Duration::from_millis(100)));
                while let Some(batch) = batches.next().await {
                    let mut lines = Vec::with_capacity(batch.len());
                    let mut failed = None;
                    for l in batch {
                        match l {
                            Ok(l) => lines.push(l),
                            Err(e) => failed = Some(e.to_string()),
                        }
                    }
                    // Leave the heartbeat its room in the queue.
                    while tx.capacity() < 2 {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let end = failed.is_some();
                    if tx
                        .send(chunk(lines, end, failed.unwrap_or_default()))
                        .await
                        .is_err()
                        || end
                    {
                        return;
                    }
                }
                let _ = tx.send(chunk(vec![], true, String::new())).await;
            })
            .abort_handle()
    }

    fn run_check(
        &self,
        work: &Work,
        request: mesh_proto::v1::CheckRequest,
        tx: mpsc::Sender<AgentMessage>,
    ) {
        let bridges = self.bridges.clone();
        let node = self.config.node.clone();
        work.runtime.spawn(async move {
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
        work: &Work,
        command: mesh_proto::v1::ContainerCommand,
        tx: mpsc::Sender<AgentMessage>,
    ) {
        let id = command.id;
        let inputs = self.manager.as_ref().map(|m| m.inputs.clone());
        work.runtime.spawn(async move {
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

/// The agent's work apart from the session: where it runs, the applier,
/// and the latest inventory.
struct Work {
    runtime: tokio::runtime::Handle,
    applier: apply::Applier,
    inventory: watch::Receiver<mesh_proto::v1::HostInventory>,
}

impl Work {
    /// Starts the applier and the inventory collection on the current
    /// runtime. Inventory is read once at once, then every heartbeat
    /// interval (NVML can be slow; a heartbeat sends the latest reading).
    fn start(agent: &mut Agent, shutdown: &CancellationToken) -> Work {
        let applier = apply::Applier::spawn(
            agent.bridges.clone(),
            agent.manager.as_ref().map(|m| m.inputs.clone()),
            shutdown.clone(),
        );
        let inventory_tx = agent.inventory_tx.clone();
        let inventory = inventory_tx.subscribe();
        if let Some(mut source) = agent.inventory.take() {
            inventory_tx.send_replace(source.collect());
            let every = agent.config.heartbeat;
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let (s, inv) = match tokio::task::spawn_blocking(move || {
                        let inv = source.collect();
                        (source, inv)
                    })
                    .await
                    {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "inventory collection failed; heartbeats carry the last reading");
                            return;
                        }
                    };
                    source = s;
                    inventory_tx.send_replace(inv);
                }
            });
        }
        Work {
            runtime: tokio::runtime::Handle::current(),
            applier,
            inventory,
        }
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

/// Aborts a task when dropped (a session's helpers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
