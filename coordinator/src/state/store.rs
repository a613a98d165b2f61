//! The coordinator's durable state, in an embedded redb database: the
//! applied topology and its placement, the last generation handed out for
//! the directory and each node's container set, and the operators' holds.
//! Written before anything is acted on or sent, so a restarted coordinator
//! resumes the rollout, numbers above what agents hold, and keeps held
//! containers held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mesh_proto::v1::Hold;

use crate::decide::volumes::{RecordKey, VolumeRecord};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const APPLIED_KEY: &str = "applied-topology";
/// What was numbered last -> its generation (see [`GenerationKey`]).
const GENERATIONS: TableDefinition<&str, u64> = TableDefinition::new("generations");
/// (node, container) -> the operator's hold (a `Hold` number, never NONE).
const HOLDS: TableDefinition<(&str, &str), i32> = TableDefinition::new("holds");
/// (group, volume) -> its record (JSON): primary, standby, epoch, and
/// whether the standby is Outdated.
const VOLUMES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("volumes");

mod events;
mod identities;
pub use events::EVENTS_KEPT;

/// What a generation numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenerationKey {
    /// The bridge directory (one for the mesh).
    Directory,
    /// One node's desired container set.
    Desired(String),
}

impl GenerationKey {
    fn key(&self) -> String {
        match self {
            GenerationKey::Directory => "directory".into(),
            GenerationKey::Desired(node) => format!("desired/{node}"),
        }
    }
}

/// A topology as applied: its text, where it came from, and where its
/// groups were placed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub source_name: String,
    pub topology_toml: String,
    pub applied_unix_ms: i64,
    /// group -> host
    pub placement: BTreeMap<String, String>,
    pub timeout_seconds: u32,
    /// host -> IP that containers there reach bridge endpoints at (part of
    /// their environment, so it is kept to rebuild the same specs).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// group -> the GPU index of each of its VRAM needs on its host, as
    /// the plan chose them (for the planned-VRAM figures; a failover keeps
    /// them).
    #[serde(default)]
    pub gpus: BTreeMap<String, Vec<usize>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {message}; check that the directory exists and is writable, and that no other coordinator uses it")]
    Open { path: PathBuf, message: String },
    #[error("state database {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("state database {path} holds an unreadable record '{key}': {message}; move the file away to start from an empty state")]
    Corrupt {
        path: PathBuf,
        key: String,
        message: String,
    },
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `DIR/coordinator.redb`, creating DIR if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("coordinator.redb");
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.clone(),
            message: e.to_string(),
        };
        // A new database is made under a temporary name and renamed into
        // place: a coordinator killed while creating it leaves no
        // half-written file that a restart would refuse to open.
        if !path.exists() {
            let tmp = dir.join("coordinator.redb.creating");
            let _ = std::fs::remove_file(&tmp);
            drop(Database::create(&tmp).map_err(|e| open_error(&e))?);
            std::fs::rename(&tmp, &path).map_err(|e| open_error(&e))?;
        }
        let db = Database::create(&path).map_err(|e| open_error(&e))?;
        Ok(Store { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Durably records `applied` (committed before this returns).
    pub fn save_applied(&self, applied: &Applied) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(applied).map_err(|e| self.io(e))?;
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(STATE).map_err(|e| self.io(e))?;
            table
                .insert(APPLIED_KEY, bytes.as_slice())
                .map_err(|e| self.io(e))?;
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// The last applied topology, if any.
    pub fn load_applied(&self) -> Result<Option<Applied>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = match txn.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let Some(value) = table.get(APPLIED_KEY).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                key: APPLIED_KEY.into(),
                message: e.to_string(),
            })
    }
}

impl Store {
    /// Numbers the next `key`: above `at_least - 1`, above what this
    /// database last recorded for it, and recorded (committed) before this
    /// returns, so whatever is sent with it is older than anything a later
    /// process numbers.
    pub fn next_generation(&self, key: &GenerationKey, at_least: u64) -> Result<u64, StoreError> {
        let key = key.key();
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        let next = {
            let mut table = txn.open_table(GENERATIONS).map_err(|e| self.io(e))?;
            let persisted = table
                .get(key.as_str())
                .map_err(|e| self.io(e))?
                .map_or(0, |v| v.value());
            let next = at_least.max(persisted.saturating_add(1));
            table.insert(key.as_str(), next).map_err(|e| self.io(e))?;
            next
        };
        txn.commit().map_err(|e| self.io(e))?;
        Ok(next)
    }

    /// Records `hold` on `container` of `node` (HOLD_NONE removes it).
    pub fn save_hold(&self, node: &str, container: &str, hold: Hold) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(HOLDS).map_err(|e| self.io(e))?;
            if hold == Hold::None {
                table.remove((node, container)).map_err(|e| self.io(e))?;
            } else {
                table
                    .insert((node, container), hold as i32)
                    .map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Every recorded hold: node -> container -> hold.
    pub fn load_holds(&self) -> Result<BTreeMap<String, BTreeMap<String, Hold>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = match txn.open_table(HOLDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut out: BTreeMap<String, BTreeMap<String, Hold>> = BTreeMap::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let (node, container) = k.value();
            let hold = Hold::try_from(v.value()).map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                key: format!("hold of {node}/{container}"),
                message: format!("{} is not a hold", v.value()),
            })?;
            out.entry(node.to_string())
                .or_default()
                .insert(container.to_string(), hold);
        }
        Ok(out)
    }
}

impl Store {
    /// Durably records `records` in one transaction (committed before
    /// this returns).
    pub fn save_volumes(&self, records: &[VolumeRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(VOLUMES).map_err(|e| self.io(e))?;
            for r in records {
                let bytes = serde_json::to_vec(r).map_err(|e| self.io(e))?;
                table
                    .insert((r.group.as_str(), r.name.as_str()), bytes.as_slice())
                    .map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Every volume record.
    pub fn load_volumes(&self) -> Result<BTreeMap<RecordKey, VolumeRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = match txn.open_table(VOLUMES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut out = BTreeMap::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let (group, name) = k.value();
            let record: VolumeRecord =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    key: format!("volume {group}/{name}"),
                    message: e.to_string(),
                })?;
            out.insert(record.key(), record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_grow_across_reopening_and_a_clock_stepped_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let key = GenerationKey::Directory;
        assert_eq!(store.next_generation(&key, 5000).expect("number"), 5000);
        assert_eq!(store.next_generation(&key, 5000).expect("number"), 5001);
        let pc2 = GenerationKey::Desired("pc2".into());
        assert_eq!(
            store.next_generation(&pc2, 1).expect("number"),
            1,
            "own key"
        );
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        // The wall clock went back to 10: still above what was handed out.
        assert_eq!(store.next_generation(&key, 10).expect("number"), 5002);
        assert_eq!(store.next_generation(&pc2, 10).expect("number"), 10);
    }

    #[test]
    fn holds_survive_reopening_and_none_lifts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.load_holds().expect("load").is_empty());
        store.save_hold("pc2", "mem", Hold::Stopped).expect("save");
        store.save_hold("pc2", "llm", Hold::Paused).expect("save");
        store.save_hold("pc2", "llm", Hold::Killed).expect("save");
        store.save_hold("mainpc", "x", Hold::Paused).expect("save");
        store.save_hold("mainpc", "x", Hold::None).expect("save");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let holds = store.load_holds().expect("load");
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds["pc2"]["mem"], Hold::Stopped);
        assert_eq!(holds["pc2"]["llm"], Hold::Killed);
    }

    #[test]
    fn volume_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let r = VolumeRecord {
            group: "memory".into(),
            name: "db".into(),
            size_bytes: 1 << 26,
            replicate: true,
            primary: "mainpc".into(),
            standby: "pc2".into(),
            epoch: 1,
            standby_outdated: false,
            attached: false,
            home: "mainpc".into(),
            ..Default::default()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.load_volumes().unwrap().is_empty());
            store.save_volumes(std::slice::from_ref(&r)).unwrap();
            let mut outdated = r.clone();
            outdated.standby_outdated = true;
            store.save_volumes(&[outdated]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let loaded = store.load_volumes().unwrap();
        assert_eq!(loaded.len(), 1);
        assert!(loaded[&r.key()].standby_outdated);
    }

    #[test]
    fn applied_topology_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.load_applied().expect("load"), None);
        let applied = Applied {
            source_name: "ai-system.toml".into(),
            topology_toml: "[[hosts]]\nname = \"pc2\"\n".into(),
            applied_unix_ms: 42,
            placement: [("memory-system".to_string(), "pc2".to_string())].into(),
            timeout_seconds: 300,
            addresses: [("pc2".to_string(), "10.99.0.2".to_string())].into(),
            gpus: [("memory-system".to_string(), vec![1])].into(),
        };
        store.save_applied(&applied).expect("save");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.load_applied().expect("load"), Some(applied));
    }

    #[test]
    fn unusable_directory_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = Store::open(&file).expect_err("a file is not a directory");
        let text = err.to_string();
        assert!(text.contains("not-a-dir"), "{text}");
        assert!(text.contains("writable"), "{text}");
    }
}
