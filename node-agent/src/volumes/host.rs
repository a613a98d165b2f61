//! Runs the volume steps on this host and reports each volume's state.
//!
//! Attaching is slow (mkfs, e2fsck, losetup, mount) and runs on blocking
//! threads; a failed attach is retried after [`RETRY_AFTER`], its error
//! reported meanwhile. The replication tasks run on the runtime given at
//! start (the agent gives volumes a multi-thread runtime of their own, so
//! a busy container manager cannot stall a standby's acknowledgements).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bridge::PeerAddr;
use mesh_proto::v1::{
    DiskState as WireDisk, ReplicationStanding, VolumeAssignment, VolumePhase, VolumeRole,
    VolumeStatus,
};
use mesh_volumes::lease_clock::LeaseInstant;
use mesh_volumes::local::{LocalVolume, VolumeConfig, WriteSink};
use mesh_volumes::replication::transport::{channel_name, serve_standby_from, StandbyHandle};
use mesh_volumes::replication::{
    DiskState, PrimaryConfig, ReplicatingSink, SinkConfig, Standby, Standing, VolumeIdentity,
};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::coordinator::{CoordinatorLink, RpcCoordinator};
use super::plan::{plan, Step};
use super::switch::SwitchSink;
use super::{assignment_id, VolumeMounts};
use crate::bridges::BridgeHost;

/// Replication block: the unit of checksums, resync and dirty tracking.
pub const BLOCK_SIZE: u32 = 64 << 10;
/// Bytes a primary may have sent and the standby not yet acknowledged
/// (the backpressure bound). 1 MiB: three volumes under a write burst
/// peaked at 53 MiB with their standbys, 122 MiB with 8 MiB, for 2 points
/// of throughput (BENCHMARKS.md, "Volume I/O").
pub const INFLIGHT_BYTES: u64 = 1 << 20;
/// How long a failed attach waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct VolumeHostConfig {
    pub state_dir: PathBuf,
    /// How long an fsync waits for an unreachable standby before the
    /// coordinator is asked to outdate it.
    pub fsync_bound: Duration,
    /// How often assignments are reconciled and states reported.
    pub every: Duration,
}

struct Primary {
    assignment: VolumeAssignment,
    volume: Option<LocalVolume>,
    switch: Arc<SwitchSink>,
    sink: Option<Arc<ReplicatingSink>>,
    mount_point: PathBuf,
}

struct Serving {
    assignment: VolumeAssignment,
    handle: Arc<StandbyHandle<File>>,
}

/// A primary detached in a switchover, every write on the standby (or,
/// with `error`, not: the coordinator must not promote then).
struct HandedOver {
    assignment: VolumeAssignment,
    durable_seq: u64,
    error: Option<String>,
}

enum Held {
    Primary(Box<Primary>),
    Standby(Serving),
    HandedOver(HandedOver),
}

impl Held {
    fn assignment(&self) -> &VolumeAssignment {
        match self {
            Held::Primary(p) => &p.assignment,
            Held::Standby(s) => &s.assignment,
            Held::HandedOver(h) => &h.assignment,
        }
    }
}

struct Failure {
    assignment: VolumeAssignment,
    at: Instant,
    error: String,
}

pub struct VolumeHost {
    cfg: VolumeHostConfig,
    bridges: Option<Arc<BridgeHost>>,
    coordinator: Arc<CoordinatorLink>,
    mounts: VolumeMounts,
    runtime: Handle,
    held: BTreeMap<String, Held>,
    failed: BTreeMap<String, Failure>,
    /// Why this host cannot attach volumes at all (no root, no /dev/fuse,
    /// a tool missing), checked once at start.
    unavailable: Option<String>,
    status: watch::Sender<Vec<VolumeStatus>>,
    /// Told of every attach, so it restarts containers on a dead mount.
    manager: Option<tokio::sync::mpsc::Sender<crate::manager::Input>>,
    /// The send time of the newest heartbeat the coordinator acknowledged.
    lease: Option<watch::Receiver<Option<crate::session::HeartbeatLease>>>,
    /// Primaries fenced for want of a lease: id -> when.
    fenced: BTreeMap<String, Instant>,
    /// A standby released to become primary: id -> when the lease it may
    /// have granted the old primary ends (not attached before).
    granted_until: BTreeMap<String, LeaseInstant>,
    /// Primaries whose lease ran out while fencing is disabled (logged once).
    unfenced: std::collections::BTreeSet<String>,
}

impl VolumeHost {
    /// Cleans up what a killed agent left behind (logged), and checks what
    /// attaching needs. `runtime` runs the replication tasks.
    pub fn new(
        cfg: VolumeHostConfig,
        bridges: Option<Arc<BridgeHost>>,
        coordinator: Arc<CoordinatorLink>,
        mounts: VolumeMounts,
        runtime: Handle,
    ) -> (VolumeHost, watch::Receiver<Vec<VolumeStatus>>) {
        let unavailable = mesh_volumes::local::check_prerequisites()
            .err()
            .map(|e| format!("this host cannot attach volumes: {e}"));
        if unavailable.is_none() {
            match mesh_volumes::local::cleanup_stale(&cfg.state_dir) {
                Ok(cleaned) => {
                    for c in &cleaned {
                        warn!(cleaned = %c, "cleaned up after an agent that died with volumes attached");
                    }
                }
                Err(e) => warn!(error = %e, "cleaning up stale volume mounts failed"),
            }
        }
        let (status, rx) = watch::channel(Vec::new());
        (
            VolumeHost {
                cfg,
                bridges,
                coordinator,
                mounts,
                runtime,
                held: BTreeMap::new(),
                failed: BTreeMap::new(),
                unavailable,
                status,
                manager: None,
                lease: None,
                fenced: BTreeMap::new(),
                granted_until: BTreeMap::new(),
                unfenced: Default::default(),
            },
            rx,
        )
    }

    /// Reads the coordinator's lease from `lease` (failover groups run
    /// only while it, or their standby's, holds).
    pub fn with_lease(
        mut self,
        lease: watch::Receiver<Option<crate::session::HeartbeatLease>>,
    ) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Whether the coordinator's lease (from the newest acknowledged
    /// heartbeat) holds for `a`: its send time is younger than lease -
    /// margin, and the acknowledgement granted it for `a`'s group at
    /// `a`'s epoch (a replaced primary gets no grant). A volume without a
    /// lease (not replicated) always holds.
    fn heartbeat_lease(&self, a: &VolumeAssignment) -> bool {
        let Some(limit) = lease_limit(a) else {
            return true;
        };
        self.lease.as_ref().is_some_and(|l| {
            l.borrow()
                .as_ref()
                .is_some_and(|l| l.holds(&a.group, a.epoch, limit))
        })
    }

    /// Fences every replicated primary whose leases (the coordinator's
    /// and its standby's) have both run out: its containers are killed
    /// (and kept down), then the volume is detached.
    async fn check_leases(&mut self) {
        let expired: Vec<(String, VolumeAssignment)> = self
            .held
            .iter()
            .filter_map(|(id, h)| match h {
                Held::Primary(p) => {
                    let limit = lease_limit(&p.assignment)?;
                    let grant = p.sink.as_ref().and_then(|s| s.status().last_grant);
                    let standby_lease = grant.is_some_and(|g| g.elapsed() < limit);
                    (!standby_lease && !self.heartbeat_lease(&p.assignment))
                        .then(|| (id.clone(), p.assignment.clone()))
                }
                Held::Standby(_) | Held::HandedOver(_) => None,
            })
            .collect();
        if fencing_disabled() {
            for (id, a) in expired {
                if self.unfenced.insert(id) {
                    warn!(group = %a.group, volume = %a.name, "MESH_UNSAFE_DISABLE_FENCING: no lease from the coordinator or the standby, and NOT fencing (a negative control; never in production)");
                }
            }
            return;
        }
        for (id, a) in expired {
            warn!(group = %a.group, volume = %a.name, "no lease from the coordinator or the standby: fencing (failing the volume's I/O, killing the group's containers, detaching the volume)");
            // First the I/O: a writer blocked in an fsync for the standby
            // gets EIO now and can die; nothing more is written.
            if let Some(Held::Primary(p)) = self.held.get(&id) {
                p.switch.switch(Arc::new(super::switch::FencedSink));
                if let Some(s) = &p.sink {
                    s.fence();
                }
            }
            if let Some(m) = &self.manager {
                let _ = m
                    .send(crate::manager::Input::Fence(a.group.clone(), true))
                    .await;
            }
            self.fenced.insert(id.clone(), Instant::now());
            self.release(&id).await;
        }
    }

    /// Tells `manager` of every attach.
    pub fn with_manager(
        mut self,
        manager: tokio::sync::mpsc::Sender<crate::manager::Input>,
    ) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Follows the assignments until `shutdown`. Attached volumes stay as
    /// they are when the agent stops (the containers may still use them);
    /// the next start cleans up and attaches again.
    pub async fn run(
        mut self,
        mut assignments: watch::Receiver<Vec<VolumeAssignment>>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.cfg.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease_tick = tokio::time::interval(LEASE_CHECK);
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A volume waiting for a lease to attach tries again as soon as one
        // comes (a promotion is granted with the next heartbeat ack).
        let mut lease_changes = self.lease.clone();
        loop {
            let lease_changed = async {
                match lease_changes.as_mut() {
                    Some(l) => l.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = assignments.changed() => if changed.is_err() { break },
                ok = lease_changed => {
                    if !ok {
                        lease_changes = None;
                        continue;
                    }
                    if self.failed.is_empty() {
                        continue;
                    }
                }
                _ = tick.tick() => {}
                _ = lease_tick.tick() => {
                    self.check_leases().await;
                    // A handover waits for the containers to go: try
                    // again soon rather than on the next slow tick.
                    if !self.handover_pending(&assignments.borrow()) {
                        continue;
                    }
                }
            }
            let desired = assignments.borrow_and_update().clone();
            self.reconcile(&desired).await;
            self.publish();
        }
        // Keep the FUSE servers alive until the process ends.
        std::mem::forget(self.held);
    }

    async fn reconcile(&mut self, desired: &[VolumeAssignment]) {
        self.failed
            .retain(|id, _| desired.iter().any(|a| assignment_id(a) == *id));
        let held: BTreeMap<String, VolumeAssignment> = self
            .held
            .iter()
            .map(|(id, h)| (id.clone(), h.assignment().clone()))
            .collect();
        for step in plan(&held, desired) {
            match step {
                Step::Release(id) => self.release(&id).await,
                Step::Attach(a) => self.attach(a).await,
                Step::Serve(a) => self.serve(a).await,
                Step::Repoint(a) => self.repoint(a),
                Step::HandOver(a) => self.hand_over(a).await,
            }
        }
        // A standby whose address was unknown at attach gets its sink now.
        let waiting: Vec<VolumeAssignment> = self
            .held
            .values()
            .filter_map(|h| match h {
                Held::Primary(p) if p.sink.is_none() && wants_sink(&p.assignment) => {
                    Some(p.assignment.clone())
                }
                _ => None,
            })
            .collect();
        for a in waiting {
            self.repoint(a);
        }
    }

    /// Whether a primary is assigned to hand over and has not yet.
    fn handover_pending(&self, desired: &[VolumeAssignment]) -> bool {
        desired.iter().any(|a| {
            a.handover
                && matches!(self.held.get(&assignment_id(a)), Some(Held::Primary(p)) if !p.assignment.handover)
        })
    }

    /// A switchover's step on the primary: once the group's containers
    /// are gone, detach (the unmount's last writes still go through the
    /// sink), wait until the standby has flushed every write, then stop
    /// replicating and hold the volume as handed over. While containers
    /// still use it, it stays attached and this is tried again.
    async fn hand_over(&mut self, a: VolumeAssignment) {
        let id = assignment_id(&a);
        let sink = match self.held.get(&id) {
            Some(Held::Primary(p)) => p.sink.clone(),
            _ => return,
        };
        let Some(sink) = sink else {
            warn!(group = %a.group, volume = %a.name, "cannot hand over: not replicating to the standby; the switchover waits (and is called off by the coordinator if this lasts)");
            return;
        };
        let Some(Held::Primary(mut p)) = self.held.remove(&id) else {
            return;
        };
        let Some(mut volume) = p.volume.take() else {
            self.held.insert(id, Held::Primary(p));
            return;
        };
        self.mounts.set(&a.group, &a.name, None);
        let flush = sink.clone();
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = volume.detach() {
                return (Some(volume), Err(e.to_string()));
            }
            let flushed = flush
                .fsync()
                .map_err(|e| format!("flushing the last writes to the standby failed: {e}"));
            (None, flushed)
        })
        .await;
        let (volume, result) = match done {
            Ok(r) => r,
            Err(e) => (None, Err(format!("the handover task failed: {e}"))),
        };
        if let Some(volume) = volume {
            // Still in use: the containers are not gone yet.
            tracing::debug!(volume = %id, error = ?result.err(), "handover: the volume is still in use");
            p.volume = Some(volume);
            self.mounts
                .set(&a.group, &a.name, Some(p.mount_point.clone()));
            self.held.insert(id, Held::Primary(p));
            return;
        }
        let durable_seq = sink.status().durable_seq;
        sink.close();
        p.switch.switch(Arc::new(super::switch::FencedSink));
        match &result {
            Ok(()) => {
                info!(group = %a.group, volume = %a.name, durable_seq, "handed over: detached, every write flushed to the standby")
            }
            Err(e) => {
                warn!(group = %a.group, volume = %a.name, error = %e, "handover incomplete: detached, but the standby may miss writes; the volume stays here")
            }
        }
        self.held.insert(
            id,
            Held::HandedOver(HandedOver {
                assignment: a,
                durable_seq,
                error: result.err(),
            }),
        );
    }

    /// Whether setting `a` up may be tried now.
    fn due(&mut self, a: &VolumeAssignment) -> bool {
        let id = assignment_id(a);
        if let Some(reason) = self.unavailable.clone() {
            if !self.failed.contains_key(&id) {
                self.fail(a.clone(), reason);
            }
            return false;
        }
        self.failed
            .get(&id)
            .is_none_or(|f| f.at.elapsed() >= RETRY_AFTER)
    }

    fn fail(&mut self, a: VolumeAssignment, error: String) {
        warn!(group = %a.group, volume = %a.name, %error, "volume not set up");
        self.failed.insert(
            assignment_id(&a),
            Failure {
                assignment: a,
                at: Instant::now(),
                error,
            },
        );
    }

    /// Reports `a` as not set up yet, for `why`, and tries again next time.
    fn waiting(&mut self, a: VolumeAssignment, why: &str) {
        let at = Instant::now()
            .checked_sub(RETRY_AFTER)
            .unwrap_or_else(Instant::now);
        self.failed.insert(
            assignment_id(&a),
            Failure {
                assignment: a,
                at,
                error: why.to_string(),
            },
        );
    }

    async fn attach(&mut self, a: VolumeAssignment) {
        let id = assignment_id(&a);
        if !self.due(&a) {
            return;
        }
        if !self.heartbeat_lease(&a) {
            // A failover group's primary starts only on a fresh lease (an
            // agent back from a crash or a partition may have been replaced).
            self.waiting(
                a,
                "waiting for a lease from the coordinator (a heartbeat acknowledgement) before attaching as the primary",
            );
            return;
        }
        if let Some(until) = self.granted_until.get(&id).copied() {
            // This standby may have granted the old primary a lease: wait
            // it out, so the old primary has fenced itself first (unless it
            // handed the volume over in a switchover).
            let left = until.saturating_duration_since(LeaseInstant::now());
            if !left.is_zero() && !a.clean_handover {
                info!(volume = %id, wait_ms = left.as_millis() as u64, "promoted: waiting out the lease this standby granted the old primary");
                tokio::time::sleep(left).await;
            }
            self.granted_until.remove(&id);
        }
        let config = VolumeConfig::new(&id, a.size_bytes, &self.cfg.state_dir);
        let switch = Arc::new(SwitchSink::local());
        let sink: Arc<dyn WriteSink> = switch.clone();
        let import = a.import_from.clone();
        let existing = a.existing;
        let standby = a.peer.clone();
        let attached = tokio::task::spawn_blocking(move || {
            if existing && !config.image_path().exists() {
                return Err(format!(
                    "the image {} is missing, but this volume was attached here before; not starting an empty volume{}; put the image back (or fail the group over to its standby)",
                    config.image_path().display(),
                    if standby.is_empty() {
                        String::new()
                    } else {
                        format!(" that would be synced over the data on the standby {standby}")
                    }
                ));
            }
            let image = open_image(&config)?;
            let volume = LocalVolume::attach(&config, sink).map_err(|e| e.to_string())?;
            let formatted = volume.report().is_some_and(|r| r.formatted);
            if formatted && !import.is_empty() {
                if let Err(e) = import_into(Path::new(&import), volume.mount_point()) {
                    let mut volume = volume;
                    let _ = volume.detach();
                    // Formatted but not seeded: start from a blank image next time.
                    let _ = std::fs::remove_file(config.image_path());
                    return Err(e);
                }
            }
            Ok::<_, String>((volume, image))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the attach task failed: {e}")));
        match attached {
            Ok((volume, image)) => {
                let mount_point = volume.mount_point().to_path_buf();
                info!(group = %a.group, volume = %a.name, mount_point = %mount_point.display(), "volume attached as primary");
                self.failed.remove(&id);
                self.mounts
                    .set(&a.group, &a.name, Some(mount_point.clone()));
                let mut p = Primary {
                    assignment: a.clone(),
                    volume: Some(volume),
                    switch,
                    sink: None,
                    mount_point,
                };
                if wants_sink(&a) {
                    p.sink = self.start_sink(&a, image);
                    if let (Some(s), Some(limit)) = (&p.sink, lease_limit(&a)) {
                        s.start_keepalive(limit / 4);
                    }
                    if let Some(s) = &p.sink {
                        p.switch.switch(s.clone());
                    }
                }
                self.fenced.remove(&id);
                self.held.insert(id, Held::Primary(Box::new(p)));
                if let Some(m) = &self.manager {
                    // Attached on a fresh lease: a group this host fenced
                    // earlier (it was cut off, then failed back here) may run.
                    let _ = m
                        .send(crate::manager::Input::Fence(a.group.clone(), false))
                        .await;
                    let _ = m
                        .send(crate::manager::Input::VolumeAttached(
                            a.group.clone(),
                            a.name.clone(),
                        ))
                        .await;
                }
            }
            Err(e) => self.fail(a, e),
        }
    }

    /// Starts replicating to the assignment's peer, if its tunnel address is
    /// known (else the next reconcile tries again).
    fn start_sink(&self, a: &VolumeAssignment, image: File) -> Option<Arc<ReplicatingSink>> {
        let bridges = self.bridges.as_ref()?;
        let addr = bridges.peer_addr(&a.peer)?;
        let id = assignment_id(a);
        let cfg = SinkConfig {
            primary: PrimaryConfig {
                identity: identity(a),
                max_inflight_bytes: INFLIGHT_BYTES,
                max_inflight_writes: 256,
                fsync_bound: self.cfg.fsync_bound,
                coordinator_retry: Duration::from_secs(1),
            },
            epoch: a.epoch,
            next_seq: 1,
            standby_outdated: a.standby_outdated,
            open_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            reconnect_delay: Duration::from_millis(500),
        };
        let coordinator = Arc::new(RpcCoordinator {
            link: self.coordinator.clone(),
            volume: a.name.clone(),
        });
        let peer = PeerAddr {
            node: a.peer.clone(),
            addr,
        };
        match ReplicatingSink::start(
            cfg,
            image,
            bridges.tunnels(),
            peer,
            coordinator,
            self.runtime.clone(),
        ) {
            Ok(s) => {
                info!(volume = %id, standby = %a.peer, "replicating to the standby");
                Some(Arc::new(s))
            }
            Err(e) => {
                warn!(volume = %id, error = %e, "cannot start replicating");
                None
            }
        }
    }

    /// Points an attached primary at its (new) standby, or at none.
    fn repoint(&mut self, a: VolumeAssignment) {
        let id = assignment_id(&a);
        let image = match File::options()
            .read(true)
            .open(VolumeConfig::new(&id, a.size_bytes, &self.cfg.state_dir).image_path())
        {
            Ok(f) => f,
            Err(e) => {
                warn!(volume = %id, error = %e, "cannot open the image to replicate it");
                return;
            }
        };
        let sink = if wants_sink(&a) {
            self.start_sink(&a, image)
        } else {
            None
        };
        let Some(Held::Primary(p)) = self.held.get_mut(&id) else {
            return;
        };
        let next: Arc<dyn WriteSink> = match &sink {
            Some(s) => s.clone(),
            None => Arc::new(mesh_volumes::local::LocalSink),
        };
        if sink.is_none() && wants_sink(&a) {
            // Not started (address unknown): keep the old target meanwhile.
            return;
        }
        p.switch.switch(next);
        if let Some(old) = std::mem::replace(&mut p.sink, sink) {
            old.close();
        }
        p.assignment = a;
    }

    async fn serve(&mut self, a: VolumeAssignment) {
        let id = assignment_id(&a);
        if !self.due(&a) {
            return;
        }
        let Some(bridges) = self.bridges.clone() else {
            self.fail(
                a,
                "this host has no tunnel endpoint (bridges are disabled), so it cannot be a standby; enable [bridge] in agent.toml".into(),
            );
            return;
        };
        let config = VolumeConfig::new(&id, a.size_bytes, &self.cfg.state_dir);
        let ident = identity(&a);
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(config.dir()).map_err(|e| e.to_string())?;
            Standby::open(&config.image_path(), &state_path(&config), ident)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the standby task failed: {e}")));
        match opened {
            Ok(standby) => {
                let handle = {
                    let _enter = self.runtime.enter();
                    serve_standby_from(
                        &bridges.tunnels(),
                        &id,
                        standby,
                        Duration::from_secs(5),
                        Some(a.peer.clone()),
                    )
                };
                info!(group = %a.group, volume = %a.name, primary = %a.peer, "serving as the standby");
                self.failed.remove(&id);
                self.held.insert(
                    id,
                    Held::Standby(Serving {
                        assignment: a,
                        handle,
                    }),
                );
            }
            Err(e) => self.fail(a, e),
        }
    }

    async fn release(&mut self, id: &str) {
        let Some(held) = self.held.remove(id) else {
            return;
        };
        match held {
            Held::HandedOver(_) => info!(volume = %id, "handed over: released"),
            Held::Standby(s) => {
                if let Some(b) = &self.bridges {
                    b.tunnels().stop_channel(&channel_name(id));
                }
                // A stream still open from the old primary applies nothing more.
                s.handle.stop();
                if let (Some(g), Some(ms)) = (
                    s.handle.last_grant(),
                    (s.assignment.lease_ms > 0).then_some(s.assignment.lease_ms),
                ) {
                    self.granted_until
                        .insert(id.to_string(), g + Duration::from_millis(u64::from(ms)));
                }
                info!(volume = %id, "no longer the standby here");
                drop(s);
            }
            Held::Primary(mut p) => {
                self.mounts
                    .set(&p.assignment.group, &p.assignment.name, None);
                if let Some(s) = p.sink.take() {
                    s.close();
                }
                let Some(mut volume) = p.volume.take() else {
                    return;
                };
                let detached = tokio::task::spawn_blocking(move || {
                    let r = volume.detach();
                    (volume, r)
                })
                .await;
                match detached {
                    Ok((_, Ok(()))) => info!(volume = %id, "volume detached"),
                    Ok((volume, Err(e))) => {
                        // Still in use (a container not gone yet): keep it
                        // and try again at the next reconcile.
                        warn!(volume = %id, error = %e, "cannot detach yet");
                        self.mounts.set(
                            &p.assignment.group,
                            &p.assignment.name,
                            Some(p.mount_point.clone()),
                        );
                        p.volume = Some(volume);
                        self.held.insert(id.to_string(), Held::Primary(p));
                    }
                    Err(e) => warn!(volume = %id, error = %e, "the detach task failed"),
                }
            }
        }
    }

    fn publish(&self) {
        let mut out: Vec<VolumeStatus> = self.held.values().map(status_of).collect();
        for f in self.failed.values() {
            out.push(VolumeStatus {
                group: f.assignment.group.clone(),
                name: f.assignment.name.clone(),
                role: f.assignment.role,
                phase: VolumePhase::Failed as i32,
                epoch: f.assignment.epoch,
                size_bytes: f.assignment.size_bytes,
                error: f.error.clone(),
                ..Default::default()
            });
        }
        self.status.send_replace(out);
    }
}

/// Test-only fault injection for the checker's negative control: with
/// `MESH_UNSAFE_DISABLE_FENCING=1` a primary whose leases ran out goes on
/// (two writers become possible, which the control must detect).
fn fencing_disabled() -> bool {
    std::env::var("MESH_UNSAFE_DISABLE_FENCING").is_ok_and(|v| v == "1")
}

/// How often the leases of replicated primaries are checked.
const LEASE_CHECK: Duration = Duration::from_millis(100);

/// lease - margin for a replicated primary the coordinator could replace
/// (a standby that is not Outdated); None otherwise: with no standby to
/// promote, a lost coordinator must not stop the group.
fn lease_limit(a: &VolumeAssignment) -> Option<Duration> {
    (a.replicate && a.lease_ms > 0 && !a.peer.is_empty() && !a.standby_outdated)
        .then(|| Duration::from_millis(u64::from(a.lease_ms.saturating_sub(a.fence_margin_ms))))
}

fn wants_sink(a: &VolumeAssignment) -> bool {
    a.replicate && !a.peer.is_empty()
}

fn identity(a: &VolumeAssignment) -> VolumeIdentity {
    VolumeIdentity {
        volume_id: assignment_id(a),
        group: a.group.clone(),
        size_bytes: a.size_bytes,
        block_size: BLOCK_SIZE,
    }
}

fn state_path(config: &VolumeConfig) -> PathBuf {
    config.dir().join("replica.state")
}

/// Opens the image for the sink's resync reads, creating it sparse at the
/// volume's size when missing (an existing one of another size is left
/// for the attach to refuse, naming both sizes).
fn open_image(config: &VolumeConfig) -> Result<File, String> {
    std::fs::create_dir_all(config.dir())
        .map_err(|e| format!("creating {}: {e}", config.dir().display()))?;
    let path = config.image_path();
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("reading {}: {e}", path.display()))?
        .len();
    if len == 0 {
        f.set_len(config.size)
            .map_err(|e| format!("sizing {}: {e}", path.display()))?;
    }
    Ok(f)
}

/// Seeds a new volume from a host directory (`cp -a SRC/. MOUNT/`).
fn import_into(source: &Path, mount_point: &Path) -> Result<(), String> {
    if !source.is_dir() {
        return Err(format!(
            "cannot seed the volume: {} is not a directory on this host; give an existing directory as `import`",
            source.display()
        ));
    }
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", source.display()))
        .arg(mount_point)
        .output()
        .map_err(|e| format!("cannot run cp to seed the volume: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "seeding the volume from {} failed (is it larger than the volume?): {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    rustix::fs::sync();
    Ok(())
}

fn used_bytes(mount_point: &Path) -> u64 {
    match rustix::fs::statvfs(mount_point) {
        Ok(s) => s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize,
        Err(_) => 0,
    }
}

fn wire_disk(d: DiskState) -> (WireDisk, u64, u64) {
    match d {
        DiskState::UpToDate => (WireDisk::UpToDate, 0, 0),
        DiskState::Outdated => (WireDisk::Outdated, 0, 0),
        DiskState::Inconsistent {
            done_blocks,
            total_blocks,
        } => (WireDisk::Inconsistent, done_blocks, total_blocks),
    }
}

fn status_of(h: &Held) -> VolumeStatus {
    match h {
        Held::Primary(p) => {
            let a = &p.assignment;
            let mut s = VolumeStatus {
                group: a.group.clone(),
                name: a.name.clone(),
                role: VolumeRole::Primary as i32,
                phase: VolumePhase::Attached as i32,
                disk: WireDisk::UpToDate as i32,
                epoch: a.epoch,
                size_bytes: a.size_bytes,
                used_bytes: used_bytes(&p.mount_point),
                mount_point: p.mount_point.display().to_string(),
                standing: ReplicationStanding::Local as i32,
                ..Default::default()
            };
            if a.replicate && a.peer.is_empty() {
                s.error = "no standby is Ready: writes are on this host only".into();
            }
            if let Some(sink) = &p.sink {
                let st = sink.status();
                s.connected = st.connected;
                s.lag_writes = st.inflight_writes;
                s.lag_bytes = st.inflight_bytes;
                s.last_fsync_us = st.last_fsync.map_or(0, |d| d.as_micros() as u64);
                s.fsync_bucket_le_us = mesh_bridge::RTT_BUCKETS_US.to_vec();
                s.fsync_bucket_counts = st.fsyncs.buckets.to_vec();
                s.fsync_count = st.fsyncs.count;
                s.fsync_sum_us = st.fsyncs.sum_us;
                s.last_seq = st.last_seq;
                s.durable_seq = st.durable_seq;
                s.standing = if st.fenced {
                    ReplicationStanding::Fenced
                } else {
                    match st.standing {
                        Standing::InSync if st.synced == Some(true) => ReplicationStanding::InSync,
                        Standing::InSync => ReplicationStanding::Resyncing,
                        Standing::OutdatePending { .. } => ReplicationStanding::OutdatePending,
                        Standing::Outdated => ReplicationStanding::Alone,
                    }
                } as i32;
                if let Some((done, total)) = st.resync {
                    s.resync_done_blocks = done;
                    s.resync_total_blocks = total;
                }
                if let Some(e) = st.last_refusal.or(st.last_error).filter(|_| !st.connected) {
                    s.error = e;
                }
            } else if a.replicate && !a.peer.is_empty() {
                s.error = format!(
                    "the tunnel address of the standby {} is not known yet",
                    a.peer
                );
            }
            s
        }
        Held::HandedOver(h) => {
            let a = &h.assignment;
            VolumeStatus {
                group: a.group.clone(),
                name: a.name.clone(),
                role: VolumeRole::Primary as i32,
                phase: if h.error.is_some() {
                    VolumePhase::Failed
                } else {
                    VolumePhase::HandedOver
                } as i32,
                disk: WireDisk::UpToDate as i32,
                epoch: a.epoch,
                size_bytes: a.size_bytes,
                durable_seq: h.durable_seq,
                last_seq: h.durable_seq,
                error: h.error.clone().unwrap_or_default(),
                ..Default::default()
            }
        }
        Held::Standby(sv) => {
            let a = &sv.assignment;
            let meta = sv.handle.lock().meta().clone();
            let (disk, done, total) = wire_disk(meta.disk);
            VolumeStatus {
                group: a.group.clone(),
                name: a.name.clone(),
                role: VolumeRole::Standby as i32,
                phase: VolumePhase::Serving as i32,
                disk: disk as i32,
                resync_done_blocks: done,
                resync_total_blocks: total,
                epoch: meta.epoch,
                size_bytes: a.size_bytes,
                primary_ack_age_ms: sv
                    .handle
                    .last_grant()
                    .map(|g| g.elapsed().as_millis() as u64),
                ..Default::default()
            }
        }
    }
}
