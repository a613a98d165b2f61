//! Running the image filesystem: a FUSE session on a thread of its own,
//! mounted on a directory, and its unmount.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::error::LocalError;
use super::fuse_image::{ImageFs, ServerStats, IMAGE_FILE_NAME};
use super::sink::WriteSink;

/// A running FUSE server for one image, mounted on a directory.
#[derive(Debug)]
pub struct ImageServer {
    mount_dir: PathBuf,
    stats: Arc<ServerStats>,
    io_flusher: bool,
    /// Disconnected when the session thread ends.
    ended: mpsc::Receiver<()>,
    mounted: bool,
}

impl ImageServer {
    /// Serves `backing` (already `size` bytes long) as `mount_dir/image`.
    ///
    /// The session runs on a thread of its own (and `threads` worker
    /// threads it starts), marked `PR_SET_IO_FLUSHER` first, which the
    /// workers inherit: they write the pages the kernel needs them to
    /// write to free memory, so they must not wait on that memory
    /// themselves (it needs `CAP_SYS_RESOURCE`; without it the server runs
    /// and [`ImageServer::io_flusher`] says false).
    pub fn start(
        backing: File,
        size: u64,
        sink: Arc<dyn WriteSink>,
        mount_dir: &Path,
        fs_name: &str,
        threads: usize,
    ) -> Result<ImageServer, LocalError> {
        let stats = Arc::new(ServerStats::default());
        let fs = ImageFs::new(backing, size, sink, stats.clone());
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(fs_name.to_string()),
            fuser::MountOption::Subtype("mesh-volume".to_string()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoDev,
            fuser::MountOption::NoExec,
        ];
        config.n_threads = Some(threads.max(1));
        let (started_tx, started_rx) = mpsc::channel::<io::Result<bool>>();
        let (ended_tx, ended_rx) = mpsc::channel::<()>();
        let dir = mount_dir.to_path_buf();
        std::thread::Builder::new()
            .name("volume-fuse".to_string())
            .spawn(move || {
                let _ended = ended_tx;
                let io_flusher = match rustix::process::configure_io_flusher_behavior(true) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "FUSE server threads are not I/O flushers (PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE): under memory pressure the volume may stall");
                        false
                    }
                };
                let session = match fuser::Session::new(fs, &dir, &config) {
                    Ok(session) => session,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(io_flusher));
                if let Err(e) = session.run() {
                    tracing::warn!(mount = %dir.display(), error = %e, "FUSE session ended with an error");
                }
            })
            .map_err(|source| LocalError::Fuse {
                path: mount_dir.to_path_buf(),
                source,
            })?;
        let io_flusher = match started_rx.recv() {
            Ok(Ok(io_flusher)) => io_flusher,
            Ok(Err(source)) => {
                return Err(LocalError::Fuse {
                    path: mount_dir.to_path_buf(),
                    source,
                })
            }
            Err(_) => {
                return Err(LocalError::Fuse {
                    path: mount_dir.to_path_buf(),
                    source: io::Error::other("the session thread ended before mounting"),
                })
            }
        };
        Ok(ImageServer {
            mount_dir: mount_dir.to_path_buf(),
            stats,
            io_flusher,
            ended: ended_rx,
            mounted: true,
        })
    }

    /// The path of the served image file.
    pub fn image_path(&self) -> PathBuf {
        self.mount_dir.join(IMAGE_FILE_NAME)
    }

    /// What the server did so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Whether the server's threads are marked `PR_SET_IO_FLUSHER`.
    pub fn io_flusher(&self) -> bool {
        self.io_flusher
    }

    /// Unmounts (waiting up to `timeout` while the file is still open,
    /// e.g. by a loop device being released) and waits for the session to
    /// end. EBUSY after the timeout is [`LocalError::Busy`].
    pub fn stop(&mut self, timeout: Duration) -> Result<(), LocalError> {
        if self.mounted {
            let deadline = Instant::now() + timeout;
            loop {
                match rustix::mount::unmount(&self.mount_dir, rustix::mount::UnmountFlags::empty())
                {
                    Ok(()) => break,
                    Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(rustix::io::Errno::BUSY) => {
                        return Err(LocalError::Busy {
                            path: self.mount_dir.clone(),
                        })
                    }
                    // Unmounted behind our back (EINVAL: not a mount point).
                    Err(rustix::io::Errno::INVAL) => break,
                    Err(e) => {
                        return Err(LocalError::io(
                            "unmounting FUSE at",
                            &self.mount_dir,
                            e.into(),
                        ))
                    }
                }
            }
            self.mounted = false;
        }
        // The kernel ends the connection on unmount; the workers see it
        // and the session thread returns.
        match self.ended.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => Err(LocalError::Fuse {
                path: self.mount_dir.clone(),
                source: io::Error::other("the session did not end after unmount"),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        if self.mounted {
            // Best effort: a lazy unmount never blocks; the session ends
            // when the last user (a loop device) lets go.
            if let Err(e) =
                rustix::mount::unmount(&self.mount_dir, rustix::mount::UnmountFlags::DETACH)
            {
                tracing::warn!(mount = %self.mount_dir.display(), error = %e, "lazy unmount of the FUSE server failed");
            }
        }
    }
}
