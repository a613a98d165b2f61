//! Leftovers of an agent that was killed: its FUSE servers are gone, but
//! the kernel keeps their mounts (every access: ENOTCONN), the loop
//! devices over the served images and the ext4 mounts on those. They
//! block the next attach, so the agent removes them at start, in order:
//! ext4 (lazily: a container may still hold it), the loop device, the FUSE
//! mount.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::blockdev;
use super::error::LocalError;
use super::mounts;
use super::volume::{is_disconnected, volumes_dir};

/// One thing [`cleanup_stale`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// An ext4 (or other) mount of a stale loop device, lazily unmounted.
    Unmounted {
        mount_point: PathBuf,
        device: PathBuf,
    },
    /// A loop device over an image of a dead FUSE server.
    LoopDetached {
        device: PathBuf,
        backing_file: PathBuf,
    },
    /// A FUSE mount whose server is gone, lazily unmounted.
    FuseUnmounted { mount_point: PathBuf },
}

impl fmt::Display for Cleaned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cleaned::Unmounted {
                mount_point,
                device,
            } => write!(
                f,
                "unmounted {} (on {}, lazily)",
                mount_point.display(),
                device.display()
            ),
            Cleaned::LoopDetached {
                device,
                backing_file,
            } => write!(
                f,
                "detached loop device {} (over {})",
                device.display(),
                backing_file.display()
            ),
            Cleaned::FuseUnmounted { mount_point } => write!(
                f,
                "unmounted dead FUSE mount {} (lazily)",
                mount_point.display()
            ),
        }
    }
}

/// Removes what a killed agent left under `state_dir/volumes`: FUSE mounts
/// whose server is gone, loop devices over their images and what is
/// mounted from those devices (wherever it is mounted). A FUSE mount whose
/// server still answers is left alone. Returns what was removed, in the
/// order it was removed.
pub fn cleanup_stale(state_dir: &Path) -> Result<Vec<Cleaned>, LocalError> {
    let root = volumes_dir(state_dir);
    // Compare with the kernel's absolute names.
    let root = match std::fs::canonicalize(&root) {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LocalError::io("resolving", root, e)),
    };
    let mut cleaned = Vec::new();
    let dead_fuse: Vec<PathBuf> = mounts::mounts()?
        .into_iter()
        .filter(|m| m.is_fuse() && m.mount_point.starts_with(&root))
        .filter(|m| matches!(std::fs::metadata(&m.mount_point), Err(e) if is_disconnected(&e)))
        .map(|m| m.mount_point)
        .collect();

    for lo in mounts::loop_devices()? {
        if !dead_fuse.iter().any(|d| lo.backing_file.starts_with(d)) {
            continue;
        }
        // Deepest first, so nothing is unmounted from under another mount.
        let mut users: Vec<PathBuf> = mounts::mounts()?
            .into_iter()
            .filter(|m| Path::new(&m.source) == lo.device)
            .map(|m| m.mount_point)
            .collect();
        users.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for mount_point in users {
            blockdev::unmount_lazy(&mount_point)?;
            cleaned.push(Cleaned::Unmounted {
                mount_point,
                device: lo.device.clone(),
            });
        }
        match blockdev::detach_loop(&lo.device, Duration::from_secs(5)) {
            Ok(()) => {}
            // Still held by a lazily unmounted ext4 in use: it goes with
            // its last user (autoclear); the FUSE mount goes lazily too.
            Err(LocalError::Busy { .. }) => {
                tracing::warn!(device = %lo.device.display(), "stale loop device still in use; the kernel detaches it on its last close");
            }
            Err(e) => return Err(e),
        }
        cleaned.push(Cleaned::LoopDetached {
            device: lo.device,
            backing_file: lo.backing_file,
        });
    }

    // Deepest first, as above.
    let mut dead_fuse = dead_fuse;
    dead_fuse.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount_point in dead_fuse {
        blockdev::unmount_lazy(&mount_point)?;
        cleaned.push(Cleaned::FuseUnmounted { mount_point });
    }
    for c in &cleaned {
        tracing::info!(state_dir = %state_dir.display(), "stale volume state: {c}");
    }
    Ok(cleaned)
}
