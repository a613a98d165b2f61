//! Join tokens, issued certificates and revocations in the state
//! database: one row per record, (kind, key) -> JSON, committed before the
//! coordinator answers (a token's use is spent before a certificate
//! leaves; a revocation holds before `meshctl` hears it took effect).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError};

const IDENTITIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("identities");

impl Store {
    /// Writes (Some) or removes (None) the records, in one transaction.
    pub fn save_identity_records(
        &self,
        changes: &[(&str, &str, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(IDENTITIES).map_err(|e| self.io(e))?;
            for (kind, key, value) in changes {
                match value {
                    Some(v) => {
                        table
                            .insert((*kind, *key), v.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    None => {
                        table.remove((*kind, *key)).map_err(|e| self.io(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Every record: (kind, key, JSON).
    pub fn load_identity_records(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = match txn.open_table(IDENTITIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let (kind, key) = k.value();
            out.push((kind.to_string(), key.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}
