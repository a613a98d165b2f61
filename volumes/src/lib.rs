//! Replicated volumes (issue #11, in progress): the storage of a failover
//! group's services, on two hosts at once, as
//! `shared/design/FAILOVER.md` section 1 describes (a userspace DRBD,
//! protocol C at fsync boundaries).
//!
//! - [`local`]: one host's stack: a sparse image file served through FUSE
//!   as a single file, attached as a loop device, with ext4 on it.
//! - [`replication`]: the protocol between the primary and the standby
//!   (writes tagged with sequence number and epoch, fsync barriers, disk
//!   states, resync by block checksums), and its transport over a channel
//!   of the agents' QUIC tunnel (`replication::transport`: the standby's
//!   channel handler and the primary's `ReplicatingSink`).
//!
//! Not yet wired into the agent, the coordinator or the topology.
#![forbid(unsafe_code)]

pub mod lease_clock;
pub mod local;
pub mod replication;
