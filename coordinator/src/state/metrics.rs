//! Counters the coordinator keeps about itself, shown by `meshctl status`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    heartbeats: AtomicU64,
    connections_refused: AtomicU64,
    calls_refused: AtomicU64,
}

impl Metrics {
    pub fn count_heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_call_refused(&self) {
        self.calls_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.load(Ordering::Relaxed)
    }
    pub fn calls_refused(&self) -> u64 {
        self.calls_refused.load(Ordering::Relaxed)
    }
}
