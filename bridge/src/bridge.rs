//! One bridge's client side: a local endpoint on this host whose traffic goes to the service
//! wherever the [`crate::Target`] says it is now.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::counters::{CounterSnapshot, Counters};
use crate::error::Result;
use crate::target::{InFlightPolicy, ServiceTarget};
use crate::tunnel::Tunnels;
use crate::{distribute, pubsub, pushpull, reqrep, tcp};

/// How a bridged service talks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// The service is a REP or ROUTER socket; local REQ and DEALER clients connect to the
    /// bridge endpoint (a ROUTER).
    ReqRep,
    /// The service is a PUB socket; local SUB clients connect to the bridge endpoint (a PUB).
    PubSub,
    /// The service is a PULL socket; local PUSH clients connect to the bridge endpoint (a PULL).
    PushPull,
    /// The service is a PUSH socket handing out work; local PULL workers connect to the bridge
    /// endpoint (a PUSH).
    Distribute,
    /// Anything else: raw bytes, one tunnel stream per TCP connection.
    Tcp,
}

impl Pattern {
    /// The name used on the wire and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::ReqRep => "reqrep",
            Pattern::PubSub => "pubsub",
            Pattern::PushPull => "pushpull",
            Pattern::Distribute => "distribute",
            Pattern::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Pattern, String> {
        [
            Pattern::ReqRep,
            Pattern::PubSub,
            Pattern::PushPull,
            Pattern::Distribute,
            Pattern::Tcp,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            format!("unknown bridge pattern '{s}': use reqrep, pubsub, pushpull, distribute or tcp")
        })
    }
}

/// What a bridge is.
#[derive(Clone, Debug)]
pub struct BridgeSpec {
    /// The bridge's name (for logs and counters).
    pub name: String,
    /// How the service talks.
    pub pattern: Pattern,
    /// The stable local endpoint: a ZeroMQ endpoint such as `tcp://127.0.0.1:5555` for the
    /// ZeroMQ patterns, `HOST:PORT` for [`Pattern::Tcp`]. Port 0 picks a free port.
    pub local: String,
    /// What happens to requests in flight when the service moves (REQ/REP only).
    pub in_flight: InFlightPolicy,
}

/// What the pattern implementations share.
pub(crate) struct BridgeCtx {
    pub(crate) tunnels: Tunnels,
    pub(crate) spec: BridgeSpec,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: CancellationToken,
}

impl BridgeCtx {
    /// The error for a local endpoint that could not be bound.
    pub(crate) fn local_bind_error(&self, reason: impl fmt::Display) -> crate::error::Error {
        crate::error::Error::LocalBind {
            bridge: self.spec.name.clone(),
            endpoint: self.spec.local.clone(),
            reason: reason.to_string(),
        }
    }

    /// Binds a ZeroMQ socket at the bridge's local endpoint; returns the
    /// bound endpoint (port resolved).
    pub(crate) async fn bind_local(&self, socket: &mut impl zeromq::Socket) -> Result<String> {
        socket
            .bind(&self.spec.local)
            .await
            .map(|e| e.to_string())
            .map_err(|e| self.local_bind_error(e))
    }
}

/// A running bridge. Dropping it stops it.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    endpoint: String,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

impl Bridge {
    /// Binds the local endpoint and starts forwarding to wherever `target` says the service
    /// is. The tunnel to the service's agent is opened on first use.
    pub async fn start(
        tunnels: &Tunnels,
        spec: BridgeSpec,
        target: watch::Receiver<ServiceTarget>,
    ) -> Result<Bridge> {
        let counters = Arc::new(Counters::default());
        let shutdown = CancellationToken::new();
        let name = spec.name.clone();
        let pattern = spec.pattern;
        let ctx = BridgeCtx {
            tunnels: tunnels.clone(),
            spec,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
        };
        let span = info_span!("bridge", bridge = %name, %pattern);
        let endpoint = match pattern {
            Pattern::ReqRep => reqrep::start(ctx, target).instrument(span).await?,
            Pattern::PubSub => pubsub::start(ctx, target).instrument(span).await?,
            Pattern::PushPull => pushpull::start(ctx, target).instrument(span).await?,
            Pattern::Distribute => distribute::start(ctx, target).instrument(span).await?,
            Pattern::Tcp => tcp::start(ctx, target).instrument(span).await?,
        };
        Ok(Bridge {
            name,
            endpoint,
            counters,
            shutdown,
        })
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local endpoint clients connect to, with the port resolved.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bridge's counters now.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Stops the bridge: closes the local endpoint and its streams.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops the bridge and waits, up to `limit`, until the local endpoint's port can be bound
    /// again, so that a service moving onto this host can publish it. The endpoint's listener
    /// goes away in the background once the bridge's tasks have seen the stop. Returns `false`
    /// when the port was still taken at the limit.
    pub async fn close(self, limit: Duration) -> bool {
        self.shutdown.cancel();
        let Some(addr) = socket_addr(&self.endpoint) else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if port_free(addr) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The socket address of a bound endpoint (`tcp://IP:PORT` or `IP:PORT`).
fn socket_addr(endpoint: &str) -> Option<SocketAddr> {
    endpoint
        .strip_prefix("tcp://")
        .unwrap_or(endpoint)
        .parse()
        .ok()
}

/// Whether a TCP listener could bind `addr` now (as a service publishing it would).
fn port_free(addr: SocketAddr) -> bool {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(1)
        })
        .is_ok()
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn pattern_names_round_trip() {
        for p in [
            Pattern::ReqRep,
            Pattern::PubSub,
            Pattern::PushPull,
            Pattern::Distribute,
            Pattern::Tcp,
        ] {
            assert_eq!(p.as_str().parse::<Pattern>(), Ok(p));
        }
        let err = "reqrepx".parse::<Pattern>().unwrap_err();
        assert!(
            err.contains("reqrep, pubsub, pushpull, distribute or tcp"),
            "{err}"
        );
    }
}
