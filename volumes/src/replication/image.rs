//! The seam between replication and an image file: positional reads and
//! writes and fdatasync. A real [`std::fs::File`] is the implementation;
//! tests wrap one to simulate a crash that loses what was not synced.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub trait Image {
    /// Writes all of `buf` at `offset` (pwrite).
    fn pwrite_all(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `offset`; 0 at end of file.
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// fdatasync: returns once what was written is on stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Length of the image file in bytes.
    fn size(&self) -> io::Result<u64>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl Image for File {
    fn pwrite_all(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Fills `buf` from `offset`; what lies past the end of the file (or in a
/// hole of a sparse file) reads as zeros.
pub fn read_full<I: Image + ?Sized>(image: &I, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = match image.pread(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        done += n;
    }
    buf[done..].fill(0);
    Ok(())
}
