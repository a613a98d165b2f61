//! The image filesystem: a FUSE filesystem with one regular file, `image`, whose
//! bytes are those of a sparse backing file of fixed size.
//!
//! Only the loop device opens the file. Every write goes to the backing
//! file and then to the [`WriteSink`], under one lock so the sink sees the
//! image's order; fsync is `fdatasync` of the backing file and then the
//! sink's fsync, before the answer (never ENOSYS: after one ENOSYS the
//! kernel would treat every later fsync as done without asking).
//!
//! Caching: the file is opened with `FOPEN_DIRECT_IO`, so the kernel keeps
//! no page cache for it: ext4 above already caches the volume's pages, and
//! a second copy in the FUSE file's cache would only double the memory and
//! hide nothing from us (a write reaches this server before the loop device
//! completes it either way). The loop device is also attached with
//! `--direct-io=on` (see `blockdev`); with `FOPEN_DIRECT_IO` the file
//! bypasses the cache even when the kernel refuses that. The backing
//! file's own page cache is the host's ordinary one.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, INodeNo, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};
use rustix::fs::FallocateFlags;

use super::sink::WriteSink;

/// The name of the one file in the FUSE mount.
pub const IMAGE_FILE_NAME: &str = "image";

const IMAGE_INO: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);
const BLOCK: u32 = 4096;

/// Counters of what the server did, for logs and tests.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub fsyncs: AtomicU64,
    pub errors: AtomicU64,
}

pub(super) struct ImageFs {
    file: File,
    size: u64,
    sink: Arc<dyn WriteSink>,
    /// Held across the image write and the sink call, so the sink sees
    /// writes in the image's order.
    write_order: Mutex<()>,
    uid: u32,
    gid: u32,
    started: SystemTime,
    stats: Arc<ServerStats>,
}

fn errno_of(e: &io::Error) -> Errno {
    match e.raw_os_error() {
        Some(code) => Errno::from_i32(code),
        None => Errno::EIO,
    }
}

impl ImageFs {
    pub(super) fn new(
        file: File,
        size: u64,
        sink: Arc<dyn WriteSink>,
        stats: Arc<ServerStats>,
    ) -> ImageFs {
        ImageFs {
            file,
            size,
            sink,
            write_order: Mutex::new(()),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            started: SystemTime::now(),
            stats,
        }
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, nlink, size, blocks) = if ino == INodeNo::ROOT {
            (FileType::Directory, 0o700, 2, 0, 0)
        } else if ino == IMAGE_INO {
            let blocks = self.file.metadata().map(|m| m.blocks()).unwrap_or(0);
            (FileType::RegularFile, 0o600, 1, self.size, blocks)
        } else {
            return None;
        };
        Some(FileAttr {
            ino,
            size,
            blocks,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK,
            flags: 0,
        })
    }

    fn failed(&self, e: Errno) -> Errno {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        e
    }

    /// The part of `offset..offset + len` inside the image, if any.
    fn clamp(&self, offset: u64, len: u64) -> Option<u64> {
        (offset < self.size).then(|| len.min(self.size - offset))
    }

    fn do_write(&self, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        // Like a block device: a write at or past the end is ENOSPC, one
        // that crosses the end is cut short.
        let Some(len) = self.clamp(offset, data.len() as u64) else {
            return Err(Errno::ENOSPC);
        };
        let data = &data[..len as usize];
        let _order = self
            .write_order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.file
            .write_all_at(data, offset)
            .map_err(|e| errno_of(&e))?;
        self.sink.write(offset, data).map_err(|e| errno_of(&e))?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(len as u32)
    }

    fn do_fsync(&self) -> Result<(), Errno> {
        self.file.sync_data().map_err(|e| errno_of(&e))?;
        self.sink.fsync().map_err(|e| errno_of(&e))?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn do_fallocate(&self, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        let Some(flags) = u32::try_from(mode).ok().and_then(FallocateFlags::from_bits) else {
            return Err(Errno::EOPNOTSUPP);
        };
        let keep_size = flags.contains(FallocateFlags::KEEP_SIZE);
        let end = offset.checked_add(length).ok_or(Errno::EINVAL)?;
        if end > self.size && !keep_size {
            // The image cannot grow.
            return Err(Errno::EFBIG);
        }
        let Some(len) = self.clamp(offset, length) else {
            return Ok(());
        };
        let zeroing = flags.intersects(FallocateFlags::PUNCH_HOLE | FallocateFlags::ZERO_RANGE);
        if flags.difference(FallocateFlags::KEEP_SIZE).is_empty() {
            // Reserve space in the backing file; the bytes do not change.
            return rustix::fs::fallocate(&self.file, FallocateFlags::KEEP_SIZE, offset, len)
                .map_err(|e| Errno::from_i32(e.raw_os_error()));
        }
        if !zeroing
            || !flags
                .difference(FallocateFlags::PUNCH_HOLE | FallocateFlags::ZERO_RANGE)
                .difference(FallocateFlags::KEEP_SIZE)
                .is_empty()
        {
            return Err(Errno::EOPNOTSUPP);
        }
        // A discard or zeroing from the loop device: the range reads as
        // zeros afterwards, here as a hole, and the sink is told so.
        let _order = self
            .write_order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(|e| Errno::from_i32(e.raw_os_error()))?;
        self.sink
            .write_zeroes(offset, len)
            .map_err(|e| errno_of(&e))
    }
}

impl fuser::Filesystem for ImageFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.attr(IMAGE_INO) {
            Some(attr) if parent == INodeNo::ROOT && name == IMAGE_FILE_NAME => {
                reply.entry(&TTL, &attr, fuser::Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The size is the volume's; owner, mode and times are fixed.
        match (self.attr(ino), size) {
            (None, _) => reply.error(Errno::ENOENT),
            (Some(_), Some(s)) if s != self.size => reply.error(Errno::EPERM),
            (Some(attr), _) => reply.attr(&TTL, &attr),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == IMAGE_INO {
            reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
            );
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        if ino != IMAGE_INO {
            return reply.error(Errno::EISDIR);
        }
        let Some(len) = self.clamp(offset, u64::from(size)) else {
            return reply.data(&[]);
        };
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                // A sparse file's bytes past its end read as zeros.
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(self.failed(errno_of(&e))),
            }
        }
        reply.data(&buf);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != IMAGE_INO {
            return reply.error(Errno::EISDIR);
        }
        match self.do_write(offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.failed(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is not a durability point; fsync is.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The image's size and owner never change, so fdatasync is all
        // the durability an fsync needs.
        match self.do_fsync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.failed(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (IMAGE_INO, FileType::RegularFile, IMAGE_FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.size / u64::from(BLOCK);
        reply.statfs(blocks, 0, 0, 1, 0, BLOCK, 255, BLOCK);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if ino != IMAGE_INO {
            return reply.error(Errno::EISDIR);
        }
        match self.do_fallocate(offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.failed(e)),
        }
    }
}
