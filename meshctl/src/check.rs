//! `meshctl check`: from every host, the tunnel to every other host (with
//! its round-trip time) and a real probe through every bridge endpoint
//! (the service's own ZeroMQ health request where it has one), as a matrix.
//! Exits non-zero when anything fails; each failure names its likely cause.

use anyhow::{bail, Result};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{CheckCause, CheckRequest, CheckResponse};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{admin, table, Output};

pub async fn run(
    client: &mut AdminServiceClient<Channel>,
    timeout_ms: u32,
    output: Output,
) -> Result<()> {
    let response = client
        .check(CheckRequest { id: 0, timeout_ms })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&check_json(&response))?),
        Output::Table => print!("{}", check_text(&response)),
    }
    let failures = failures(&response);
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    Ok(())
}

pub fn failures(r: &CheckResponse) -> usize {
    r.missing.len()
        + r.reports
            .iter()
            .map(|n| {
                n.peers.iter().filter(|p| !p.ok).count()
                    + n.bridges.iter().filter(|b| !b.ok).count()
            })
            .sum::<usize>()
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

pub fn check_text(r: &CheckResponse) -> String {
    let mut rows = Vec::new();
    for n in &r.reports {
        for p in &n.peers {
            rows.push(vec![
                n.node.clone(),
                format!("host {}", p.node),
                "tunnel".into(),
                if p.ok { "ok" } else { "FAIL" }.into(),
                if p.ok { ms(p.rtt_us) } else { "-".into() },
                if p.ok {
                    String::new()
                } else {
                    format!("{}: {}", p.failure().label(), p.error)
                },
            ]);
        }
        for b in &n.bridges {
            rows.push(vec![
                n.node.clone(),
                format!(
                    "{} (on {})",
                    b.service,
                    if b.host.is_empty() { "-" } else { &b.host }
                ),
                b.via.clone(),
                if b.ok { "ok" } else { "FAIL" }.into(),
                if b.ok { ms(b.rtt_us) } else { "-".into() },
                if b.ok {
                    String::new()
                } else {
                    format!("{}: {}", bridge_cause(b), b.error)
                },
            ]);
        }
    }
    let mut out = table::render(
        &["FROM", "TO", "VIA", "RESULT", "RTT", "LIKELY CAUSE"],
        &rows,
    );
    for m in &r.missing {
        out.push_str(&format!("not checked: {m}\n"));
    }
    let failures = failures(r);
    out.push_str(&if failures == 0 {
        format!("\nall {} checks passed\n", rows.len())
    } else {
        format!(
            "\n{failures} of {} checks failed\n",
            rows.len() + r.missing.len()
        )
    });
    out
}

/// A bridge check's cause; a failed tunnel says why it failed.
fn bridge_cause(b: &mesh_proto::v1::BridgeCheck) -> String {
    match b.failure() {
        CheckCause::Tunnel if b.tunnel_failure() != CheckCause::None => {
            format!("{} (tunnel to {})", b.tunnel_failure().label(), b.host)
        }
        cause => cause.label().to_string(),
    }
}

pub fn check_json(r: &CheckResponse) -> Value {
    json!({
        "schema": "meshctl.check.v1",
        "ok": failures(r) == 0,
        "missing": r.missing,
        "hosts": r.reports.iter().map(|n| json!({
            "node": n.node,
            "tunnels": n.peers.iter().map(|p| json!({
                "to": p.node, "ok": p.ok, "rtt_us": p.rtt_us, "error": p.error, "cause": p.failure().label(),
            })).collect::<Vec<_>>(),
            "bridges": n.bridges.iter().map(|b| json!({
                "service": b.service, "host": b.host, "endpoint": b.endpoint, "via": b.via,
                "ok": b.ok, "rtt_us": b.rtt_us, "error": b.error, "cause": b.failure().label(),
                "tunnel_cause": b.tunnel_failure().label(),
                "counters": b.counters.as_ref().map(|c| json!({
                    "msgs_out": c.msgs_out, "bytes_out": c.bytes_out,
                    "msgs_in": c.msgs_in, "bytes_in": c.bytes_in,
                    "in_flight": c.in_flight, "errors": c.errors, "retries": c.retries,
                    "late_replies": c.late_replies, "rtt_count": c.rtt_count,
                    "rtt_mean_us": c.rtt_mean_us, "rtt_max_us": c.rtt_max_us,
                })),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{BridgeCheck, CheckReport, PeerCheck};

    #[test]
    fn a_failed_tunnel_names_its_own_cause() {
        let b = BridgeCheck {
            host: "pc2".into(),
            failure: CheckCause::Tunnel as i32,
            tunnel_failure: CheckCause::Certificate as i32,
            ..Default::default()
        };
        assert_eq!(bridge_cause(&b), "certificate (tunnel to pc2)");
    }

    #[test]
    fn matrix_names_failures_and_their_causes() {
        let r = CheckResponse {
            reports: vec![CheckReport {
                id: 1,
                node: "mainpc".into(),
                peers: vec![PeerCheck {
                    node: "pc2".into(),
                    ok: true,
                    rtt_us: 420,
                    ..Default::default()
                }],
                bridges: vec![BridgeCheck {
                    service: "memory-orchestrator".into(),
                    host: "pc2".into(),
                    via: "tunnel".into(),
                    ok: false,
                    error: "no reply within 3s".into(),
                    failure: CheckCause::ServiceUnhealthy as i32,
                    ..Default::default()
                }],
            }],
            missing: vec!["pc3: not connected".into()],
        };
        let t = check_text(&r);
        assert!(t.contains("mainpc  host pc2"), "{t}");
        assert!(t.contains("0.42 ms"), "{t}");
        assert!(
            t.contains("FAIL    -        service unhealthy: no reply within 3s"),
            "{t}"
        );
        assert!(t.contains("not checked: pc3: not connected"), "{t}");
        assert!(t.contains("2 of 3 checks failed"), "{t}");
        assert_eq!(failures(&r), 2);
        assert_eq!(check_json(&r)["ok"], false);
    }
}
