//! `meshctl failover GROUP [--to HOST]`: a planned switchover of a
//! replicated group to its standby, followed phase by phase until the
//! group is healthy there and its bridges point there.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{FailoverRecord, SwitchoverRequest};
use serde_json::json;
use tonic::transport::Channel;

use crate::Output;

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The group to move (it must have replicated volumes).
    pub group: String,
    /// The host to move it to; it must be the group's standby (the
    /// default), the one host that holds its data.
    #[arg(long)]
    pub to: Option<String>,
    /// How long to follow the switchover, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// What each phase was, for people.
fn phase_text(name: &str) -> &'static str {
    match name {
        "stop" => "services stopped, volumes detached, every write on the standby",
        "detect" => "the primary's lease ran out",
        "promote" => "new epoch persisted, standby promoted",
        "mount" => "volumes attached on the new primary",
        "start" => "containers running",
        "healthy" => "every service healthy",
        "re-pointed" => "every bridge points at the new host",
        _ => "",
    }
}

pub async fn run(
    client: &mut AdminServiceClient<Channel>,
    args: &FailoverArgs,
    output: Output,
) -> Result<()> {
    let started = client
        .switchover(SwitchoverRequest {
            group: args.group.clone(),
            to: args.to.clone().unwrap_or_default(),
        })
        .await
        .map_err(crate::admin::call_error)?
        .into_inner();
    let epoch = started.epoch + 1;
    if output == Output::Table {
        println!(
            "switching {} over from {} to {} (epoch {} -> {epoch})",
            args.group, started.from, started.to, started.epoch
        );
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut shown = 0;
    loop {
        let rows = crate::volumes::list(client).await?;
        let record: Option<FailoverRecord> = rows
            .iter()
            .filter(|v| v.group == args.group)
            .find_map(|v| v.failover.clone())
            .filter(|r| r.epoch == epoch && r.to == started.to);
        if let Some(r) = &record {
            if output == Output::Table {
                for p in r.phases.iter().skip(shown) {
                    println!("  {:<11} {:>6} ms  {}", p.name, p.ms, phase_text(&p.name));
                }
            }
            shown = r.phases.len();
            if !r.error.is_empty() {
                bail!("switchover of {} stopped: {}", args.group, r.error);
            }
            if r.done {
                match output {
                    Output::Table => println!(
                        "{} runs on {} at epoch {epoch}: downtime at most {:.2} s (from the switchover's start to healthy with bridges re-pointed)",
                        args.group,
                        r.to,
                        r.total_ms as f64 / 1000.0
                    ),
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({
                            "group": args.group,
                            "from": r.from,
                            "to": r.to,
                            "epoch": r.epoch,
                            "downtime_ms": r.total_ms,
                            "phases": r.phases.iter().map(|p| json!({"name": p.name, "ms": p.ms})).collect::<Vec<_>>(),
                        }))?
                    ),
                }
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the switchover of {} has not finished after {} s; `meshctl volumes` shows where it stands",
                args.group,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
