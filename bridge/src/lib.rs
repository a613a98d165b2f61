//! Bridges between mesh hosts: a service on one host (a ZeroMQ socket, or any TCP service) is
//! reachable from other hosts at a stable local endpoint, through an authenticated, encrypted
//! tunnel between the node agents.
//!
//! * [`Tunnels`]: one endpoint per agent with the mesh certificates (mutual TLS 1.3, the peer
//!   must be an `agent` of the same mesh), listening on UDP (QUIC: one connection per peer,
//!   a stream per bridge) and TCP (TLS over TCP: a connection per stream) on one port number;
//!   [`Transport`] picks what it dials with. Keep-alive, reconnection with capped backoff.
//!   Streams ([`SendStream`], [`RecvStream`]) carry length-prefixed multipart records (the
//!   internal `frame` format).
//! * [`Bridge`]: the client side of one bridge, a local endpoint whose traffic goes to the
//!   service wherever it runs now; its [`Target`] moves it at runtime, and [`InFlightPolicy`]
//!   says what becomes of requests in flight when the service moves or its tunnel fails.
//!   [`Exports`]: the services this agent serves to other agents' bridges, by name.
//! * Patterns: REQ/REP and DEALER/ROUTER (`reqrep`), PUB/SUB (`pubsub`), PUSH/PULL towards
//!   the service (`pushpull`) and from it to workers on other hosts (`distribute`), raw TCP
//!   (`tcp`).
//! * [`Channel`]s: named streams on the same tunnel connection for other protocols (volume
//!   replication), served by [`Tunnels::serve_channel`] and opened by [`Tunnels::open_channel`].
//! * [`Counters`]: per-bridge traffic and round-trip counters, which the agent reports.
//!
//! What it must not do: send anything between hosts in clear text; let a peer reach anything
//! on this host that is not exported; lose a request silently or answer one twice; depend on
//! the coordinator or the agent (they feed it addresses and targets); carry tools (its
//! benchmark is `bench-bridge` in `mesh-tests`).

#![forbid(unsafe_code)]

mod bridge;
mod channel;
mod counters;
mod distribute;
mod error;
mod follow;
mod frame;
mod idhash;
mod pubsub;
mod pushpull;
mod reqrep;
mod service;
mod stream;
mod target;
mod tcp;
mod tunnel;
mod zmtp;

pub use bridge::{Bridge, BridgeSpec, Pattern};
pub use channel::{Channel, ChannelFuture};
pub use counters::{
    CounterSnapshot, Counters, HistogramSnapshot, LatencyHistogram, RTT_BUCKETS_US,
};
pub use error::{ConnectCause, Error, FailureKind, Result};
pub use frame::FrameError;
pub use mesh_backoff::Backoff;
pub use service::{Export, Exports};
pub use target::{InFlightPolicy, ServiceTarget, Target, ERROR_PREFIX};
pub use tunnel::{
    PeerAddr, ReadExactError, RecvStream, SendStream, Transport, TunnelConfig, TunnelStat, Tunnels,
    ALPN,
};

/// `bytes::Bytes`, which the zeromq crate uses in its API without re-exporting it.
pub use bytes::Bytes;
