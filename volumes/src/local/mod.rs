//! One host's volume stack: image file, FUSE server, loop device, ext4.
//!
//! Per volume, under the agent's state directory:
//!
//! ```text
//! STATE/volumes/NAME/image.img   sparse image file, exactly the volume's size
//! STATE/volumes/NAME/fuse/image  the image served by this process (FUSE)
//! /dev/loopN                     loop device over fuse/image (direct I/O)
//! MOUNT_POINT                    ext4 on /dev/loopN, a shared mount
//! ```
//!
//! The service sees a native ext4 (mmap, SQLite WAL, locks, rename and
//! fsync as on a local disk). Every block write and every fsync passes
//! through the FUSE server, which sends them to a [`WriteSink`] (the seam
//! of replication). [`LocalVolume::attach`] builds the stack,
//! [`LocalVolume::detach`] takes it down, and [`cleanup_stale`] removes
//! what a killed agent left behind.
//!
//! For a container, bind-mount the mount point with `rslave` propagation
//! (Podman: `--mount type=bind,src=MOUNT_POINT,dst=/data,bind-propagation=rslave`),
//! after the attach; if the FUSE server dies the container sees
//! ECONNABORTED and must be restarted after a new attach.
//!
//! Needs root, `/dev/fuse`, `losetup` (util-linux) and `mkfs.ext4` /
//! `e2fsck` (e2fsprogs).

mod blockdev;
mod cleanup;
mod error;
mod fuse_image;
mod fuse_server;
pub mod mounts;
mod sink;
mod tools;
mod volume;

pub use blockdev::{FsckOutcome, LoopDevice};
pub use cleanup::{cleanup_stale, Cleaned};
pub use error::LocalError;
pub use fuse_image::{ServerStats, IMAGE_FILE_NAME};
pub use fuse_server::ImageServer;
pub use sink::{LocalSink, RecordingSink, SinkEvent, WriteSink};
pub use volume::{
    check_prerequisites, volumes_dir, AttachReport, LocalVolume, VolumeConfig, MIN_SIZE,
};
