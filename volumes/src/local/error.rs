//! The local stack's errors: each says what is wrong and what fixes it.

use std::io;
use std::path::PathBuf;

/// Why attaching, detaching or cleaning up a volume failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{tool} not found: install {package} (scripts/install-deps.sh)")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    #[error("/dev/fuse is missing: the kernel needs FUSE (CONFIG_FUSE_FS) and the agent needs /dev/fuse (in a container: --device /dev/fuse)")]
    NoFuseDevice,

    #[error("attaching a volume needs root (FUSE mount, losetup, mount): run the agent as root")]
    NotRoot,

    #[error("volume name {name:?} is invalid: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidName { name: String },

    #[error("volume {name}: size {size} bytes is invalid: it must be a multiple of 4096 and at least {min} bytes")]
    InvalidSize { name: String, size: u64, min: u64 },

    #[error("image {} is {} but the volume is declared {}: fix the declared size, or move the image away to start empty", path.display(), mib(*actual), mib(*declared))]
    SizeMismatch {
        path: PathBuf,
        actual: u64,
        declared: u64,
    },

    #[error("image {} holds data but no ext4 filesystem: refusing to format it; move it away if its data is not needed", path.display())]
    NotExt4 { path: PathBuf },

    #[error("volume is already attached (a live FUSE server serves {}): detach it first", path.display())]
    AlreadyAttached { path: PathBuf },

    #[error("stale mount at {} (its FUSE server is gone): run cleanup_stale on the state directory first", path.display())]
    StaleMount { path: PathBuf },

    #[error("no free loop device: detach unused ones (losetup -l, losetup -d) or allow more (loop.max_loop, /dev/loop-control)")]
    NoFreeLoopDevice,

    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("e2fsck could not repair {device} (exit code {code}): detach, then run `e2fsck -f {}` by hand; its output: {output}", image.display())]
    FsckFailed {
        device: PathBuf,
        image: PathBuf,
        code: i32,
        output: String,
    },

    #[error("{} is busy: stop what uses it (the volume's container) and detach again", path.display())]
    Busy { path: PathBuf },

    #[error("FUSE server for {}: {source}", path.display())]
    Fuse { path: PathBuf, source: io::Error },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl LocalError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LocalError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `512 MiB`, or the exact byte count when it is not a whole number of MiB.
fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_mismatch_names_both_sizes_and_the_fix() {
        let e = LocalError::SizeMismatch {
            path: PathBuf::from("state/volumes/db/image.img"),
            actual: 512 << 20,
            declared: 1024 << 20,
        };
        let text = e.to_string();
        assert!(
            text.contains("is 512 MiB but the volume is declared 1024 MiB"),
            "{text}"
        );
        assert!(text.contains("fix the declared size"), "{text}");
    }

    #[test]
    fn missing_tool_names_the_package_and_the_installer() {
        let e = LocalError::ToolMissing {
            tool: "mkfs.ext4",
            package: "e2fsprogs",
        };
        assert_eq!(
            e.to_string(),
            "mkfs.ext4 not found: install e2fsprogs (scripts/install-deps.sh)"
        );
    }
}
