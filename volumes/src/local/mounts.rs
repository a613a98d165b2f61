//! The mount table (`/proc/self/mountinfo`) and loop devices (sysfs), as
//! the kernel reports them.

use std::path::{Path, PathBuf};

use super::error::LocalError;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

impl MountEntry {
    /// A FUSE mount (`fuse` or `fuse.<subtype>`).
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuse" || self.fs_type.starts_with("fuse.")
    }
}

/// The mounts of this process's mount namespace.
pub fn mounts() -> Result<Vec<MountEntry>, LocalError> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|e| LocalError::io("reading", path, e))?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo: `id parent maj:min root mount-point options
/// [optional fields] - fstype source super-options`; lines it cannot read
/// are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let source = right.next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: unescape(fs_type),
                source: unescape(source),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is the mount point of some mount.
pub fn is_mount_point(path: &Path) -> Result<bool, LocalError> {
    Ok(mounts()?.iter().any(|m| m.mount_point == path))
}

/// A loop device with a backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopEntry {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing file as the kernel names it, without a ` (deleted)`.
    pub backing_file: PathBuf,
}

/// The attached loop devices, from `/sys/block/loop*/loop/backing_file`.
pub fn loop_devices() -> Result<Vec<LoopEntry>, LocalError> {
    let dir = "/sys/block";
    let entries = std::fs::read_dir(dir).map_err(|e| LocalError::io("listing", dir, e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        // Absent when the device has no backing file.
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        out.push(LoopEntry {
            device: PathBuf::from("/dev").join(&name),
            backing_file: PathBuf::from(backing),
        });
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(out)
}

/// Whether the kernel does direct I/O on the backing file of `device`
/// (`/sys/block/loopN/loop/dio`).
pub fn loop_direct_io(device: &Path) -> bool {
    let Some(name) = device.file_name() else {
        return false;
    };
    std::fs::read_to_string(Path::new("/sys/block").join(name).join("loop/dio"))
        .is_ok_and(|s| s.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let text = "\
36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
90 29 0:52 / /var/lib/mesh/volumes/my\\040db/fuse rw,nosuid,nodev,relatime shared:50 - fuse.mesh-volume mesh-volume:db rw,user_id=0,group_id=0
91 29 7:3 / /srv/db rw,relatime - ext4 /dev/loop3 rw
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt1"));
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(
            m[1].mount_point,
            PathBuf::from("/var/lib/mesh/volumes/my db/fuse")
        );
        assert!(m[1].is_fuse());
        assert_eq!(m[1].source, "mesh-volume:db");
        assert!(!m[2].is_fuse());
        assert_eq!(m[2].source, "/dev/loop3");
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\x"), "a\\x");
        assert_eq!(unescape("end\\04"), "end\\04");
    }
}
