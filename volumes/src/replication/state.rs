//! A replica's disk state and epoch, persisted in a small file next to its
//! image.
//!
//! The file is replaced atomically (write a temporary file, fsync it,
//! rename it over the old one, fsync the directory), so a crash leaves
//! either the old state or the new one. It ends with a CRC-32 of its
//! content: a torn or damaged file is reported as corrupt, never read as
//! some other state. A missing file means a replica nobody has synced yet:
//! Inconsistent, epoch 0, which can never be promoted.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::error::{io_err, Error, Result};
use super::wire::{MAX_DATA, MAX_NAME};

const MAGIC: &[u8; 8] = b"MVOLSTAT";
const FORMAT_VERSION: u8 = 1;
/// A state file is a few hundred bytes; anything larger is not ours.
const MAX_FILE: u64 = 4096;

/// How far a replica's image can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// Holds every write acknowledged in its epoch.
    UpToDate,
    /// The coordinator recorded that the primary went on without it.
    Outdated,
    /// Being resynced: blocks below `done_blocks` match the primary, the
    /// rest may not. Also the state of a replica never synced.
    Inconsistent { done_blocks: u64, total_blocks: u64 },
}

impl DiskState {
    /// Only an UpToDate replica may become primary.
    pub fn promotable(&self) -> bool {
        matches!(self, DiskState::UpToDate)
    }
}

/// Which volume an image belongs to. A standby refuses a primary whose
/// identity differs in any field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeIdentity {
    pub volume_id: String,
    pub group: String,
    pub size_bytes: u64,
    pub block_size: u32,
}

impl VolumeIdentity {
    /// Smallest block size: one sector.
    pub const MIN_BLOCK_SIZE: u32 = 512;

    /// Checks what the protocol relies on: names that fit the wire, a
    /// non-empty volume, and a power-of-two block size that fits one
    /// `Block` message.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("volume_id", &self.volume_id), ("group", &self.group)] {
            if v.is_empty() || v.len() > MAX_NAME {
                return Err(Error::Config(format!(
                    "{field} must be 1 to {MAX_NAME} bytes, is {}",
                    v.len()
                )));
            }
        }
        if self.size_bytes == 0 {
            return Err(Error::Config("size_bytes must not be 0".into()));
        }
        let bs = self.block_size;
        if !bs.is_power_of_two() || bs < Self::MIN_BLOCK_SIZE || bs as usize > MAX_DATA {
            return Err(Error::Config(format!(
                "block_size must be a power of two from {} to {MAX_DATA}, is {bs}",
                Self::MIN_BLOCK_SIZE
            )));
        }
        Ok(())
    }

    /// Number of blocks, the last one possibly short.
    pub fn total_blocks(&self) -> u64 {
        let bs = u64::from(self.block_size.max(1));
        self.size_bytes.div_ceil(bs)
    }
}

/// What is persisted for one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMeta {
    pub identity: VolumeIdentity,
    pub disk: DiskState,
    /// The epoch of the newest primary this replica accepted (or was told
    /// of by the coordinator): writes from older epochs are refused.
    pub epoch: u64,
}

impl VolumeMeta {
    /// The state of a replica that was never synced.
    pub fn unsynced(identity: VolumeIdentity) -> Self {
        let total_blocks = identity.total_blocks();
        Self {
            identity,
            disk: DiskState::Inconsistent {
                done_blocks: 0,
                total_blocks,
            },
            epoch: 0,
        }
    }

    /// Promotable only when UpToDate.
    pub fn promotable(&self) -> bool {
        self.disk.promotable()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(MAGIC);
        b.push(FORMAT_VERSION);
        put_name(&mut b, &self.identity.volume_id);
        put_name(&mut b, &self.identity.group);
        b.extend_from_slice(&self.identity.size_bytes.to_le_bytes());
        b.extend_from_slice(&self.identity.block_size.to_le_bytes());
        b.extend_from_slice(&self.epoch.to_le_bytes());
        match self.disk {
            DiskState::UpToDate => b.push(0),
            DiskState::Outdated => b.push(1),
            DiskState::Inconsistent {
                done_blocks,
                total_blocks,
            } => {
                b.push(2);
                b.extend_from_slice(&done_blocks.to_le_bytes());
                b.extend_from_slice(&total_blocks.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a state file's bytes; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or_else(|| format!("{} bytes is too short", bytes.len()))?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("checksum mismatch (torn or damaged file)".into());
        }
        let mut r = body;
        if take(&mut r, 8)? != MAGIC {
            return Err("not a volume state file (bad magic)".into());
        }
        let version = take(&mut r, 1)?[0];
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let volume_id = name(&mut r)?;
        let group = name(&mut r)?;
        let size_bytes = u64_(&mut r)?;
        let block_size = u32::from_le_bytes(arr(take(&mut r, 4)?)?);
        let epoch = u64_(&mut r)?;
        let disk = match take(&mut r, 1)?[0] {
            0 => DiskState::UpToDate,
            1 => DiskState::Outdated,
            2 => DiskState::Inconsistent {
                done_blocks: u64_(&mut r)?,
                total_blocks: u64_(&mut r)?,
            },
            c => return Err(format!("unknown disk state code {c}")),
        };
        if !r.is_empty() {
            return Err(format!("{} unexpected bytes at the end", r.len()));
        }
        Ok(Self {
            identity: VolumeIdentity {
                volume_id,
                group,
                size_bytes,
                block_size,
            },
            disk,
            epoch,
        })
    }

    /// Reads the state file. `Ok(None)` when it does not exist (a replica
    /// never synced); [`Error::CorruptState`] when it exists but cannot be
    /// trusted.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("open {}", path.display()))(e)),
        };
        let len = file
            .metadata()
            .map_err(io_err(format!("stat {}", path.display())))?
            .len();
        if len > MAX_FILE {
            return Err(Error::CorruptState {
                path: path.to_owned(),
                reason: format!("{len} bytes, larger than any state file"),
            });
        }
        let bytes = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
        Self::decode(&bytes)
            .map(Some)
            .map_err(|reason| Error::CorruptState {
                path: path.to_owned(),
                reason,
            })
    }

    /// Reads the state file, or the never-synced state when there is none.
    pub fn load_or_unsynced(path: &Path, identity: VolumeIdentity) -> Result<Self> {
        Ok(Self::load(path)?.unwrap_or_else(|| Self::unsynced(identity)))
    }

    /// Replaces the state file atomically and durably.
    pub fn store(&self, path: &Path) -> Result<()> {
        let tmp = tmp_path(path);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(format!("create {}", tmp.display())))?;
        f.write_all(&self.encode())
            .map_err(io_err(format!("write {}", tmp.display())))?;
        f.sync_all()
            .map_err(io_err(format!("fsync {}", tmp.display())))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(format!(
            "rename {} to {}",
            tmp.display(),
            path.display()
        )))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("fsync directory {}", dir.display())))
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn put_name(b: &mut Vec<u8>, s: &str) {
    // Identities come from the topology, whose names are short; cut
    // (at a character boundary) rather than write an unreadable file.
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or("");
    b.push(cut.len() as u8);
    b.extend_from_slice(cut.as_bytes());
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
    if r.len() < n {
        return Err("file ends early".into());
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

fn arr<const N: usize>(b: &[u8]) -> std::result::Result<[u8; N], String> {
    b.try_into().map_err(|_| "file ends early".to_string())
}

fn u64_(r: &mut &[u8]) -> std::result::Result<u64, String> {
    Ok(u64::from_le_bytes(arr(take(r, 8)?)?))
}

fn name(r: &mut &[u8]) -> std::result::Result<String, String> {
    let n = take(r, 1)?[0] as usize;
    String::from_utf8(take(r, n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

#[cfg(test)]
mod tests;
