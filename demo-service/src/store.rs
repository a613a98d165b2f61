//! The memory mode's key-value store: an append-only log in the data
//! directory, fsynced before a write is acknowledged, replayed on start.
//!
//! Failover tests kill the service at any moment and check that no
//! acknowledged write is lost, so a `put` returns only after `fdatasync`,
//! and a torn or corrupt tail (a crash in the middle of an append) is cut
//! off on the next start instead of hiding the records after it.
//!
//! Record: `key_len: u32 LE | value_len: u32 LE | key | value | crc32 LE`,
//! the CRC (IEEE) covering everything before it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "mesh-demo-kv.log";

/// Largest key or value accepted: keeps one bad client from making every
/// later start read gigabytes.
pub const MAX_FIELD: usize = 16 * 1024 * 1024;

const HEADER: usize = 8;
const TRAILER: usize = 4;

/// One decoded `(key, value)` record.
pub type Record = (Vec<u8>, Vec<u8>);

pub struct Store {
    map: HashMap<Vec<u8>, Vec<u8>>,
    log: File,
    path: PathBuf,
    /// Length of the log up to its last complete record.
    len: u64,
    /// Set when a failed write could not be undone or fsync failed: the
    /// file's state is unknown, so no further write may be acknowledged.
    broken: Option<String>,
}

impl Store {
    /// Opens (creating it if needed) the log in `dir` and replays it.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if !existed {
            // The new directory entry must survive a crash too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot fsync data dir {}", dir.display()))?;
        }
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (records, valid) = decode(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - valid,
                "log has a torn or corrupt tail (crash during a write that was never acknowledged); cutting it off"
            );
            log.set_len(valid as u64)
                .and_then(|()| log.sync_all())
                .with_context(|| format!("cannot truncate {}", path.display()))?;
        }
        let count = records.len();
        let map: HashMap<_, _> = records.into_iter().collect();
        tracing::info!(path = %path.display(), records = count, keys = map.len(), "store loaded");
        Ok(Store {
            map,
            log,
            path,
            len: valid as u64,
            broken: None,
        })
    }

    /// Appends and fsyncs the record; only then is the value visible.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(format!(
                "store is read-only after an earlier failure: {why}"
            ));
        }
        if key.len() > MAX_FIELD || value.len() > MAX_FIELD {
            return Err(format!("key and value must be at most {MAX_FIELD} bytes"));
        }
        let record = encode(key, value);
        if let Err(e) = self.log.write_all(&record) {
            // Cut off the partial record so later appends stay readable.
            let undo = self
                .log
                .set_len(self.len)
                .and_then(|()| self.log.sync_all());
            if let Err(undo) = undo {
                self.broken = Some(format!(
                    "write failed ({e}) and could not be undone ({undo})"
                ));
            }
            return Err(format!("write to {} failed: {e}", self.path.display()));
        }
        if let Err(e) = self.log.sync_data() {
            // After a failed fsync the kernel may have dropped the pages:
            // nothing written since the last good fsync can be trusted.
            let why = format!("fsync of {} failed: {e}", self.path.display());
            self.broken = Some(why.clone());
            return Err(why);
        }
        self.len += record.len() as u64;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    pub fn count(&self) -> usize {
        self.map.len()
    }
}

pub fn encode(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + key.len() + value.len() + TRAILER);
    // Lengths fit: both are at most MAX_FIELD, checked by the caller.
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes records from the start of `bytes` until the end or the first
/// incomplete or corrupt record; returns them and the valid length.
pub fn decode(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, used)) = decode_one(&bytes[at..]) {
        records.push(record);
        at += used;
    }
    (records, at)
}

fn decode_one(bytes: &[u8]) -> Option<(Record, usize)> {
    let key_len = read_u32(bytes, 0)? as usize;
    let value_len = read_u32(bytes, 4)? as usize;
    if key_len > MAX_FIELD || value_len > MAX_FIELD {
        return None;
    }
    let body_end = HEADER + key_len + value_len;
    let stored_crc = read_u32(bytes, body_end)?;
    if crc32(bytes.get(..body_end)?) != stored_crc {
        return None;
    }
    let key = bytes.get(HEADER..HEADER + key_len)?.to_vec();
    let value = bytes.get(HEADER + key_len..body_end)?.to_vec();
    Some(((key, value), body_end + TRAILER))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// CRC-32 (IEEE 802.3), bitwise: records are small and this keeps the
/// binary free of another dependency.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TempDir;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let mut log = encode(b"a", b"1");
        log.extend(encode(b"", b""));
        log.extend(encode(b"b", b"two"));
        let whole = log.len();
        assert_eq!(decode(&log).1, whole);
        for cut in 1..encode(b"c", b"3").len() {
            let mut torn = log.clone();
            torn.extend(&encode(b"c", b"3")[..cut]);
            let (records, valid) = decode(&torn);
            assert_eq!(valid, whole, "cut at {cut}");
            assert_eq!(records.len(), 3);
        }
        let mut corrupt = log.clone();
        corrupt[HEADER] ^= 0xff; // first key byte
        assert_eq!(decode(&corrupt), (Vec::new(), 0));
    }

    #[test]
    fn puts_survive_a_reopen_and_a_torn_tail_is_cut_off() {
        let dir = TempDir::new("store-reopen");
        {
            let mut store = Store::open(&dir.0).unwrap();
            store.put(b"k1", b"v1").unwrap();
            store.put(b"k2", b"v2").unwrap();
            store.put(b"k1", b"v1b").unwrap();
        }
        // A crash in the middle of an unacknowledged append.
        let path = dir.0.join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode(b"k3", b"v3")[..5]).unwrap();
        drop(file);

        let mut store = Store::open(&dir.0).unwrap();
        assert_eq!(store.count(), 2);
        assert_eq!(store.get(b"k1"), Some(&b"v1b"[..]));
        assert_eq!(store.get(b"k3"), None);
        // Appends after the cut are readable on the next start.
        store.put(b"k4", b"v4").unwrap();
        drop(store);
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.count(), 3);
        assert_eq!(store.get(b"k4"), Some(&b"v4"[..]));
    }

    #[test]
    fn oversized_fields_are_refused() {
        let dir = TempDir::new("store-oversized");
        let mut store = Store::open(&dir.0).unwrap();
        let big = vec![0u8; MAX_FIELD + 1];
        assert!(store.put(b"k", &big).is_err());
        assert_eq!(store.count(), 0);
    }
}
