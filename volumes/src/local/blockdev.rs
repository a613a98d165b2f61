//! The loop device over the FUSE-served image, and the ext4 on it.
//!
//! `losetup` runs as a command (util-linux, on every host already; no
//! loop-device crate: `loopdev` needs bindgen and libclang to build, and
//! `losetup --find --show` also allocates a new device through
//! `/dev/loop-control` when all are taken). Mounting uses rustix's safe
//! wrappers of mount(2).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::error::LocalError;
use super::mounts;
use super::tools::{self, E2FSCK, LOSETUP, MKFS_EXT4};

/// An attached loop device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// Whether the kernel took `--direct-io=on`.
    pub direct_io: bool,
}

/// `losetup --find --show [--direct-io=on] FILE`.
pub fn attach_loop(file: &Path, direct_io: bool) -> Result<LoopDevice, LocalError> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("--find"), OsStr::new("--show")];
    if direct_io {
        args.push(OsStr::new("--direct-io=on"));
    }
    args.push(file.as_os_str());
    let out = tools::run(LOSETUP, &args)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("could not find any free loop device")
            || stderr.contains("failed to find an unused loop device")
        {
            return Err(LocalError::NoFreeLoopDevice);
        }
        return Err(tools::failed(LOSETUP, &args, &out));
    }
    let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !device.starts_with("/dev") {
        return Err(tools::failed(LOSETUP, &args, &out));
    }
    let direct_io = mounts::loop_direct_io(&device);
    Ok(LoopDevice { device, direct_io })
}

/// `losetup -d DEVICE`, then waits until the kernel let go of the backing
/// file (so the FUSE mount under it can be unmounted).
pub fn detach_loop(device: &Path, timeout: Duration) -> Result<(), LocalError> {
    let args = [OsStr::new("-d"), device.as_os_str()];
    let out = tools::run(LOSETUP, &args)?;
    let gone = || mounts::loop_devices().is_ok_and(|l| !l.iter().any(|e| e.device == device));
    if !out.status.success() && !gone() {
        return Err(tools::failed(LOSETUP, &args, &out));
    }
    let deadline = Instant::now() + timeout;
    while !gone() {
        if Instant::now() >= deadline {
            // Still open by someone (a lazily unmounted ext4 in use): the
            // kernel detaches it on the last close (autoclear).
            return Err(LocalError::Busy {
                path: device.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Offset of `s_magic` in an ext2/3/4 superblock (at byte 1024).
const EXT4_MAGIC_OFFSET: u64 = 1024 + 56;

/// Whether the image starts with an ext2/3/4 superblock.
pub fn has_ext4_superblock(image: &File) -> std::io::Result<bool> {
    let mut magic = [0u8; 2];
    match image.read_exact_at(&mut magic, EXT4_MAGIC_OFFSET) {
        Ok(()) => Ok(magic == [0x53, 0xEF]),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the first MiB of the image is all zeros (nothing ever wrote a
/// filesystem there).
pub fn is_blank(image: &File) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < buf.len() {
        match image.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(buf[..done].iter().all(|b| *b == 0))
}

/// `mkfs.ext4 -q -F -E nodiscard DEVICE`: the image is new and sparse, so
/// discarding it would only send the whole volume as zeros to the sink.
pub fn mkfs_ext4(device: &Path, label: &str) -> Result<(), LocalError> {
    let args = [
        OsStr::new("-q"),
        OsStr::new("-F"),
        OsStr::new("-E"),
        OsStr::new("nodiscard"),
        OsStr::new("-L"),
        OsStr::new(label),
        device.as_os_str(),
    ];
    let out = tools::run(MKFS_EXT4, &args)?;
    if !out.status.success() {
        return Err(tools::failed(MKFS_EXT4, &args, &out));
    }
    Ok(())
}

/// What `e2fsck -p` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckOutcome {
    /// 0: clean; 1: errors fixed (a journal replayed after a crash counts).
    pub code: i32,
    pub output: String,
}

/// `e2fsck -p DEVICE`: replays the journal and fixes what is safe to fix;
/// anything worse is [`LocalError::FsckFailed`].
pub fn fsck(device: &Path, image: &Path) -> Result<FsckOutcome, LocalError> {
    let args = [OsStr::new("-p"), device.as_os_str()];
    let out = tools::run(E2FSCK, &args)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string();
    // e2fsck's exit codes: 1 errors corrected, 2 corrected and the system
    // should be rebooted (only meaningful for a mounted root), 4 and up:
    // left uncorrected or failed.
    match out.status.code() {
        Some(code @ 0..=2) => Ok(FsckOutcome { code, output }),
        code => Err(LocalError::FsckFailed {
            device: device.to_path_buf(),
            image: image.to_path_buf(),
            code: code.unwrap_or(-1),
            output,
        }),
    }
}

/// Mounts the ext4 on `device` at `mount_point` and makes it a shared
/// mount, so a container that bind-mounts it with `rslave` propagation
/// also sees what is mounted under it later (Podman refuses `rslave` on a
/// source that is neither shared nor a slave).
pub fn mount_ext4(device: &Path, mount_point: &Path) -> Result<(), LocalError> {
    rustix::mount::mount(
        device,
        mount_point,
        "ext4",
        MountFlags::NOSUID | MountFlags::NODEV,
        None::<&std::ffi::CStr>,
    )
    .map_err(|e| LocalError::io("mounting ext4 at", mount_point, e.into()))?;
    if let Err(e) = rustix::mount::mount_change(mount_point, MountPropagationFlags::SHARED) {
        let _ = rustix::mount::unmount(mount_point, UnmountFlags::empty());
        return Err(LocalError::io(
            "making a shared mount of",
            mount_point,
            e.into(),
        ));
    }
    Ok(())
}

/// Unmounts `mount_point`, retrying EBUSY until `timeout`
/// ([`LocalError::Busy`] then); not mounted is fine.
pub fn unmount(mount_point: &Path, timeout: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::mount::unmount(mount_point, UnmountFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(rustix::io::Errno::BUSY) => {
                return Err(LocalError::Busy {
                    path: mount_point.to_path_buf(),
                })
            }
            Err(e) => return Err(LocalError::io("unmounting", mount_point, e.into())),
        }
    }
}

/// `umount -l`: detaches now, the kernel finishes when the last user goes.
pub fn unmount_lazy(mount_point: &Path) -> Result<(), LocalError> {
    match rustix::mount::unmount(mount_point, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(LocalError::io("lazily unmounting", mount_point, e.into())),
    }
}
