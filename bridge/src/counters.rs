//! Per-bridge counters: plain atomics updated on the data path, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Live counters of one bridge. "Out" is towards the service, "in" is back from it.
#[derive(Debug, Default)]
pub struct Counters {
    msgs_out: AtomicU64,
    bytes_out: AtomicU64,
    msgs_in: AtomicU64,
    bytes_in: AtomicU64,
    in_flight: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    late_replies: AtomicU64,
    rtt_count: AtomicU64,
    rtt_total_us: AtomicU64,
    rtt_last_us: AtomicU64,
    rtt_max_us: AtomicU64,
    rtt_buckets: LatencyHistogram,
}

/// A latency histogram on the data path: plain atomics, fixed buckets
/// ([`RTT_BUCKETS_US`]). Used for bridge round trips and for replicated
/// volumes' fsyncs.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; RTT_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A copy of a [`LatencyHistogram`]: counts per bucket (not cumulative;
/// above the last bound counts only in `count`), the count and the sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; RTT_BUCKETS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let us = micros(d);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        if let Some(i) = RTT_BUCKETS_US.iter().position(|le| us <= *le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// Upper bounds (inclusive, microseconds) of the round-trip histogram's
/// buckets; a round trip above the last counts only in the total (the
/// `+Inf` bucket). From a LAN hop (100 us) to a slow service (10 s).
pub const RTT_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A copy of a bridge's counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Messages sent towards the service.
    pub msgs_out: u64,
    /// Payload bytes sent towards the service.
    pub bytes_out: u64,
    /// Messages received from the service.
    pub msgs_in: u64,
    /// Payload bytes received from the service.
    pub bytes_in: u64,
    /// Requests sent and not yet answered (REQ/REP only).
    pub in_flight: u64,
    /// Requests answered with a bridge error, messages dropped, streams that failed.
    pub errors: u64,
    /// Requests sent a second time after the service moved or its tunnel failed.
    pub retries: u64,
    /// Replies that arrived after their request had been answered with an error or retried
    /// elsewhere; dropped so no request is answered twice.
    pub late_replies: u64,
    /// Round trips measured (REQ/REP only).
    pub rtt_count: u64,
    /// Mean round trip through the bridge.
    pub rtt_mean: Option<Duration>,
    /// Most recent round trip.
    pub rtt_last: Option<Duration>,
    /// Longest round trip.
    pub rtt_max: Option<Duration>,
    /// Sum of every round trip, in microseconds.
    pub rtt_sum_us: u64,
    /// Round trips at or under each bound of [`RTT_BUCKETS_US`] and above
    /// the one before (not cumulative).
    pub rtt_buckets: [u64; RTT_BUCKETS_US.len()],
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Counters {
    pub(crate) fn sent(&self, bytes: usize) {
        self.msgs_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.msgs_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn late_reply(&self) {
        self.late_replies.fetch_add(1, Relaxed);
    }

    pub(crate) fn rtt(&self, d: Duration) {
        let us = micros(d);
        self.rtt_count.fetch_add(1, Relaxed);
        self.rtt_total_us.fetch_add(us, Relaxed);
        self.rtt_last_us.store(us, Relaxed);
        self.rtt_max_us.fetch_max(us, Relaxed);
        self.rtt_buckets.observe(d);
    }

    /// The counters now. Fields are read one by one, so a snapshot taken under load may mix
    /// adjacent instants.
    pub fn snapshot(&self) -> CounterSnapshot {
        let rtt_count = self.rtt_count.load(Relaxed);
        let some = |us: u64| (rtt_count > 0).then(|| Duration::from_micros(us));
        let rtt_sum_us = self.rtt_total_us.load(Relaxed);
        CounterSnapshot {
            msgs_out: self.msgs_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            msgs_in: self.msgs_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            errors: self.errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
            late_replies: self.late_replies.load(Relaxed),
            rtt_count,
            rtt_mean: some(rtt_sum_us / rtt_count.max(1)),
            rtt_last: some(self.rtt_last_us.load(Relaxed)),
            rtt_max: some(self.rtt_max_us.load(Relaxed)),
            rtt_sum_us,
            rtt_buckets: self.rtt_buckets.snapshot().buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reflects_updates() {
        let c = Counters::default();
        assert_eq!(c.snapshot(), CounterSnapshot::default());
        c.rtt(Duration::from_secs(60)); // above every bucket: only the total
        let s = c.snapshot();
        assert_eq!((s.rtt_count, s.rtt_buckets.iter().sum::<u64>()), (1, 0));
        let c = Counters::default();
        c.sent(10);
        c.sent(5);
        c.received(7);
        c.set_in_flight(3);
        c.error();
        c.retry();
        c.late_reply();
        c.rtt(Duration::from_micros(100));
        c.rtt(Duration::from_micros(300));
        let s = c.snapshot();
        assert_eq!(
            (s.msgs_out, s.bytes_out, s.msgs_in, s.bytes_in),
            (2, 15, 1, 7)
        );
        assert_eq!(
            (s.in_flight, s.errors, s.retries, s.late_replies),
            (3, 1, 1, 1)
        );
        assert_eq!(s.rtt_count, 2);
        assert_eq!(s.rtt_mean, Some(Duration::from_micros(200)));
        assert_eq!(s.rtt_last, Some(Duration::from_micros(300)));
        assert_eq!(s.rtt_max, Some(Duration::from_micros(300)));
        assert_eq!(s.rtt_sum_us, 400);
        // 100 us in the first bucket (bounds are inclusive), 300 us in the third.
        assert_eq!(&s.rtt_buckets[..4], &[1, 0, 1, 0]);
    }
}
