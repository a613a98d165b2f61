//! Managed volumes on this host (issue #11): the coordinator assigns each
//! volume a role here (`DesiredContainers.volumes`), and this module makes
//! it so.
//!
//! - Primary: the volume's local stack (`mesh_volumes::local`: image file,
//!   FUSE, loop device, ext4) is attached under the state directory, and
//!   the group's containers bind-mount it ([`VolumeMounts`] resolves their
//!   `managed` mounts). A replicated volume's writes go to the standby's
//!   agent over the tunnel (`ReplicatingSink`); its outdate requests go to
//!   the coordinator ([`coordinator::RpcCoordinator`]).
//! - Standby: the image is served on the volume's tunnel channel, to the
//!   assigned primary only.
//!
//! [`plan::plan`] decides the steps from what is held and what is
//! assigned (pure); [`host::VolumeHost`] runs them and reports each
//! volume's state on the heartbeats.

pub mod coordinator;
pub mod host;
pub mod mounts;
pub mod plan;
mod switch;

pub use host::{VolumeHost, VolumeHostConfig};
pub use mounts::VolumeMounts;

use mesh_proto::v1::VolumeAssignment;

/// The directory name, FUSE name and tunnel channel key of a volume:
/// `GROUP.NAME` (both are `a-z0-9-`, so the dot separates them).
pub fn volume_id(group: &str, name: &str) -> String {
    format!("{group}.{name}")
}

/// The id of an assignment's volume.
pub fn assignment_id(a: &VolumeAssignment) -> String {
    volume_id(&a.group, &a.name)
}

/// The manager's side of the volumes: where it sends the assignments of
/// each desired set, and where it looks up mount points.
#[derive(Clone)]
pub struct VolumeLink {
    pub assignments: tokio::sync::watch::Sender<Vec<VolumeAssignment>>,
    pub mounts: VolumeMounts,
}
