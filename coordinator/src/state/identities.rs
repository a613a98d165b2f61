//! Who may join and who is refused: join tokens (kept as digests), the
//! certificates the coordinator issued or saw in use, and revocations.
//! Every change is committed to the state database before it is acted
//! on; decisions are in [`crate::decide::admission`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mesh_certs::{JoinToken, Role};
use serde::{Deserialize, Serialize};

use crate::decide::admission::{self, Admitted, Refusal, TokenRecord};
use crate::state::store::{Store, StoreError};

/// A certificate of a mesh member, by serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// spiffe://MESH/ROLE/NAME ("" for a serial revoked without being seen).
    pub identity: String,
    pub role: String,
    pub name: String,
    /// Hex, as `meshctl certs list` and `revoke` show it.
    pub serial: String,
    pub not_after_unix: i64,
    /// When the coordinator issued it (0: issued offline, seen in use).
    pub issued_unix: i64,
    pub revoked: bool,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: BTreeMap<String, TokenRecord>,
    certs: BTreeMap<String, CertRecord>,
}

#[derive(Debug)]
pub struct Identities {
    store: Option<Arc<Store>>,
    inner: Mutex<Inner>,
}

const TOKEN: &str = "token";
const CERT: &str = "cert";
/// Expired certificates are forgotten this long after they expire.
const KEEP_EXPIRED_S: i64 = 24 * 3600;

pub fn serial_hex(serial: &[u8]) -> String {
    let start = serial.iter().take_while(|b| **b == 0).count();
    serial[start.min(serial.len().saturating_sub(1))..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn serial_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

impl Identities {
    pub fn new(store: Option<Arc<Store>>) -> Result<Identities, StoreError> {
        let mut inner = Inner::default();
        if let Some(s) = &store {
            for (kind, key, bytes) in s.load_identity_records()? {
                let where_ = format!("identities/{kind}/{key}");
                let corrupt = |e: serde_json::Error| StoreError::Corrupt {
                    path: s.path().to_path_buf(),
                    key: where_.clone(),
                    message: e.to_string(),
                };
                match kind.as_str() {
                    TOKEN => {
                        inner
                            .tokens
                            .insert(key, serde_json::from_slice(&bytes).map_err(corrupt)?);
                    }
                    CERT => {
                        inner
                            .certs
                            .insert(key, serde_json::from_slice(&bytes).map_err(corrupt)?);
                    }
                    _ => {}
                }
            }
        }
        Ok(Identities {
            store,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist<V: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: Option<&V>,
    ) -> Result<(), String> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let bytes = match value {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| e.to_string())?),
            None => None,
        };
        store
            .save_identity_records(&[(kind, key, bytes)])
            .map_err(|e| e.to_string())
    }

    /// A new token; the record is committed before the token is returned.
    pub fn create_token(
        &self,
        ca_fingerprint: &str,
        spec: TokenSpec,
        now_unix: i64,
    ) -> Result<(JoinToken, TokenRecord), String> {
        let TokenSpec {
            role,
            name,
            ttl_s,
            uses,
            by,
        } = spec;
        let token = JoinToken::generate(ca_fingerprint).map_err(|e| e.to_string())?;
        let record = TokenRecord {
            id: token.id.clone(),
            digest: token.secret_digest(),
            role: role.to_string(),
            name,
            expires_unix: now_unix.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX)),
            uses_left: uses,
            created_by: by,
            created_unix: now_unix,
        };
        let mut inner = self.lock();
        self.persist(TOKEN, &record.id, Some(&record))?;
        inner.tokens.insert(record.id.clone(), record.clone());
        Ok((token, record))
    }

    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.lock().tokens.values().cloned().collect()
    }

    /// Whether the token existed.
    pub fn revoke_token(&self, id: &str) -> Result<bool, String> {
        let mut inner = self.lock();
        if !inner.tokens.contains_key(id) {
            return Ok(false);
        }
        self.persist::<TokenRecord>(TOKEN, id, None)?;
        inner.tokens.remove(id);
        Ok(true)
    }

    /// Admits `token` for `role`/`name`, then runs `issue` for the admitted
    /// name (it signs, returning serial and expiry); only when that succeeds
    /// is a use spent and the certificate recorded, both committed before
    /// this returns. On any refusal or failure nothing changes.
    pub fn join<T>(
        &self,
        ask: JoinAsk<'_>,
        registered: impl Fn(&str) -> bool,
        issue: impl FnOnce(&Admitted) -> Result<(T, CertRecord), String>,
    ) -> Result<T, JoinError> {
        let JoinAsk {
            ca_fingerprint,
            token,
            role,
            name,
            now_unix,
        } = ask;
        let mut inner = self.lock();
        let admitted = {
            let certs = &inner.certs;
            let taken = |role: Role, name: &str| {
                (role == Role::Agent && registered(name))
                    || certs.values().any(|c| {
                        c.role == role.as_str()
                            && c.name == name
                            && !c.revoked
                            && c.not_after_unix > now_unix
                    })
            };
            admission::admit(
                &inner.tokens,
                ca_fingerprint,
                token,
                role,
                name,
                now_unix,
                taken,
            )
            .map_err(JoinError::Refused)?
        };
        let (out, cert) = issue(&admitted).map_err(JoinError::Failed)?;
        let mut record = inner
            .tokens
            .get(&admitted.token_id)
            .cloned()
            .ok_or_else(|| JoinError::Failed("the token vanished".into()))?;
        record.uses_left = record.uses_left.saturating_sub(1);
        let token_change = (record.uses_left > 0)
            .then(|| serde_json::to_vec(&record))
            .transpose()
            .map_err(|e| JoinError::Failed(e.to_string()))?;
        let cert_bytes = serde_json::to_vec(&cert).map_err(|e| JoinError::Failed(e.to_string()))?;
        if let Some(store) = &self.store {
            store
                .save_identity_records(&[
                    (TOKEN, &record.id, token_change),
                    (CERT, &cert.serial, Some(cert_bytes)),
                ])
                .map_err(|e| JoinError::Failed(e.to_string()))?;
        }
        if record.uses_left > 0 {
            inner.tokens.insert(record.id.clone(), record);
        } else {
            inner.tokens.remove(&record.id);
        }
        inner.certs.insert(cert.serial.clone(), cert);
        Ok(out)
    }

    /// Records a certificate the coordinator issued (committed first).
    pub fn record_issued(&self, cert: CertRecord) -> Result<(), String> {
        let mut inner = self.lock();
        self.persist(CERT, &cert.serial, Some(&cert))?;
        inner.certs.insert(cert.serial.clone(), cert);
        Ok(())
    }

    /// Notes a certificate seen in use (issued offline); kept in memory
    /// only until it is revoked. Forgets long-expired certificates.
    pub fn record_seen(&self, cert: CertRecord, now_unix: i64) {
        let mut inner = self.lock();
        inner.certs.entry(cert.serial.clone()).or_insert(cert);
        let stale: Vec<String> = inner
            .certs
            .values()
            .filter(|c| !c.revoked && c.not_after_unix + KEEP_EXPIRED_S < now_unix)
            .map(|c| c.serial.clone())
            .collect();
        for s in &stale {
            inner.certs.remove(s);
            let _ = self.persist::<CertRecord>(CERT, s, None);
        }
    }

    /// Revokes every known certificate of `role`/`name`; their serials.
    pub fn revoke_identity(&self, role: Role, name: &str) -> Result<Vec<String>, String> {
        let mut inner = self.lock();
        let mut revoked = Vec::new();
        for c in inner.certs.values_mut() {
            if c.role == role.as_str() && c.name == name && !c.revoked {
                let mut next = c.clone();
                next.revoked = true;
                self.persist(CERT, &next.serial, Some(&next))?;
                *c = next;
                revoked.push(c.serial.clone());
            }
        }
        Ok(revoked)
    }

    /// Revokes one serial (hex); the identity it belonged to, if known.
    pub fn revoke_serial(&self, serial: &str) -> Result<Option<String>, String> {
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        let bytes = serial_bytes(&serial)
            .ok_or_else(|| format!("'{serial}' is not a certificate serial (hex digits, as `meshctl certs list` shows)"))?;
        let serial = serial_hex(&bytes);
        let mut inner = self.lock();
        let mut record = inner.certs.get(&serial).cloned().unwrap_or(CertRecord {
            identity: String::new(),
            role: String::new(),
            name: String::new(),
            serial: serial.clone(),
            not_after_unix: i64::MAX,
            issued_unix: 0,
            revoked: true,
        });
        record.revoked = true;
        self.persist(CERT, &serial, Some(&record))?;
        let identity = (!record.identity.is_empty()).then(|| record.identity.clone());
        inner.certs.insert(serial, record);
        Ok(identity)
    }

    /// Serials (bytes) revoked and not yet expired, for handshakes and the directory.
    pub fn revoked_serials(&self, now_unix: i64) -> Vec<Vec<u8>> {
        self.lock()
            .certs
            .values()
            .filter(|c| c.revoked && c.not_after_unix > now_unix)
            .filter_map(|c| serial_bytes(&c.serial))
            .collect()
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.lock()
            .certs
            .get(&serial_hex(serial))
            .is_some_and(|c| c.revoked)
    }

    pub fn certs(&self) -> Vec<CertRecord> {
        self.lock().certs.values().cloned().collect()
    }

    /// The newest certificate of `role`/`name` (by expiry).
    pub fn newest(&self, role: Role, name: &str) -> Option<CertRecord> {
        self.lock()
            .certs
            .values()
            .filter(|c| c.role == role.as_str() && c.name == name && !c.revoked)
            .max_by_key(|c| c.not_after_unix)
            .cloned()
    }
}

/// What a new token admits.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub role: Role,
    pub name: Option<String>,
    pub ttl_s: u64,
    pub uses: u32,
    /// Who made it (the admin's identity).
    pub by: String,
}

/// A join as asked for.
#[derive(Clone, Copy, Debug)]
pub struct JoinAsk<'a> {
    pub ca_fingerprint: &'a str,
    pub token: &'a JoinToken,
    pub role: Role,
    pub name: &'a str,
    pub now_unix: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Refused(Refusal),
    #[error("cannot issue the certificate: {0}")]
    Failed(String),
}
