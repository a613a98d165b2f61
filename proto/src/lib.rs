//! The `mesh.v1` gRPC API and the mutual-TLS transport it runs over.
//!
//! Messages and service stubs are generated from `mesh/v1/mesh.proto` at
//! build time with a vendored protoc. [`transport`] builds TLS 1.3 client
//! channels and server listeners from the mesh certificates; it makes no
//! authorisation decisions (that is the coordinator's job, per RPC).
#![forbid(unsafe_code)]

pub mod from_topology;
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
