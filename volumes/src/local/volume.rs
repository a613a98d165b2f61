//! One volume's whole local stack, attached and detached in order:
//! image file -> FUSE server -> loop device -> e2fsck or mkfs -> ext4 mount.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::blockdev::{self, FsckOutcome, LoopDevice};
use super::error::LocalError;
use super::fuse_image::ServerStats;
use super::fuse_server::ImageServer;
use super::mounts;
use super::sink::WriteSink;
use super::tools;

/// The smallest volume: ext4 with its journal needs a few MiB.
pub const MIN_SIZE: u64 = 8 << 20;

/// What to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    /// The volume's name: the directory `state_dir/volumes/NAME`.
    pub name: String,
    /// Bytes; the image has exactly this size.
    pub size: u64,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// Where the ext4 is mounted (created if missing), the source of the
    /// container's bind mount.
    pub mount_point: PathBuf,
    /// `losetup --direct-io=on` (no second page cache of the volume).
    pub loop_direct_io: bool,
    /// Allocate the whole image up front, so a full host disk cannot turn
    /// into write errors under ext4 later (the image is sparse otherwise).
    pub preallocate: bool,
    /// FUSE worker threads (each holds a 16 MiB request buffer).
    pub fuse_threads: usize,
    /// How long detach waits for a mount or device still in use before
    /// it gives up with [`LocalError::Busy`].
    pub busy_timeout: Duration,
}

impl VolumeConfig {
    /// Defaults: mounted at `state_dir/volumes/NAME/mnt`, direct I/O, a
    /// sparse image, two FUSE threads, detach waits 5 s for users.
    pub fn new(name: &str, size: u64, state_dir: &Path) -> Self {
        VolumeConfig {
            name: name.to_string(),
            size,
            state_dir: state_dir.to_path_buf(),
            mount_point: volume_dir(state_dir, name).join("mnt"),
            loop_direct_io: true,
            preallocate: false,
            fuse_threads: 2,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// `state_dir/volumes/NAME`.
    pub fn dir(&self) -> PathBuf {
        volume_dir(&self.state_dir, &self.name)
    }

    /// The image file, `state_dir/volumes/NAME/image.img`.
    pub fn image_path(&self) -> PathBuf {
        self.dir().join("image.img")
    }

    /// The FUSE mount serving the image, `state_dir/volumes/NAME/fuse`.
    pub fn fuse_dir(&self) -> PathBuf {
        self.dir().join("fuse")
    }

    fn validate(&self) -> Result<(), LocalError> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_name {
            return Err(LocalError::InvalidName {
                name: self.name.clone(),
            });
        }
        if self.size < MIN_SIZE || !self.size.is_multiple_of(4096) {
            return Err(LocalError::InvalidSize {
                name: self.name.clone(),
                size: self.size,
                min: MIN_SIZE,
            });
        }
        Ok(())
    }
}

/// Where the volumes of an agent live under its state directory.
pub fn volumes_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("volumes")
}

fn volume_dir(state_dir: &Path, name: &str) -> PathBuf {
    volumes_dir(state_dir).join(name)
}

/// How the attach went, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReport {
    /// The image file was created by this attach.
    pub created_image: bool,
    /// ext4 was created by this attach.
    pub formatted: bool,
    /// `e2fsck -p` on an existing image (None when just formatted).
    pub fsck: Option<FsckOutcome>,
    /// The loop device and whether it does direct I/O.
    pub loop_device: LoopDevice,
    /// The FUSE threads are `PR_SET_IO_FLUSHER`.
    pub io_flusher: bool,
}

/// An attached volume; [`LocalVolume::detach`] takes it down, and so does
/// dropping it, as a best effort (lazy unmounts, logged).
#[derive(Debug)]
pub struct LocalVolume {
    config: VolumeConfig,
    server: Option<ImageServer>,
    loop_device: Option<LoopDevice>,
    ext4_mounted: bool,
    report: Option<AttachReport>,
}

/// Checks what attaching needs: root, /dev/fuse and the tools.
pub fn check_prerequisites() -> Result<(), LocalError> {
    if !rustix::process::geteuid().is_root() {
        return Err(LocalError::NotRoot);
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(LocalError::NoFuseDevice);
    }
    for tool in [tools::LOSETUP, tools::MKFS_EXT4, tools::E2FSCK] {
        tools::find(tool)?;
    }
    Ok(())
}

impl LocalVolume {
    /// Attaches the volume: creates the sparse image if missing (refusing
    /// an existing one of another size), serves it through FUSE, attaches
    /// a loop device, creates ext4 on a new image or runs `e2fsck -p` on
    /// an existing one, and mounts the ext4 at the mount point. On an
    /// error, what was set up is taken down again.
    pub fn attach(
        config: &VolumeConfig,
        sink: Arc<dyn WriteSink>,
    ) -> Result<LocalVolume, LocalError> {
        config.validate()?;
        check_prerequisites()?;
        let fuse_dir = config.fuse_dir();
        // The mount table names mount points by their absolute, resolved
        // path; the FUSE dir itself cannot be resolved if its server died.
        let listed = std::fs::canonicalize(config.dir())
            .map(|d| d.join("fuse"))
            .unwrap_or_else(|_| fuse_dir.clone());
        if mounts::is_mount_point(&listed)? {
            return Err(match std::fs::metadata(&fuse_dir) {
                Err(e) if is_disconnected(&e) => LocalError::StaleMount { path: fuse_dir },
                _ => LocalError::AlreadyAttached { path: fuse_dir },
            });
        }
        for dir in [&fuse_dir, &config.mount_point] {
            std::fs::create_dir_all(dir)
                .map_err(|e| LocalError::io("creating directory", dir.as_path(), e))?;
        }
        let (image, created_image) = open_image(config)?;
        let has_fs = blockdev::has_ext4_superblock(&image)
            .map_err(|e| LocalError::io("reading", config.image_path(), e))?;
        let blank = !has_fs
            && (created_image
                || blockdev::is_blank(&image)
                    .map_err(|e| LocalError::io("reading", config.image_path(), e))?);
        if !has_fs && !blank {
            return Err(LocalError::NotExt4 {
                path: config.image_path(),
            });
        }

        let mut volume = LocalVolume {
            config: config.clone(),
            server: None,
            loop_device: None,
            ext4_mounted: false,
            report: None,
        };
        let server = ImageServer::start(
            image,
            config.size,
            sink,
            &fuse_dir,
            &format!("mesh-volume:{}", config.name),
            config.fuse_threads,
        )?;
        let served = server.image_path();
        let io_flusher = server.io_flusher();
        volume.server = Some(server);

        let loop_device = blockdev::attach_loop(&served, config.loop_direct_io)?;
        volume.loop_device = Some(loop_device.clone());
        if config.loop_direct_io && !loop_device.direct_io {
            // Still no second cache: the FUSE file is FOPEN_DIRECT_IO.
            tracing::info!(device = %loop_device.device.display(), "the kernel refused direct I/O on the loop device; it goes through its buffered path");
        }

        let fsck = if blank {
            // An ext4 label holds 16 bytes; names are ASCII.
            let label = &config.name[..config.name.len().min(16)];
            blockdev::mkfs_ext4(&loop_device.device, label)?;
            None
        } else {
            let outcome = blockdev::fsck(&loop_device.device, &config.image_path())?;
            if outcome.code != 0 {
                tracing::warn!(volume = %config.name, code = outcome.code, output = %outcome.output, "e2fsck repaired the volume (a writer died)");
            }
            Some(outcome)
        };

        blockdev::mount_ext4(&loop_device.device, &config.mount_point)?;
        volume.ext4_mounted = true;
        volume.report = Some(AttachReport {
            created_image,
            formatted: blank,
            fsck,
            loop_device,
            io_flusher,
        });
        tracing::info!(volume = %config.name, mount_point = %config.mount_point.display(), "volume attached");
        Ok(volume)
    }

    /// The configuration it was attached with.
    pub fn config(&self) -> &VolumeConfig {
        &self.config
    }

    /// Where the ext4 is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.config.mount_point
    }

    /// How the attach went.
    pub fn report(&self) -> Option<&AttachReport> {
        self.report.as_ref()
    }

    /// What the FUSE server did so far.
    pub fn stats(&self) -> Option<&ServerStats> {
        self.server.as_ref().map(ImageServer::stats)
    }

    /// Takes the stack down in reverse: unmounts the ext4 (which flushes
    /// it), detaches the loop device, unmounts the FUSE server. If the
    /// ext4 is still in use (a running container) this is
    /// [`LocalError::Busy`] and the volume stays attached; call again once
    /// the user is gone. Each step is done once, so a retry continues.
    pub fn detach(&mut self) -> Result<(), LocalError> {
        if self.ext4_mounted {
            blockdev::unmount(&self.config.mount_point, self.config.busy_timeout)?;
            self.ext4_mounted = false;
        }
        if let Some(dev) = &self.loop_device {
            blockdev::detach_loop(&dev.device, self.config.busy_timeout)?;
            self.loop_device = None;
        }
        if let Some(server) = &mut self.server {
            server.stop(self.config.busy_timeout)?;
            self.server = None;
        }
        tracing::info!(volume = %self.config.name, "volume detached");
        Ok(())
    }
}

impl Drop for LocalVolume {
    fn drop(&mut self) {
        if self.ext4_mounted || self.loop_device.is_some() || self.server.is_some() {
            if let Err(e) = self.detach() {
                tracing::warn!(volume = %self.config.name, error = %e, "detach on drop failed; detaching lazily");
                if self.ext4_mounted {
                    let _ = blockdev::unmount_lazy(&self.config.mount_point);
                }
                if let Some(dev) = self.loop_device.take() {
                    let _ = blockdev::detach_loop(&dev.device, Duration::ZERO);
                }
                // Dropping the server unmounts it lazily.
                self.server = None;
            }
        }
    }
}

/// Opens the image, creating it sparse when missing; refuses a size
/// mismatch. Returns whether it was created.
fn open_image(config: &VolumeConfig) -> Result<(File, bool), LocalError> {
    let path = config.image_path();
    let open = |create: bool| {
        File::options()
            .read(true)
            .write(true)
            .create_new(create)
            .open(&path)
    };
    match open(false) {
        Ok(file) => {
            let actual = file
                .metadata()
                .map_err(|e| LocalError::io("reading the size of", &path, e))?
                .len();
            if actual != config.size {
                return Err(LocalError::SizeMismatch {
                    path,
                    actual,
                    declared: config.size,
                });
            }
            Ok((file, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = open(true).map_err(|e| LocalError::io("creating image", &path, e))?;
            let setup = || -> std::io::Result<()> {
                if config.preallocate {
                    rustix::fs::fallocate(
                        &file,
                        rustix::fs::FallocateFlags::empty(),
                        0,
                        config.size,
                    )?;
                } else {
                    file.set_len(config.size)?;
                }
                file.sync_all()?;
                File::open(config.dir())?.sync_all()
            };
            if let Err(e) = setup() {
                let _ = std::fs::remove_file(&path);
                return Err(LocalError::io("creating image", &path, e));
            }
            Ok((file, true))
        }
        Err(e) => Err(LocalError::io("opening image", &path, e)),
    }
}

/// ENOTCONN or ECONNABORTED: a FUSE mount whose server is gone.
pub(crate) fn is_disconnected(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::NOTCONN.raw_os_error())
        || code == Some(rustix::io::Errno::CONNABORTED.raw_os_error())
}
