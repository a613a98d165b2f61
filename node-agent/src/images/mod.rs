//! Images copied between hosts (`meshctl images copy`): this agent serves its Podman's images
//! to other agents over the mutual-TLS tunnel (channel [`wire::CHANNEL`]) and, when the
//! coordinator asks ([`ImageCopy`]), pulls one from another agent into its own Podman,
//! reporting [`ImageCopyProgress`] on the session. See [`copy`] for what makes a copy safe.

pub mod copy;
pub mod libpod;
pub mod wire;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_proto::v1::agent_message::Body as AgentBody;
use mesh_proto::v1::{AgentMessage, ImageCopy, ImageCopyProgress};
use tokio::sync::mpsc;
use tracing::{info, info_span, warn, Instrument};

use crate::bridges::BridgeHost;
use copy::{ExportFaults, Progress, PullSpec};
use libpod::Libpod;

/// The stall limit when the coordinator gives none.
const DEFAULT_STALL: Duration = Duration::from_secs(15);

/// This agent's side of image copies.
pub struct ImageHost {
    pod: Libpod,
    bridges: Arc<BridgeHost>,
    /// Where copies run (not the agent's own thread: a copy moves gigabytes).
    runtime: tokio::runtime::Handle,
    jobs: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
}

impl ImageHost {
    /// Serves this host's images to other agents and readies pulls.
    pub fn start(
        podman_socket: &Path,
        bridges: Arc<BridgeHost>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<ImageHost> {
        let host = Arc::new(ImageHost {
            pod: Libpod::new(podman_socket),
            bridges,
            runtime,
            jobs: Mutex::default(),
        });
        let (pod, rt) = (host.pod.clone(), host.runtime.clone());
        let faults = ExportFaults::from_env();
        host.bridges
            .tunnels()
            .serve_channel(wire::CHANNEL, move |ch: mesh_bridge::Channel| {
                let (pod, rt) = (pod.clone(), rt.clone());
                let span = info_span!("image_export", peer = %ch.peer);
                async move {
                    let _ = rt
                        .spawn(copy::serve_export(ch, pod, faults).instrument(span))
                        .await;
                }
            });
        host
    }

    /// Starts (or cancels) the copy the coordinator asked for; its progress goes to `tx`.
    pub fn handle(self: &Arc<Self>, cmd: ImageCopy, tx: mpsc::Sender<AgentMessage>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|_, t| !t.is_finished());
        if cmd.cancel {
            if let Some(t) = jobs.remove(&cmd.id) {
                info!(id = cmd.id, "image copy cancelled");
                t.abort();
            }
            return;
        }
        let host = self.clone();
        let id = cmd.id;
        let span = info_span!("image_copy", image = %cmd.image, from = %cmd.from_node, id);
        let task = self
            .runtime
            .spawn(async move { host.run(cmd, tx).await }.instrument(span));
        jobs.insert(id, task.abort_handle());
    }

    async fn run(&self, cmd: ImageCopy, tx: mpsc::Sender<AgentMessage>) {
        let started = Instant::now();
        let base = ImageCopyProgress {
            id: cmd.id,
            from_node: cmd.from_node.clone(),
            ..Default::default()
        };
        let message = |p: ImageCopyProgress| AgentMessage {
            body: Some(AgentBody::ImageCopy(p)),
        };
        let result = match self.bridges.peer_addr(&cmd.from_node) {
            None => Err(format!(
                "no tunnel address for agent '{}' in the directory: is it connected (meshctl nodes)?",
                cmd.from_node
            )),
            Some(addr) => {
                let stall = match cmd.stall_timeout_ms {
                    0 => DEFAULT_STALL,
                    ms => Duration::from_millis(u64::from(ms)),
                };
                let tunnels = self.bridges.tunnels();
                let report = |p: Progress| {
                    // Progress must never hold up the session (heartbeats share it): when
                    // the queue is busy this report is skipped; the next one says more.
                    if tx.capacity() > 2 {
                        let _ = tx.try_send(message(ImageCopyProgress {
                            phase: p.phase.into(),
                            bytes: p.bytes,
                            total_bytes: p.total,
                            seconds: started.elapsed().as_secs_f64(),
                            ..base.clone()
                        }));
                    }
                };
                copy::pull(
                    PullSpec {
                        tunnels: &tunnels,
                        source: mesh_bridge::PeerAddr {
                            node: cmd.from_node.clone(),
                            addr,
                        },
                        pod: &self.pod,
                        stall,
                    },
                    &cmd.image,
                    report,
                )
                .await
            }
        };
        let last = match result {
            Ok(p) => {
                info!(
                    bytes = p.bytes,
                    seconds = started.elapsed().as_secs_f64(),
                    already = p.already_present,
                    "image copied"
                );
                ImageCopyProgress {
                    phase: "done".into(),
                    bytes: p.bytes,
                    total_bytes: p.bytes,
                    seconds: started.elapsed().as_secs_f64(),
                    done: true,
                    sha256: p.sha256,
                    loaded: p.loaded,
                    already_present: p.already_present,
                    ..base
                }
            }
            Err(error) => {
                warn!("image copy failed: {error}");
                ImageCopyProgress {
                    phase: "failed".into(),
                    seconds: started.elapsed().as_secs_f64(),
                    error,
                    ..base
                }
            }
        };
        let _ = tx.send(message(last)).await;
    }
}
