//! What a mesh member presents and what it refuses, both changeable while
//! it runs: the certificate and key every new handshake uses (renewal
//! swaps them without rebuilding any TLS configuration, so established
//! connections and the configurations handed to gRPC and QUIC stay), and
//! the serial numbers of revoked certificates every verifier checks.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

/// Our current certificate chain and key, swapped in place on renewal.
#[derive(Debug)]
pub(crate) struct KeyCell {
    current: RwLock<Arc<CertifiedKey>>,
}

impl KeyCell {
    pub(crate) fn new(key: CertifiedKey) -> KeyCell {
        KeyCell {
            current: RwLock::new(Arc::new(key)),
        }
    }

    pub(crate) fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }
}

impl ResolvesClientCert for KeyCell {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for KeyCell {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The join port's certificate: ours, with the root CA appended, so a
/// joining host that knows only the root's fingerprint (its token) can
/// verify the chain during the handshake, before it sends the token.
#[derive(Debug)]
pub(crate) struct WithRoot {
    pub(crate) keys: Arc<KeyCell>,
    pub(crate) root: rustls_pki_types::CertificateDer<'static>,
}

impl ResolvesServerCert for WithRoot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.keys.get();
        let mut chain = current.cert.clone();
        chain.push(self.root.clone());
        Some(Arc::new(CertifiedKey::new(chain, current.key.clone())))
    }
}

/// Serial numbers (big-endian bytes as in the certificate) that no
/// verifier of this member accepts, whoever signed them.
#[derive(Debug, Default)]
pub struct Revocations {
    serials: RwLock<BTreeSet<Vec<u8>>>,
}

impl Revocations {
    /// Replaces the whole list (the coordinator sends it whole).
    pub fn replace(&self, serials: impl IntoIterator<Item = Vec<u8>>) {
        let next: BTreeSet<Vec<u8>> = serials.into_iter().map(|s| normalize(&s)).collect();
        *self.serials.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Adds one serial.
    pub fn add(&self, serial: &[u8]) {
        self.serials
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(normalize(serial));
    }

    pub fn contains(&self, serial: &[u8]) -> bool {
        self.serials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&normalize(serial))
    }

    pub fn len(&self) -> usize {
        self.serials.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the leaf certificate (DER) carries a revoked serial. An
    /// unparsable certificate is not judged here (the chain check refuses it).
    pub fn refuses_cert(&self, leaf_der: &[u8]) -> bool {
        self.refuses(leaf_der)
    }

    pub(crate) fn refuses(&self, leaf_der: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        match x509_parser::parse_x509_certificate(leaf_der) {
            Ok((_, cert)) => self.contains(cert.raw_serial()),
            Err(_) => false,
        }
    }
}

/// DER integers may carry a leading zero byte to stay positive; compare
/// without it.
fn normalize(serial: &[u8]) -> Vec<u8> {
    let start = serial.iter().take_while(|b| **b == 0).count();
    serial[start.min(serial.len().saturating_sub(1))..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_without_leading_zeros() {
        let r = Revocations::default();
        r.add(&[0, 0x81, 2]);
        assert!(r.contains(&[0x81, 2]));
        assert!(!r.contains(&[0x81, 3]));
        r.replace(vec![vec![7]]);
        assert!(!r.contains(&[0x81, 2]));
        assert!(r.contains(&[0, 7]));
        assert_eq!(r.len(), 1);
    }
}
