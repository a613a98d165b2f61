//! `meshctl top [NODE] [-w] [-o json]`: each container's CPU, memory,
//! block and network I/O, processes and GPU memory, as the agents last
//! sampled them (Podman's stats, NVML per process), like `podman stats`
//! across every PC; `-w` redraws it every two seconds until Ctrl-C.

use anyhow::{Context, Result};
use clap::Args;
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{GetUsageRequest, GetUsageResponse};
use serde_json::json;
use tonic::transport::Channel;

use crate::Output;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Only this node's containers.
    pub node: Option<String>,
    /// Redraw every two seconds until Ctrl-C.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub fn table(r: &GetUsageResponse) -> String {
    let mut rows = Vec::new();
    for n in &r.nodes {
        for c in &n.containers {
            let mem = if c.memory_limit_bytes > 0 {
                format!(
                    "{} / {}",
                    bytes(c.memory_bytes),
                    bytes(c.memory_limit_bytes)
                )
            } else {
                bytes(c.memory_bytes)
            };
            let gpu = if c.gpu_indices.is_empty() {
                "-".to_string()
            } else {
                let on: Vec<String> = c.gpu_indices.iter().map(u32::to_string).collect();
                format!("{} (GPU {})", bytes(c.gpu_memory_bytes), on.join(","))
            };
            rows.push(vec![
                n.node.clone(),
                c.name.clone(),
                c.group.clone(),
                format!("{:.1}%", c.cpu_percent),
                mem,
                format!(
                    "{} / {}",
                    bytes(c.block_read_bytes),
                    bytes(c.block_write_bytes)
                ),
                format!("{} / {}", bytes(c.net_rx_bytes), bytes(c.net_tx_bytes)),
                c.pids.to_string(),
                gpu,
            ]);
        }
    }
    if rows.is_empty() {
        return "no running containers reported\n".into();
    }
    crate::table::render(
        &[
            "NODE",
            "CONTAINER",
            "GROUP",
            "CPU",
            "MEMORY",
            "BLOCK R/W",
            "NET RX/TX",
            "PIDS",
            "GPU MEMORY",
        ],
        &rows,
    )
}

pub fn to_json(r: &GetUsageResponse) -> serde_json::Value {
    json!(r
        .nodes
        .iter()
        .flat_map(|n| n.containers.iter().map(move |c| json!({
            "node": n.node,
            "container": c.name,
            "group": c.group,
            "service": c.service,
            "id": c.id,
            "cpu_percent": c.cpu_percent,
            "memory_bytes": c.memory_bytes,
            "memory_limit_bytes": c.memory_limit_bytes,
            "block_read_bytes": c.block_read_bytes,
            "block_write_bytes": c.block_write_bytes,
            "net_rx_bytes": c.net_rx_bytes,
            "net_tx_bytes": c.net_tx_bytes,
            "pids": c.pids,
            "gpu_memory_bytes": c.gpu_memory_bytes,
            "gpu_indices": c.gpu_indices,
        })))
        .collect::<Vec<_>>())
}

pub async fn run(
    client: &mut AdminServiceClient<Channel>,
    args: &TopArgs,
    output: Output,
) -> Result<()> {
    loop {
        let r = client
            .get_usage(GetUsageRequest {
                node: args.node.clone().unwrap_or_default(),
            })
            .await
            .context("GetUsage")?
            .into_inner();
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&r))?),
            Output::Table => {
                if args.watch {
                    // Clear the screen and home the cursor, like top.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", table(&r));
            }
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{ContainerUsage, NodeUsage};

    #[test]
    fn the_table_has_every_figure() {
        let r = GetUsageResponse {
            nodes: vec![NodeUsage {
                node: "pc2".into(),
                containers: vec![ContainerUsage {
                    name: "llm".into(),
                    group: "core".into(),
                    cpu_percent: 150.25,
                    memory_bytes: 3 << 30,
                    memory_limit_bytes: 8 << 30,
                    net_rx_bytes: 2048,
                    pids: 7,
                    gpu_memory_bytes: 6 << 30,
                    gpu_indices: vec![0],
                    ..Default::default()
                }],
            }],
        };
        let t = table(&r);
        for word in [
            "pc2",
            "llm",
            "150.2%",
            "3.0 GiB / 8.0 GiB",
            "2.0 KiB",
            "6.0 GiB (GPU 0)",
            " 7 ",
        ] {
            assert!(t.contains(word), "{word:?} missing in\n{t}");
        }
        let j = to_json(&r);
        assert_eq!(j[0]["gpu_memory_bytes"], 6u64 << 30);
        assert_eq!(
            table(&GetUsageResponse::default()),
            "no running containers reported\n"
        );
    }
}
