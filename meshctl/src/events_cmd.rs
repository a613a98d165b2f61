//! `meshctl events [--since DURATION] [--node N] [--group G] [-f]`: the
//! coordinator's event history, like `kubectl get events`; `-f` goes on
//! with each new event as the coordinator records it (a server stream).

use anyhow::{bail, Result};
use clap::Args;
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{ListEventsRequest, MeshEvent};
use serde_json::json;
use tonic::transport::Channel;

use crate::Output;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only events of the last DURATION: 90s, 10m, 2h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events of this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only events of this group.
    #[arg(long)]
    pub group: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Keep printing new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// "90s", "10m", "2h", "7d" -> milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let Ok(n) = n.parse::<i64>() else {
        bail!("--since {text}: expected a number and a unit, e.g. 90s, 10m, 2h, 7d");
    };
    let ms = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("--since {text}: unknown unit '{other}'; use s, m, h or d"),
    };
    Ok(n.saturating_mul(ms))
}

fn when(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

pub fn line(e: &MeshEvent) -> String {
    let subject = match (e.node.is_empty(), e.group.is_empty()) {
        (false, false) => format!("{}/{}", e.node, e.group),
        (false, true) => e.node.clone(),
        (true, false) => e.group.clone(),
        (true, true) => "-".into(),
    };
    format!(
        "{}  {:<11} {:<22} {}",
        when(e.at_unix_ms),
        e.kind,
        subject,
        e.message
    )
}

fn to_json(e: &MeshEvent) -> serde_json::Value {
    json!({
        "seq": e.seq,
        "at_unix_ms": e.at_unix_ms,
        "kind": e.kind,
        "node": e.node,
        "group": e.group,
        "message": e.message,
    })
}

pub async fn run(
    client: &mut AdminServiceClient<Channel>,
    args: &EventsArgs,
    output: Output,
) -> Result<()> {
    let since_unix_ms = match &args.since {
        Some(s) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            now as i64 - parse_duration_ms(s)?
        }
        None => 0,
    };
    let req = ListEventsRequest {
        since_unix_ms,
        node: args.node.clone().unwrap_or_default(),
        group: args.group.clone().unwrap_or_default(),
        limit: args.limit,
    };
    if args.follow {
        let mut stream = client
            .follow_events(req)
            .await
            .map_err(crate::admin::call_error)?
            .into_inner();
        while let Some(e) = stream.message().await.map_err(crate::admin::call_error)? {
            match output {
                Output::Table => println!("{}", line(&e)),
                Output::Json => println!("{}", to_json(&e)),
            }
        }
        return Ok(());
    }
    let events = client
        .list_events(req)
        .await
        .map_err(crate::admin::call_error)?
        .into_inner()
        .events;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&events.iter().map(to_json).collect::<Vec<_>>())?
        ),
        Output::Table if events.is_empty() => println!("no events"),
        Output::Table => {
            for e in &events {
                println!("{}", line(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("10m").unwrap(), 600_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert!(parse_duration_ms("soon")
            .unwrap_err()
            .to_string()
            .contains("e.g. 90s"));
        assert!(parse_duration_ms("5w")
            .unwrap_err()
            .to_string()
            .contains("unknown unit 'w'"));
    }

    #[test]
    fn a_line_names_time_kind_subject_and_message() {
        let l = line(&MeshEvent {
            seq: 1,
            at_unix_ms: 0,
            kind: "failover".into(),
            node: "mainpc".into(),
            group: "memory".into(),
            message: "promoted".into(),
        });
        assert!(l.starts_with("1970-01-01T00:00:00Z"), "{l}");
        assert!(
            l.contains("failover") && l.contains("mainpc/memory") && l.ends_with("promoted"),
            "{l}"
        );
    }
}
