//! The sqlite mode's key-value store and the sqlite-check mode's reader.
//!
//! Records live in one SQLite database file in the data directory
//! (`journal_mode=WAL`, `synchronous=FULL`): every `put` is a transaction
//! of its own and returns only after its COMMIT did, which in WAL mode
//! with `synchronous=FULL` means the WAL was fsynced. Failover tests kill
//! the service at any moment and then check, on the standby's copy of the
//! volume, that [`check`] finds `integrity_check` ok and every
//! acknowledged key present.
//!
//! Schema: `records(key BLOB PRIMARY KEY, value BLOB NOT NULL)`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::memory::Backend;
use super::store::MAX_FIELD;

/// The database's file name inside the data directory (SQLite keeps its
/// `-wal` and `-shm` files beside it).
pub const DB_FILE: &str = "mesh-demo-kv.sqlite";

/// How long a write waits for a lock another connection holds (only a
/// reader such as the checker, in normal use) before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<SqliteStore> {
        SqliteStore::open_with(dir, BUSY_TIMEOUT)
    }

    pub fn open_with(dir: &Path, busy_timeout: Duration) -> anyhow::Result<SqliteStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        let conn =
            Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(busy_timeout)
            .context("cannot set the busy timeout")?;
        // journal_mode answers with the mode now in force: a file system
        // that cannot do WAL would silently keep a rollback journal.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .with_context(|| format!("cannot set WAL mode on {}", path.display()))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{} refused WAL mode (journal_mode is {mode})",
            path.display()
        );
        conn.pragma_update(None, "synchronous", "FULL")
            .context("cannot set synchronous=FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (key BLOB PRIMARY KEY, value BLOB NOT NULL)",
        )
        .with_context(|| format!("cannot create the table in {}", path.display()))?;
        // The new file's directory entry must survive a crash too; SQLite
        // syncs the directory only for its journals.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync data dir {}", dir.display()))?;
        let store = SqliteStore { conn, path };
        let count = store.count_records()?;
        tracing::info!(path = %store.path.display(), keys = count, "database opened");
        Ok(store)
    }

    fn count_records(&self) -> anyhow::Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
            .with_context(|| format!("cannot count the records of {}", self.path.display()))
    }
}

impl Backend for SqliteStore {
    /// One transaction per write; `Ok` only once COMMIT returned.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        if key.len() > MAX_FIELD || value.len() > MAX_FIELD {
            return Err(format!("key and value must be at most {MAX_FIELD} bytes"));
        }
        let path = &self.path;
        // IMMEDIATE: take the write lock at BEGIN, so a busy database
        // fails here rather than halfway through.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| format!("cannot begin a write on {}: {e}", path.display()))?;
        tx.execute(
            "INSERT INTO records (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        .map_err(|e| format!("write to {} failed: {e}", path.display()))?;
        // On any error the dropped transaction rolls back.
        tx.commit()
            .map_err(|e| format!("commit on {} failed: {e}", path.display()))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.conn
            .query_row("SELECT value FROM records WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| format!("read from {} failed: {e}", self.path.display()))
    }

    fn count(&self) -> Result<u64, String> {
        self.count_records().map_err(|e| format!("{e:#}"))
    }
}

/// What the sqlite-check mode prints: the keys present (sorted; not valid
/// UTF-8 ones with U+FFFD in place of bad bytes) and the verdict of
/// `PRAGMA integrity_check`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub path: String,
    /// True when `integrity_check` answered exactly `ok`.
    pub integrity_ok: bool,
    /// `integrity_check`'s rows: `["ok"]`, or the problems it found.
    pub integrity_check: Vec<String>,
    pub records: usize,
    pub keys: Vec<String>,
}

/// Reads the database in `dir` read-only (it must exist; committed
/// transactions still in the `-wal` file count, as after a crash) and
/// reports its integrity and keys.
pub fn check(dir: &Path) -> anyhow::Result<CheckReport> {
    let path = dir.join(DB_FILE);
    // Read-only, never creating: a missing database is an error, not an
    // empty one. The WAL is still read (and its index rebuilt if needed).
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    let integrity_check = {
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .context("cannot run integrity_check")?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .context("cannot run integrity_check")?;
        rows.collect::<Result<Vec<_>, _>>()
            .context("cannot read integrity_check's answer")?
    };
    let integrity_ok = integrity_check == ["ok"];
    let keys = {
        let mut stmt = conn
            .prepare("SELECT key FROM records ORDER BY key")
            .with_context(|| format!("cannot read the records of {}", path.display()))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .with_context(|| format!("cannot read the records of {}", path.display()))?;
        let keys = rows
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read the records of {}", path.display()))?;
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    Ok(CheckReport {
        path: path.display().to_string(),
        integrity_ok,
        integrity_check,
        records: keys.len(),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory;

    use crate::test_dir::TempDir;

    fn key(i: usize) -> String {
        format!("key-{i:04}")
    }

    #[test]
    fn puts_survive_a_reopen_and_the_check_finds_them_all() {
        let dir = TempDir::new("sqlite-reopen");
        {
            let mut store = SqliteStore::open(&dir.0).unwrap();
            for i in 0..20 {
                store.put(key(i).as_bytes(), b"v").unwrap();
            }
            store.put(key(3).as_bytes(), b"v3b").unwrap();
            assert_eq!(store.count(), Ok(20));
        }
        let store = SqliteStore::open(&dir.0).unwrap();
        assert_eq!(store.count(), Ok(20));
        assert_eq!(store.get(key(3).as_bytes()), Ok(Some(b"v3b".to_vec())));
        assert_eq!(store.get(b"absent"), Ok(None));
        let journal: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let synchronous: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");

        let report = check(&dir.0).unwrap();
        assert!(report.integrity_ok, "{report:?}");
        assert_eq!(report.integrity_check, ["ok"]);
        assert_eq!(report.records, 20);
        assert_eq!(report.keys, (0..20).map(key).collect::<Vec<_>>());
    }

    /// What a replicated block device holds while the service runs: the
    /// files as they are, WAL not checkpointed, the writer still open.
    #[test]
    fn a_copy_taken_while_open_has_every_acknowledged_write() {
        let dir = TempDir::new("sqlite-copy");
        let copy = TempDir::new("sqlite-copy-dst");
        let mut store = SqliteStore::open(&dir.0).unwrap();
        for i in 0..50 {
            store.put(key(i).as_bytes(), &[7; 100]).unwrap();
        }
        std::fs::create_dir_all(&copy.0).unwrap();
        for entry in std::fs::read_dir(&dir.0).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.0.join(entry.file_name())).unwrap();
        }
        assert!(copy.0.join(format!("{DB_FILE}-wal")).exists());
        let report = check(&copy.0).unwrap();
        assert!(report.integrity_ok, "{report:?}");
        assert_eq!(report.keys, (0..50).map(key).collect::<Vec<_>>());
    }

    /// The reply is made from put's result, and put is `Ok` only after
    /// COMMIT: a write that cannot commit (another connection holds the
    /// write lock) is answered with an error and is not in the database;
    /// one that was answered `ok` is visible to a fresh connection.
    #[test]
    fn a_write_is_acknowledged_only_after_its_commit() {
        let dir = TempDir::new("sqlite-ack");
        let mut store = SqliteStore::open_with(&dir.0, Duration::ZERO).unwrap();
        let put = |k: &str| memory::Request::Put(k.into(), b"v".to_vec());

        let blocker = Connection::open(dir.0.join(DB_FILE)).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let reply = memory::handle(&mut store, "n", put("blocked"));
        assert!(
            reply.starts_with(b"error: "),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        blocker.execute_batch("ROLLBACK").unwrap();
        drop(blocker);
        assert_eq!(store.get(b"blocked"), Ok(None));

        assert_eq!(memory::handle(&mut store, "n", put("acked")), b"ok");
        let fresh = Connection::open(dir.0.join(DB_FILE)).unwrap();
        let present: i64 = fresh
            .query_row(
                "SELECT count(*) FROM records WHERE key = ?1",
                [&b"acked"[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(present, 1);
        assert_eq!(check(&dir.0).unwrap().keys, ["acked"]);
    }

    #[test]
    fn check_refuses_a_missing_database_and_flags_a_corrupt_one() {
        let dir = TempDir::new("sqlite-check");
        std::fs::create_dir_all(&dir.0).unwrap();
        assert!(check(&dir.0).is_err());
        assert!(
            !dir.0.join(DB_FILE).exists(),
            "the check created a database"
        );

        {
            let mut store = SqliteStore::open(&dir.0).unwrap();
            for i in 0..200 {
                store.put(key(i).as_bytes(), &[1; 500]).unwrap();
            }
            // Everything into the main file, so the damage below is seen.
            store
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let path = dir.0.join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192);
        // Garble the second page (a b-tree page), keep the header intact.
        let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        for b in &mut bytes[page_size..page_size + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        match check(&dir.0) {
            Ok(report) => assert!(!report.integrity_ok, "{report:?}"),
            // Damage SQLite meets before integrity_check runs is an error.
            Err(e) => assert!(format!("{e:#}").contains("malformed"), "{e:#}"),
        }
    }
}
