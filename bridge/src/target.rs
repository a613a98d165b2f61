//! Where a bridge's service is now, changeable at runtime, and what happens to requests that
//! were in flight when it changes.

use tokio::sync::watch;

use crate::tunnel::PeerAddr;

/// The agent that runs a bridged service, and the name the service is exported under there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The agent hosting the service.
    pub peer: PeerAddr,
    /// The name under which that agent exports the service ([`crate::Exports`]).
    pub service: String,
    /// The failover epoch of the service's group (0: none). A new epoch is
    /// a move, also to the same agent: what was in flight to the old
    /// instance gets the in-flight policy, and its late replies are dropped.
    pub epoch: u64,
}

/// What a REQ/REP bridge does with requests in flight when the service moves or the tunnel to
/// it fails. Either way, no request is silently lost and none is answered twice: a reply that
/// arrives after its request was failed or retried is dropped and counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InFlightPolicy {
    /// Answer the client at once with an error reply ([`ERROR_PREFIX`] and a reason, after the
    /// request's envelope).
    #[default]
    Error,
    /// Send the request once more, to wherever the service is now; if that fails too, answer
    /// with an error reply. Only for idempotent services: the service may see it twice.
    RetryOnce,
}

/// First bytes of the single body frame of an error reply made by the bridge.
pub const ERROR_PREFIX: &str = "MESH-BRIDGE-ERROR: ";

/// The handle that moves a bridge: the agent later feeds it from the coordinator's directory.
#[derive(Debug)]
pub struct Target {
    tx: watch::Sender<ServiceTarget>,
}

impl Target {
    /// A target starting at `initial`.
    pub fn new(initial: ServiceTarget) -> Target {
        let (tx, _) = watch::channel(initial);
        Target { tx }
    }

    /// Moves the service. Bridges act on it at once; setting the same target is a no-op.
    pub fn set(&self, target: ServiceTarget) {
        self.tx.send_if_modified(|cur| {
            if *cur == target {
                false
            } else {
                *cur = target;
                true
            }
        });
    }

    /// Where the service is now.
    pub fn get(&self) -> ServiceTarget {
        self.tx.borrow().clone()
    }

    /// A receiver for a bridge.
    pub fn subscribe(&self) -> watch::Receiver<ServiceTarget> {
        self.tx.subscribe()
    }
}
