//! What the coordinator holds: the node registry, desired sets and holds,
//! the durable store and generation numbering, the applied topology, open
//! agent streams, counters, and the state the services share.

pub mod dashboard_view;
pub mod desired;
pub mod events;
pub mod exposition;
pub mod failover;
pub mod identities;
pub mod image_sync;
pub mod metrics;
pub mod numbering;
pub mod registry;
pub mod sessions;
pub mod shared;
pub mod signer;
pub mod store;
pub mod switchover;
pub mod topology_state;
pub mod traffic;
pub mod volumes;

pub use shared::{Shared, VERSION};
