//! The container manager: makes Podman match the desired set the
//! coordinator sent (holds included), restarts with backoff, runs health
//! checks, executes commands, and publishes what really runs for the
//! heartbeats.
//!
//! It decides nothing itself: each container's lifecycle machine
//! (`containers::machine`) says what to do from what Podman shows, what
//! the desired set wants and the time; the manager runs those actions.
//! Slow ones (stop, kill, pause, restart, remove: up to Podman's stop
//! timeout) run in the background, so no command and no container holds
//! the loop up; their results come back as [`Finished`].
//!
//! What it must not do: create or remove anything before a desired set is
//! known; touch containers of another mesh; start a held container; change
//! anything because the coordinator is gone (the desired set is persisted,
//! so an agent that restarts without a coordinator adopts its containers
//! and keeps them as they were); read the clock other than through
//! `tokio::time`, so tests run in paused time.

mod commands;
mod execute;
mod health;
mod pass;
mod report;
#[cfg(test)]
mod tests;
pub mod tracked;
mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mesh_proto::v1::{
    CommandResult, ContainerCommand, ContainerReport, DesiredContainers, ImageSummary,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::ContainerRuntime;
use tracked::Tracked;

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub mesh: String,
    /// Where the last desired set is kept (desired.pb).
    pub state_dir: PathBuf,
    /// How often Podman is re-read and health checks are considered.
    pub tick: Duration,
}

/// How finely health-check intervals are honoured.
pub const HEALTH_RESOLUTION: Duration = Duration::from_millis(50);

pub enum Input {
    Desired(DesiredContainers),
    Command(ContainerCommand, oneshot::Sender<CommandResult>),
    /// A managed volume was attached on this host (group, volume).
    VolumeAttached(String, String),
    /// The group's lease is gone (true: kill its containers, keep them
    /// down) or back (false).
    Fence(String, bool),
}

pub struct Manager<R: ContainerRuntime + Clone + 'static> {
    runtime: R,
    config: ManagerConfig,
    desired: Option<DesiredContainers>,
    tracked: BTreeMap<String, Tracked>,
    images: Vec<ImageSummary>,
    images_refreshed: Option<Instant>,
    report: watch::Sender<ContainerReport>,
    /// Podman write calls made, for tests and benchmarks of idempotence.
    pub writes: u64,
    /// The last runtime error logged, so an outage is logged once, not every pass.
    runtime_error: Option<String>,
    /// What the last pass read from Podman, for health checks between passes.
    observed: Vec<crate::runtime::ObservedContainer>,
    /// Background operations report here when they end.
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
    /// Where managed volumes are assigned and found (None: no volumes here).
    volumes: Option<crate::volumes::VolumeLink>,
    /// (group, volume) -> when it was last attached (unix s).
    volume_attached_at: BTreeMap<(String, String), i64>,
    /// Groups without a lease: their containers are killed and kept down.
    pub(crate) fenced_groups: std::collections::BTreeSet<String>,
}

/// A background operation on a container ended.
#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub action: crate::containers::machine::Action,
    pub result: crate::runtime::Result<()>,
}

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    pub fn new(
        runtime: R,
        config: ManagerConfig,
    ) -> (Manager<R>, watch::Receiver<ContainerReport>) {
        let (report, rx) = watch::channel(ContainerReport::default());
        let desired = load_desired(&config.state_dir);
        if let Some(d) = &desired {
            tracing::info!(
                generation = d.generation,
                containers = d.containers.len(),
                "adopting the last desired set"
            );
        }
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let manager = Manager {
            runtime,
            config,
            desired,
            tracked: BTreeMap::new(),
            images: Vec::new(),
            images_refreshed: None,
            report,
            writes: 0,
            runtime_error: None,
            observed: Vec::new(),
            finished_tx,
            finished_rx,
            volumes: None,
            volume_attached_at: BTreeMap::new(),
            fenced_groups: Default::default(),
        };
        (manager, rx)
    }

    /// Managed volumes: each desired set's assignments go to `link`, and
    /// containers mount the volumes it has attached.
    pub fn with_volumes(mut self, link: crate::volumes::VolumeLink) -> Manager<R> {
        self.volumes = Some(link);
        self.push_assignments();
        self
    }

    fn push_assignments(&self) {
        if let (Some(link), Some(d)) = (&self.volumes, &self.desired) {
            link.assignments.send_if_modified(|current| {
                let changed = *current != d.volumes;
                if changed {
                    *current = d.volumes.clone();
                }
                changed
            });
        }
    }

    /// `spec` as Podman should create it: managed mounts resolved to their
    /// volumes' mount points, or why it must wait.
    pub(crate) fn resolve_mounts(
        &self,
        spec: &mesh_proto::v1::ContainerSpec,
    ) -> Result<mesh_proto::v1::ContainerSpec, String> {
        if !crate::volumes::VolumeMounts::uses(spec) {
            return Ok(spec.clone());
        }
        match &self.volumes {
            Some(link) => link.mounts.resolve(spec),
            None => Err(format!(
                "{} mounts a managed volume, but this agent runs without volumes",
                spec.name
            )),
        }
    }

    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Health checks keep their own intervals, finer than the reconcile
        // tick, so a service is seen healthy as soon as its check says so.
        let mut health_ticker = tokio::time::interval(HEALTH_RESOLUTION);
        health_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                input = inputs.recv() => match input {
                    None => return,
                    Some(Input::Desired(d)) => {
                        self.set_desired(d);
                        self.pass().await;
                    }
                    Some(Input::Command(c, reply)) => self.command(c, reply).await,
                    Some(Input::VolumeAttached(group, volume)) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        self.volume_attached(&group, &volume, now);
                        self.restart_stale_mounts();
                        self.pass().await;
                    }
                    Some(Input::Fence(group, fenced)) => {
                        let changed = if fenced {
                            self.fenced_groups.insert(group.clone())
                        } else {
                            self.fenced_groups.remove(&group)
                        };
                        if changed {
                            if fenced {
                                tracing::warn!(%group, "fenced: no lease; killing the group's containers");
                            } else {
                                tracing::info!(%group, "lease back: the group's containers may run");
                            }
                            self.pass().await;
                        }
                    }
                },
                Some(finished) = self.finished_rx.recv() => {
                    self.finish(finished, Instant::now());
                    self.pass().await;
                }
                _ = ticker.tick() => {
                    self.restart_stale_mounts();
                    self.pass().await
                }
                _ = health_ticker.tick() => self.health_pass().await,
            }
        }
    }

    /// Takes a new desired set unless it is older than the one we have.
    pub fn set_desired(&mut self, desired: DesiredContainers) {
        let current = self.desired.as_ref().map_or(0, |d| d.generation);
        if desired.generation < current {
            tracing::warn!(
                current,
                offered = desired.generation,
                "ignoring an older desired set"
            );
            return;
        }
        if let Err(e) = save_desired(&self.config.state_dir, &desired) {
            tracing::warn!(error = %e, "cannot persist the desired set; it holds until the agent restarts");
        }
        if self.desired.as_ref() != Some(&desired) {
            // Holds are desired state: a newer (or changed) set replaces
            // what commands set; the very same set again (a reconnect) does not.
            for t in self.tracked.values_mut() {
                t.command_hold = None;
            }
        }
        self.desired = Some(desired);
        self.push_assignments();
    }
}

fn desired_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("desired.pb")
}

fn load_desired(state_dir: &std::path::Path) -> Option<DesiredContainers> {
    let bytes = std::fs::read(desired_path(state_dir)).ok()?;
    match DesiredContainers::decode(bytes.as_slice()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "stored desired set is unreadable; waiting for the coordinator");
            None
        }
    }
}

fn save_desired(state_dir: &std::path::Path, desired: &DesiredContainers) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path = desired_path(state_dir);
    let tmp = path.with_extension("pb.tmp");
    std::fs::write(&tmp, desired.encode_to_vec())?;
    std::fs::rename(tmp, path)
}
