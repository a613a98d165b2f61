//! The seam where replication hooks into the FUSE server: every write and
//! every fsync the server accepts also goes to a [`WriteSink`].
//!
//! The server calls the sink after the bytes are in the local image and
//! before it answers the kernel, and it calls `write` under one lock, in
//! the order the writes reached the image, so a sink that replays its
//! calls on a zeroed image of the same size gets the same bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Where the FUSE server sends each write and fsync it accepts.
///
/// Errors go back to the writer: the errno of the error if it has one
/// (`io::Error::raw_os_error`), EIO otherwise. A sink may block to apply
/// backpressure (a bounded queue towards the standby) and `fsync` may block
/// until the standby acknowledged every earlier write; the FUSE thread that
/// called it waits, which is what bounds the memory under a write burst.
pub trait WriteSink: Send + Sync + 'static {
    /// `data` was written at `offset` of the image.
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// The range `offset..offset + len` of the image now reads as zeros
    /// (a hole punched or a range zeroed by a discard from ext4).
    ///
    /// The default sends zeros through [`WriteSink::write`] in chunks of
    /// 1 MiB, which is correct but heavy for a large discard; a replicating
    /// sink should send the range instead.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write(offset + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// The image was made durable (`fdatasync`) up to every write the sink
    /// saw before this call; return only when the same holds wherever the
    /// sink sends the writes.
    fn fsync(&self) -> io::Result<()>;
}

/// The sink of a volume that is not replicated: nothing to do.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalSink;

impl WriteSink for LocalSink {
    fn write(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn write_zeroes(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    fn fsync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// One call a [`RecordingSink`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkEvent {
    /// `write(offset, data)` with `data.len() == len`.
    Write { offset: u64, len: u64 },
    /// `write_zeroes(offset, len)`.
    Zeroes { offset: u64, len: u64 },
    /// `fsync()`.
    Fsync,
}

/// A sink for tests: records every call and, optionally, applies the
/// writes to a mirror file (what a standby would hold), and can be told to
/// fail fsyncs.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<SinkEvent>>,
    mirror: Option<File>,
    fail_fsync: std::sync::atomic::AtomicBool,
}

impl RecordingSink {
    /// Records the calls only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the calls and applies them to `path` (created, or truncated
    /// to `size` bytes of zeros).
    pub fn with_mirror(path: &Path, size: u64) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size)?;
        Ok(Self {
            mirror: Some(file),
            ..Self::default()
        })
    }

    /// Makes later fsyncs fail with EIO (`true`) or succeed again.
    pub fn set_fail_fsync(&self, fail: bool) {
        self.fail_fsync
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// The calls seen so far, in order.
    pub fn events(&self) -> Vec<SinkEvent> {
        self.lock().clone()
    }

    /// How many writes (with zeroed ranges) and fsyncs were seen.
    pub fn counts(&self) -> (usize, usize) {
        let events = self.lock();
        let fsyncs = events.iter().filter(|e| **e == SinkEvent::Fsync).count();
        (events.len() - fsyncs, fsyncs)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SinkEvent>> {
        // A panic while holding the lock leaves a usable Vec behind.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl WriteSink for RecordingSink {
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(mirror) = &self.mirror {
            mirror.write_all_at(data, offset)?;
        }
        self.lock().push(SinkEvent::Write {
            offset,
            len: data.len() as u64,
        });
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if let Some(mirror) = &self.mirror {
            rustix::fs::fallocate(
                mirror,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                offset,
                len,
            )?;
        }
        self.lock().push(SinkEvent::Zeroes { offset, len });
        Ok(())
    }

    fn fsync(&self) -> io::Result<()> {
        if self.fail_fsync.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        if let Some(mirror) = &self.mirror {
            mirror.sync_data()?;
        }
        self.lock().push(SinkEvent::Fsync);
        Ok(())
    }
}
