//! Synchronous replication from the primary's image to the standby's:
//! protocol C at fsync boundaries (`shared/design/FAILOVER.md` section 1).
//!
//! - [`wire`]: the messages and their bounded, versioned binary encoding.
//! - [`primary`]: the primary's state, pure (no I/O, `now` passed in):
//!   sequence numbers, the bounded in-flight window, fsync barriers, the
//!   bound after which it asks the coordinator to outdate the standby,
//!   and running alone with a [`DirtyBlocks`] set.
//! - [`standby`]: the standby over a real image file: epoch fencing,
//!   in-order writes, fdatasync before every flushed ack.
//! - [`state`]: disk states and epochs, persisted atomically per replica.
//! - [`resync`]: block checksums, diffs, full and checksum resync.
//!
//! - [`transport`]: the frames over a channel of the agents' QUIC tunnel:
//!   the standby's channel handler and the primary's [`ReplicatingSink`],
//!   the FUSE server's `WriteSink`.
//!
//! Not here: the coordinator's records (reached through the
//! [`transport::Coordinator`] seam).

pub mod dirty;
mod error;
pub mod image;
pub mod primary;
pub mod resync;
pub mod standby;
pub mod state;
pub mod transport;
pub mod wire;

pub use dirty::DirtyBlocks;
pub use error::{Error, Result};
pub use image::Image;
pub use primary::{Action, FsyncState, FsyncTicket, Primary, PrimaryConfig, Standing, WriteTicket};
pub use resync::SourceResync;
pub use standby::Standby;
pub use state::{DiskState, VolumeIdentity, VolumeMeta};
pub use transport::{Coordinator, OutdateAnswer, ReplicatingSink, SinkConfig, SinkStatus};
pub use wire::{Message, RefuseReason};
