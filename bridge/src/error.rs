//! The crate's error type. Every message names the peer, bridge or endpoint involved and, where
//! there is one, what to do about it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::FrameError;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in a bridge or a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Our certificate or trust anchors cannot be turned into a TLS configuration.
    #[error("cannot build the tunnel TLS configuration: {0}")]
    Tls(#[from] mesh_certs::Error),

    /// rustls produced a configuration quinn cannot use (it needs TLS 1.3 with AES-128-GCM).
    #[error("cannot build the QUIC {what} configuration: {reason}")]
    QuicConfig { what: &'static str, reason: String },

    /// Our own certificate is not an agent certificate: only agents run tunnels.
    #[error("tunnel endpoints need an agent certificate, ours is {identity}")]
    NotAnAgent { identity: String },

    /// The UDP socket for the tunnel endpoint could not be bound.
    #[error("cannot bind the tunnel endpoint on UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The TCP listener for TLS tunnels (same port number as the UDP endpoint) could not be
    /// bound.
    #[error(
        "cannot bind the tunnel endpoint on TCP {addr} (TLS tunnels use the same port number \
         as QUIC's UDP port): {source}; free that TCP port or pick another tunnel port"
    )]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// A bridge's local endpoint could not be bound.
    #[error("bridge '{bridge}': cannot bind the local endpoint {endpoint}: {reason}")]
    LocalBind {
        bridge: String,
        endpoint: String,
        reason: String,
    },

    /// A tunnel to a peer could not be opened.
    #[error("tunnel to agent '{peer}' at {addr}: {cause}")]
    Connect {
        peer: String,
        addr: SocketAddr,
        cause: ConnectCause,
    },

    /// A previous attempt failed and the backoff period has not passed yet.
    #[error(
        "tunnel to agent '{peer}' at {addr} is down ({last}); next attempt in {}ms",
        .retry_in.as_millis()
    )]
    BackingOff {
        peer: String,
        addr: SocketAddr,
        last: String,
        /// What kind of failure `last` was.
        last_kind: FailureKind,
        retry_in: Duration,
    },

    /// A stream inside an established tunnel failed.
    #[error("tunnel to agent '{peer}': {reason}")]
    Stream { peer: String, reason: String },

    /// The peer refused to serve a bridge (unknown service, pattern mismatch, ...).
    #[error("agent '{peer}' refused bridge '{bridge}': {reason}")]
    Refused {
        peer: String,
        bridge: String,
        reason: String,
    },

    /// The peer refused to open a channel (no handler for that name, ...).
    #[error("agent '{peer}' refused channel '{channel}': {reason}")]
    ChannelRefused {
        peer: String,
        channel: String,
        reason: String,
    },

    /// A malformed or oversized record on a tunnel stream.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectCause {
    /// The peer's certificate does not chain to our mesh CA, or its identity is not an agent of
    /// our mesh.
    #[error(
        "the peer's certificate was rejected: {detail}; it must be an agent certificate issued \
         by this mesh's CA"
    )]
    PeerCertificate { detail: String },

    /// The peer rejected our certificate during the handshake (typically: it trusts another CA).
    #[error(
        "the peer rejected our certificate ({detail}); both agents need certificates from the \
         same mesh CA"
    )]
    RejectedByPeer { detail: String },

    /// The peer completed TLS but refused our identity (wrong mesh or not an agent).
    #[error("the peer refused our identity: {reason}")]
    IdentityRefused { reason: String },

    /// The peer is an agent of our mesh but not the one we wanted to reach.
    #[error("the peer is {found}, expected {expected}; check the address of agent '{expected}'")]
    WrongPeer { found: String, expected: String },

    /// No answer in time.
    #[error(
        "no answer within {}ms: is the agent running there and is {transport} port {port} open?",
        .after.as_millis()
    )]
    Unreachable {
        after: Duration,
        port: u16,
        /// "UDP" (QUIC) or "TCP" (TLS).
        transport: &'static str,
    },

    /// Anything else (I/O, protocol).
    #[error("{0}")]
    Other(String),
}

/// What kind of failure a tunnel error is, as a type (for checks and
/// people; nothing needs to read it back out of the message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureKind {
    /// A certificate or identity was refused, by either side.
    Certificate,
    /// No answer over the network.
    Link,
    /// Anything else.
    #[default]
    Other,
}

impl ConnectCause {
    pub fn kind(&self) -> FailureKind {
        match self {
            ConnectCause::PeerCertificate { .. }
            | ConnectCause::RejectedByPeer { .. }
            | ConnectCause::IdentityRefused { .. }
            | ConnectCause::WrongPeer { .. } => FailureKind::Certificate,
            ConnectCause::Unreachable { .. } => FailureKind::Link,
            ConnectCause::Other(_) => FailureKind::Other,
        }
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::Connect { cause, .. } => cause.kind(),
            Error::BackingOff { last_kind, .. } => *last_kind,
            _ => FailureKind::Other,
        }
    }

    /// A stream failure with peer `peer`.
    pub(crate) fn stream(peer: &str, reason: impl std::fmt::Display) -> Error {
        Error::Stream {
            peer: peer.to_string(),
            reason: reason.to_string(),
        }
    }
}
