//! The container-runtime seam. [`podman::PodmanRuntime`] talks to a real
//! Podman over its REST API; tests of the logic above it use
//! [`fake::FakeRuntime`] (with `cfg(test)` or the `test-util` feature).
//! Errors are values that say what to fix, never panics.

pub mod create;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod podman;
pub mod service;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use mesh_proto::v1::ContainerSpec;

use crate::containers::reconcile::Observed;

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    pub id: String,
    /// Podman's name (`mesh-NAME`).
    pub podman_name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Podman's state word: created, running, paused, exited, ...
    pub status: String,
    pub exit_code: i64,
    pub started_at: i64,
}

impl ObservedContainer {
    /// The reconcile view, if this container carries ownership labels.
    pub fn owned(&self) -> Option<Observed> {
        use crate::containers::spec::*;
        let label = |k: &str| self.labels.get(k).cloned();
        Some(Observed {
            name: label(LABEL_NAME)?,
            mesh: label(LABEL_MESH)?,
            spec_hash: label(LABEL_SPEC_HASH).unwrap_or_default(),
            generation: label(LABEL_GENERATION)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            state: crate::containers::lifecycle::from_podman(&self.status, self.exit_code),
            exit_code: self.exit_code,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub names: Vec<String>,
    pub size_bytes: u64,
}

/// One container's resource usage as the runtime measures it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSample {
    pub id: String,
    /// Percent of one CPU.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub pids: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeInfo {
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("Podman API at {socket} is not answering ({reason}); start it with `podman system service --time=0 unix://{socket}` (or `systemctl start podman.socket`)")]
    Unavailable { socket: String, reason: String },
    #[error("image {image} is not on this host; build or load it here (e.g. scripts/build-demo-image.sh, `podman load`), no registry is consulted")]
    ImageMissing { image: String },
    #[error("host port {port} is already taken on this host; free it or map the service to another host port")]
    PortTaken { port: String },
    #[error("container {name} does not exist")]
    NotFound { name: String },
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("Podman refused: {0}")]
    Podman(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// A container's log lines as they are written; ends when the container's
/// log does, or with an error.
pub type LogStream = tokio_stream::wrappers::ReceiverStream<Result<String>>;

/// Follows container logs (`meshctl logs -f`): an object-safe seam the
/// agent's session holds beside the manager's runtime.
pub trait LogFollower: Send + Sync {
    /// The last `tail` lines of Podman container `name`, then each new one.
    fn follow(&self, name: &str, tail: usize) -> LogStream;
}

/// Splits a stream of byte chunks into lines: complete lines out, the
/// unfinished rest kept for the next chunk.
#[derive(Debug, Default)]
pub struct LineSplitter {
    rest: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.rest.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.rest.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.rest.drain(..=i).collect();
            out.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        out
    }

    /// What is left when the stream ends (a last line without a newline).
    pub fn finish(self) -> Option<String> {
        (!self.rest.is_empty()).then(|| String::from_utf8_lossy(&self.rest).into_owned())
    }
}

/// What the agent needs from a container runtime. All calls are about
/// containers by their Podman name.
pub trait ContainerRuntime: Send + Sync {
    fn ping(&self) -> impl Future<Output = Result<RuntimeInfo>> + Send;
    /// Containers labelled as belonging to `mesh`, in any state.
    fn list(&self, mesh: &str) -> impl Future<Output = Result<Vec<ObservedContainer>>> + Send;
    /// Creates (does not start) the container for `spec`; returns its id.
    fn create(
        &self,
        mesh: &str,
        spec: &ContainerSpec,
        generation: u64,
    ) -> impl Future<Output = Result<String>> + Send;
    fn start(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop(&self, name: &str, timeout: Duration) -> impl Future<Output = Result<()>> + Send;
    fn kill(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn pause(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn unpause(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes the container, stopping it first if needed.
    fn remove(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// The last `tail` lines of stdout and stderr.
    fn logs(&self, name: &str, tail: usize) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Runs `command` in the container; returns its exit code.
    fn exec(&self, name: &str, command: &[String]) -> impl Future<Output = Result<i64>> + Send;
    fn images(&self) -> impl Future<Output = Result<Vec<ImageInfo>>> + Send;
    /// Resource usage of the running containers among `ids`.
    fn stats(&self, ids: &[String]) -> impl Future<Output = Result<Vec<StatsSample>>> + Send;
    /// The container's address on its network, for health probes.
    fn address(&self, name: &str) -> impl Future<Output = Result<Option<std::net::IpAddr>>> + Send;
}
