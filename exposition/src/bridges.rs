//! The bridge and tunnel part of `/metrics`, from each agent's latest
//! heartbeat (see [`super::traffic`]): per bridge endpoint and direction
//! messages and bytes, errors, retries, late replies, in flight and a
//! round-trip histogram; per tunnel its round trip and reconnects. Labels
//! are node, service and peer names: bounded by the mesh's size.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::{counters, gauges, NodeTraffic};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeLabels {
    node: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    node: String,
    service: String,
    /// "out" towards the service, "in" back from it.
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    node: String,
    peer: String,
}

/// A histogram an agent measured, encoded as it was reported (the
/// coordinator observes nothing itself).
/// Sum, count, and (upper bound, count) per bucket, not cumulative.
type Reported = (f64, u64, Vec<(f64, u64)>);

#[derive(Debug, Default)]
pub struct ReportedHistogram(Mutex<Option<Reported>>);

impl ReportedHistogram {
    /// Holds a histogram as reported: bounds (us), counts per bucket (not
    /// cumulative), the count and the sum (us). An inconsistent report
    /// (lengths differ, buckets above the count) is left empty.
    pub fn set(&self, le_us: &[u64], counts: &[u64], count: u64, sum_us: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            buckets_of(le_us, counts, count).map(|b| (sum_us as f64 / 1e6, count, b));
    }
}

impl TypedMetric for ReportedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ReportedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (sum, count, buckets) = held
            .as_ref()
            .map_or((0.0, 0, &[][..]), |(s, c, b)| (*s, *c, &b[..]));
        encoder.encode_histogram::<NoLabelSet>(sum, count, buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The buckets in seconds, not cumulative, with the `+Inf` bucket holding
/// what is above the last bound; None when the report is inconsistent.
fn buckets_of(le_us: &[u64], counts: &[u64], count: u64) -> Option<Vec<(f64, u64)>> {
    if le_us.len() != counts.len() {
        return None;
    }
    let mut out: Vec<(f64, u64)> = le_us
        .iter()
        .zip(counts)
        .map(|(le, n)| (*le as f64 / 1e6, *n))
        .collect();
    let below: u64 = counts.iter().sum();
    out.push((f64::MAX, count.checked_sub(below)?));
    Some(out)
}

#[cfg(test)]
fn rtt_buckets(c: &mesh_proto::v1::BridgeCounters) -> Option<Vec<(f64, u64)>> {
    buckets_of(&c.rtt_bucket_le_us, &c.rtt_bucket_counts, c.rtt_count)
}

/// Every bridge endpoint and tunnel the agents report.
pub fn bridges(reg: &mut Registry, traffic: &std::collections::BTreeMap<String, NodeTraffic>) {
    let messages = counters::<DirectionLabels>(
        reg,
        "mesh_bridge_messages",
        "Messages through the bridge endpoint, out towards the service or in back from it",
    );
    let bytes = counters::<DirectionLabels>(
        reg,
        "mesh_bridge_bytes",
        "Payload bytes through the bridge endpoint, by direction",
    );
    let errors = counters::<BridgeLabels>(
        reg,
        "mesh_bridge_errors",
        "Requests answered with a bridge error, messages dropped, streams that failed",
    );
    let retries = counters::<BridgeLabels>(
        reg,
        "mesh_bridge_retries",
        "Requests sent again after the service moved or its tunnel failed",
    );
    let late = counters::<BridgeLabels>(
        reg,
        "mesh_bridge_late_replies",
        "Replies dropped because their request was already answered or retried",
    );
    let in_flight = gauges::<BridgeLabels>(
        reg,
        "mesh_bridge_in_flight",
        "Requests sent through the bridge and not answered yet",
    );
    let rtt = Family::<BridgeLabels, ReportedHistogram>::default();
    reg.register(
        "mesh_bridge_rtt_seconds",
        "Round trips of requests through the bridge, as its host measured them",
        rtt.clone(),
    );
    let tunnel_rtt = gauges::<TunnelLabels>(
        reg,
        "mesh_tunnel_rtt_seconds",
        "The live tunnel connection's round trip (QUIC's estimate)",
    );
    let tunnel_up = gauges::<TunnelLabels>(
        reg,
        "mesh_tunnel_up",
        "1 when the host holds a live tunnel connection to the peer",
    );
    let reconnects = counters::<TunnelLabels>(
        reg,
        "mesh_tunnel_reconnects",
        "Tunnel connections dialled to replace a lost one",
    );
    for (node, t) in traffic {
        for b in &t.bridges {
            let Some(c) = &b.counters else { continue };
            let l = BridgeLabels {
                node: node.clone(),
                service: b.service.clone(),
            };
            let dir = |d: &str| DirectionLabels {
                node: node.clone(),
                service: b.service.clone(),
                direction: d.into(),
            };
            messages.get_or_create(&dir("out")).inc_by(c.msgs_out);
            messages.get_or_create(&dir("in")).inc_by(c.msgs_in);
            bytes.get_or_create(&dir("out")).inc_by(c.bytes_out);
            bytes.get_or_create(&dir("in")).inc_by(c.bytes_in);
            errors.get_or_create(&l).inc_by(c.errors);
            retries.get_or_create(&l).inc_by(c.retries);
            late.get_or_create(&l).inc_by(c.late_replies);
            in_flight.get_or_create(&l).set(c.in_flight as f64);
            rtt.get_or_create(&l).set(
                &c.rtt_bucket_le_us,
                &c.rtt_bucket_counts,
                c.rtt_count,
                c.rtt_sum_us,
            );
        }
        for tun in &t.tunnels {
            let l = TunnelLabels {
                node: node.clone(),
                peer: tun.peer.clone(),
            };
            reconnects.get_or_create(&l).inc_by(tun.reconnects);
            tunnel_up
                .get_or_create(&l)
                .set(if tun.rtt_us.is_some() { 1.0 } else { 0.0 });
            if let Some(us) = tun.rtt_us {
                tunnel_rtt.get_or_create(&l).set(us as f64 / 1e6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{BridgeCounters, BridgeStat, TunnelStat};
    use prometheus_client::encoding::text::encode;

    #[test]
    fn bridges_and_tunnels_carry_their_counters_and_histogram() {
        let mut traffic = std::collections::BTreeMap::new();
        traffic.insert(
            "mainpc".to_string(),
            NodeTraffic {
                bridges: vec![BridgeStat {
                    service: "memory-api".into(),
                    counters: Some(BridgeCounters {
                        msgs_out: 5,
                        bytes_out: 500,
                        msgs_in: 4,
                        bytes_in: 40,
                        in_flight: 1,
                        errors: 2,
                        retries: 1,
                        late_replies: 1,
                        rtt_count: 4,
                        rtt_sum_us: 1_000,
                        rtt_bucket_le_us: vec![100, 1_000],
                        rtt_bucket_counts: vec![2, 1],
                        ..Default::default()
                    }),
                }],
                tunnels: vec![
                    TunnelStat {
                        peer: "pc2".into(),
                        rtt_us: Some(250),
                        reconnects: 3,
                        failures: 0,
                    },
                    TunnelStat {
                        peer: "pc3".into(),
                        rtt_us: None,
                        reconnects: 0,
                        failures: 2,
                    },
                ],
                usage: Vec::new(),
            },
        );
        let mut reg = Registry::default();
        bridges(&mut reg, &traffic);
        let mut text = String::new();
        encode(&mut text, &reg).expect("encode");
        let b = "node=\"mainpc\",service=\"memory-api\"";
        for line in [
            format!("mesh_bridge_messages_total{{{b},direction=\"out\"}} 5"),
            format!("mesh_bridge_bytes_total{{{b},direction=\"in\"}} 40"),
            format!("mesh_bridge_errors_total{{{b}}} 2"),
            format!("mesh_bridge_late_replies_total{{{b}}} 1"),
            format!("mesh_bridge_in_flight{{{b}}} 1.0"),
            "# TYPE mesh_bridge_rtt_seconds histogram".to_string(),
            format!("mesh_bridge_rtt_seconds_count{{{b}}} 4"),
            format!("mesh_bridge_rtt_seconds_sum{{{b}}} 0.001"),
            format!("mesh_bridge_rtt_seconds_bucket{{le=\"0.0001\",{b}}} 2"),
            format!("mesh_bridge_rtt_seconds_bucket{{le=\"0.001\",{b}}} 3"),
            format!("mesh_bridge_rtt_seconds_bucket{{le=\"+Inf\",{b}}} 4"),
            "mesh_tunnel_rtt_seconds{node=\"mainpc\",peer=\"pc2\"} 0.00025".to_string(),
            "mesh_tunnel_up{node=\"mainpc\",peer=\"pc3\"} 0.0".to_string(),
            "mesh_tunnel_reconnects_total{node=\"mainpc\",peer=\"pc2\"} 3".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        for name in crate::sample_names(&text) {
            assert!(
                crate::EXPORTED.contains(&name.as_str()),
                "{name} is not in EXPORTED"
            );
        }
    }

    #[test]
    fn an_inconsistent_histogram_is_left_out() {
        let c = BridgeCounters {
            rtt_count: 1,
            rtt_bucket_le_us: vec![100],
            rtt_bucket_counts: vec![5],
            ..Default::default()
        };
        assert_eq!(rtt_buckets(&c), None);
        let c = BridgeCounters {
            rtt_bucket_le_us: vec![100, 200],
            rtt_bucket_counts: vec![0],
            ..Default::default()
        };
        assert_eq!(rtt_buckets(&c), None);
    }
}
