//! The event history in the state database: one row per event, keyed by
//! its sequence number, bounded to the newest [`EVENTS_KEPT`].

use mesh_proto::v1::MeshEvent;
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Store, StoreError};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// How many events the store keeps (the oldest go first).
pub const EVENTS_KEPT: u64 = 100_000;

/// Events older than the age bound dropped per append at most.
const PRUNE_BATCH: usize = 64;

impl Store {
    /// Appends `e` and drops what is beyond the newest `keep` and what is
    /// older than `cutoff_unix_ms` (at most a bounded batch per call, so
    /// a long backlog goes over a few appends, none of them slow). With
    /// `durable`, on disk before this returns (and so is every event
    /// appended before it); without, it becomes durable with the next
    /// durable commit of this database.
    pub fn append_event(
        &self,
        e: &MeshEvent,
        keep: u64,
        cutoff_unix_ms: Option<i64>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|x| self.io(x))?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|x| self.io(x))?;
        }
        {
            let mut table = txn.open_table(EVENTS).map_err(|x| self.io(x))?;
            table
                .insert(e.seq, e.encode_to_vec().as_slice())
                .map_err(|x| self.io(x))?;
            let len = table.len().map_err(|x| self.io(x))?;
            if len > keep {
                let cut = e.seq.saturating_sub(keep);
                table
                    .retain_in(..=cut, |_, _| false)
                    .map_err(|x| self.io(x))?;
            }
            if let Some(cutoff) = cutoff_unix_ms {
                // Sequence numbers grow with time: the old ones are first.
                for _ in 0..PRUNE_BATCH {
                    let first = table.first().map_err(|x| self.io(x))?;
                    let Some((seq, bytes)) = first.map(|(k, v)| (k.value(), v.value().to_vec()))
                    else {
                        break;
                    };
                    let at = MeshEvent::decode(bytes.as_slice()).map_or(i64::MAX, |m| m.at_unix_ms);
                    if at >= cutoff || seq == e.seq {
                        break;
                    }
                    table.remove(seq).map_err(|x| self.io(x))?;
                }
            }
        }
        txn.commit().map_err(|x| self.io(x))
    }

    /// Makes everything committed so far durable (an empty durable commit).
    pub fn flush(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|x| self.io(x))?;
        txn.commit().map_err(|x| self.io(x))
    }

    /// The newest `limit` events that `keep` accepts, oldest first.
    pub fn load_events(
        &self,
        limit: usize,
        keep: impl Fn(&MeshEvent) -> bool,
    ) -> Result<Vec<MeshEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(|x| self.io(x))?;
        let table = match txn.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(x) => return Err(self.io(x)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|x| self.io(x))?.rev() {
            let (k, v) = row.map_err(|x| self.io(x))?;
            let e = MeshEvent::decode(v.value()).map_err(|x| StoreError::Corrupt {
                path: self.path.clone(),
                key: format!("event {}", k.value()),
                message: x.to_string(),
            })?;
            if keep(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The highest event sequence number stored (0: none).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|x| self.io(x))?;
        let table = match txn.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(x) => return Err(self.io(x)),
        };
        let last = table.last().map_err(|x| self.io(x))?;
        Ok(last.map_or(0, |(k, _)| k.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, node: &str) -> MeshEvent {
        MeshEvent {
            seq,
            at_unix_ms: seq as i64,
            kind: "node".into(),
            node: node.into(),
            message: format!("event {seq}"),
            ..Default::default()
        }
    }

    #[test]
    fn events_are_kept_bounded_and_read_back_newest_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.last_event_seq().expect("seq"), 0);
        for seq in 1..=30 {
            let node = if seq % 2 == 0 { "pc2" } else { "mainpc" };
            store
                .append_event(&event(seq, node), 20, None, seq % 7 == 0 || seq == 30)
                .expect("append");
        }
        let all = store.load_events(1000, |_| true).expect("load");
        assert_eq!(all.len(), 20, "bounded to the newest 20");
        assert_eq!(all.first().map(|e| e.seq), Some(11));
        assert_eq!(all.last().map(|e| e.seq), Some(30));
        let pc2 = store.load_events(3, |e| e.node == "pc2").expect("load");
        let seqs: Vec<u64> = pc2.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [26, 28, 30]);
        drop(store);
        let again = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.last_event_seq().expect("seq"), 30);
    }

    #[test]
    fn events_older_than_the_age_bound_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for seq in 1..=100 {
            // Times are the sequence numbers: keep those at or after 90.
            store
                .append_event(&event(seq, "pc2"), 1000, Some(90), false)
                .expect("append");
        }
        let all = store.load_events(1000, |_| true).expect("load");
        assert_eq!(all.first().map(|e| e.seq), Some(90), "{} kept", all.len());
        assert_eq!(all.len(), 11);
    }
}
