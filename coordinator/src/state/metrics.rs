//! Counters the coordinator keeps about itself, shown by `meshctl status`
//! and `/metrics`; refusals by reason, from a fixed set of reasons.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    heartbeats: AtomicU64,
    connections_refused: Mutex<BTreeMap<&'static str, u64>>,
    calls_refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// Why a TLS connection was refused, from its handshake error: one of a
/// few words, so the metric's label values stay bounded.
pub fn connection_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.starts_with("overload") {
        "overload"
    } else if e.starts_with("peer_limit") {
        "peer_limit"
    } else if e.contains("revoked") {
        "revoked"
    } else if e.contains("not finished within") || e.contains("timed out") {
        "timeout"
    } else if e.contains("unknownissuer") || e.contains("unknown issuer") || e.contains("unknownca")
    {
        "unknown_ca"
    } else if e.contains("expired") || e.contains("notvalidyet") {
        "expired"
    } else if e.contains("nocertificatespresented") || e.contains("no certificate") {
        "no_certificate"
    } else if e.contains("badsignature")
        || e.contains("badencoding")
        || e.contains("invalidcertificate")
    {
        "bad_certificate"
    } else {
        "handshake"
    }
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, reason: &'static str) {
    *m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(reason)
        .or_insert(0) += 1;
}

fn total(m: &Mutex<BTreeMap<&'static str, u64>>) -> u64 {
    m.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
}

impl Metrics {
    pub fn count_heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }
    /// A TLS connection refused (see [`connection_reason`]).
    pub fn count_connection_refused(&self, reason: &'static str) {
        bump(&self.connections_refused, reason);
    }
    /// A call refused: "no_identity", "wrong_mesh", "wrong_role",
    /// "wrong_name" (an agent registering under another name) or
    /// "protocol".
    pub fn count_call_refused(&self, reason: &'static str) {
        bump(&self.calls_refused, reason);
    }
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }
    pub fn connections_refused(&self) -> u64 {
        total(&self.connections_refused)
    }
    pub fn calls_refused(&self) -> u64 {
        total(&self.calls_refused)
    }
    pub fn connections_refused_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.connections_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn calls_refused_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.calls_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_map_to_a_few_reasons() {
        assert_eq!(
            connection_reason("invalid peer certificate: UnknownIssuer"),
            "unknown_ca"
        );
        assert_eq!(
            connection_reason("invalid peer certificate: Expired"),
            "expired"
        );
        assert_eq!(
            connection_reason("peer sent no certificates (NoCertificatesPresented)"),
            "no_certificate"
        );
        assert_eq!(
            connection_reason("TLS handshake not finished within 10s"),
            "timeout"
        );
        assert_eq!(connection_reason("received corrupt message"), "handshake");
        let m = Metrics::default();
        m.count_connection_refused("unknown_ca");
        m.count_connection_refused("unknown_ca");
        m.count_call_refused("wrong_role");
        assert_eq!((m.connections_refused(), m.calls_refused()), (2, 1));
        assert_eq!(m.connections_refused_by_reason()["unknown_ca"], 2);
    }
}
