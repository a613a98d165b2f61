//! The `mesh.v1` gRPC API and the mutual-TLS transport it runs over: the
//! one contract between the coordinator, the agents and `meshctl`.
//!
//! - [`v1`]: messages and service stubs, generated from
//!   `mesh/v1/mesh.proto` at build time with a vendored protoc:
//!   `AgentService` (each agent's one bidirectional stream) and
//!   `AdminService` (what `meshctl` calls).
//! - [`spec`]: the rules on a `ContainerSpec` that the coordinator and the
//!   agent both apply: validation naming the field, the stable spec hash,
//!   the ownership labels.
//! - [`from_topology`]: a service's TOML form to its `ContainerSpec`.
//! - [`transport`]: TLS 1.3 client channels and server listeners from the
//!   `mesh-certs` configurations, with handshake failures explained.
//!
//! What it must not do: decide authorisation (the coordinator does, per
//! RPC); keep state, run anything or touch Podman; change `v1`
//! incompatibly (a breaking change becomes `v2` beside it).
#![forbid(unsafe_code)]

pub mod from_topology;
pub mod images;
pub mod join;
pub mod spec;
pub mod transport;

/// Version 1 of the API. A breaking change becomes `v2` beside it.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("mesh.v1");
}

pub use transport::{connect, tls_incoming, ConnectOptions, TransportError};

/// Converts between `NodeState` and its lowercase display name.
impl v1::NodeState {
    pub fn label(self) -> &'static str {
        match self {
            v1::NodeState::Unspecified => "unknown",
            v1::NodeState::Ready => "ready",
            v1::NodeState::Suspect => "suspect",
            v1::NodeState::Down => "down",
        }
    }
}

impl v1::CheckCause {
    /// The word `meshctl check` shows for this cause.
    pub fn label(self) -> &'static str {
        match self {
            v1::CheckCause::None => "",
            v1::CheckCause::Certificate => "certificate",
            v1::CheckCause::Link => "link",
            v1::CheckCause::Port => "port",
            v1::CheckCause::ServiceUnhealthy => "service unhealthy",
            v1::CheckCause::NotPlaced => "service not placed",
            v1::CheckCause::Config => "config",
            v1::CheckCause::Tunnel => "tunnel",
            v1::CheckCause::Other => "other",
            v1::CheckCause::Bridge => "bridge",
            v1::CheckCause::Service => "service",
        }
    }
}

impl v1::ContainerState {
    /// The word `meshctl ps` and the event history show for this state.
    pub fn label(self) -> &'static str {
        match self {
            v1::ContainerState::Created => "created",
            v1::ContainerState::Starting => "starting",
            v1::ContainerState::Running => "running",
            v1::ContainerState::Paused => "paused",
            v1::ContainerState::Stopping => "stopping",
            v1::ContainerState::Stopped => "stopped",
            v1::ContainerState::Error => "error",
            v1::ContainerState::Deleted => "deleted",
            v1::ContainerState::Unspecified => "unknown",
        }
    }
}

impl v1::ServicePhase {
    /// The word `meshctl place`/`status`, `/metrics` and the dashboard show
    /// for this rollout phase.
    pub fn label(self) -> &'static str {
        match self {
            v1::ServicePhase::Waiting => "waiting",
            v1::ServicePhase::Starting => "starting",
            v1::ServicePhase::Healthy => "healthy",
            v1::ServicePhase::Failed => "failed",
            v1::ServicePhase::Blocked => "blocked",
            v1::ServicePhase::Unspecified => "-",
        }
    }
}

impl v1::HealthState {
    /// The word `meshctl ps` and the dashboard show for this health.
    pub fn label(self) -> &'static str {
        match self {
            v1::HealthState::None => "-",
            v1::HealthState::Starting => "starting",
            v1::HealthState::Healthy => "healthy",
            v1::HealthState::Unhealthy => "unhealthy",
            v1::HealthState::Unspecified => "?",
        }
    }
}

impl v1::VolumeReplica {
    /// "UpToDate", "Outdated", "Inconsistent 42%", "?" (not reported), as
    /// `meshctl volumes` and the dashboard show the replica's disk.
    pub fn disk_text(&self) -> String {
        use v1::DiskState;
        match self.disk() {
            DiskState::UpToDate => "UpToDate".into(),
            DiskState::Outdated => "Outdated".into(),
            DiskState::Inconsistent => {
                match (self.resync_done_blocks * 100).checked_div(self.resync_total_blocks) {
                    Some(pct) => format!("Inconsistent {pct}%"),
                    None => "Inconsistent".into(),
                }
            }
            DiskState::Unspecified if !self.reported => "not reported".into(),
            DiskState::Unspecified => "?".into(),
        }
    }
}

impl v1::ReplicationStanding {
    /// How replication stands, for people ("in sync", "resyncing", ...).
    pub fn label(self) -> &'static str {
        use v1::ReplicationStanding as S;
        match self {
            S::Unspecified => "-",
            S::Local => "local",
            S::InSync => "in sync",
            S::Resyncing => "resyncing",
            S::OutdatePending => "standby silent",
            S::Alone => "alone",
            S::Fenced => "fenced",
        }
    }
}

impl v1::Hold {
    /// The word `meshctl ps` shows for this hold ("" for none).
    pub fn label(self) -> &'static str {
        match self {
            v1::Hold::None => "",
            v1::Hold::Stopped => "stopped",
            v1::Hold::Paused => "paused",
            v1::Hold::Killed => "killed",
        }
    }
}
