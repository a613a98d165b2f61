//! `meshctl images [NODE]`: each image, its size, who holds it, which groups run it and
//! where it is missing (a group's host or failover standby without it cannot run the group).
//! `meshctl images copy IMAGE --from HOST --to HOST`: one host's image into another's Podman
//! through the agents' tunnel, with progress (bytes, rate, ETA) on stderr and the outcome on
//! stdout (or as JSON).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use mesh_proto::images::holds;
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{
    CopyImageRequest, ImageCopyProgress, ImageSummary, ListContainersResponse, TopologyStatus,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::Output;

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Copy IMAGE from one host's Podman to another's (podman save there, podman load here,
    /// through the mutual-TLS tunnel; checked by SHA-256 before it is loaded).
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    pub image: String,
    /// The host that holds the image.
    #[arg(long)]
    pub from: String,
    /// The host to copy it to.
    #[arg(long)]
    pub to: String,
    /// Give up when no data came for this many seconds.
    #[arg(long, default_value_t = 15)]
    pub stall_timeout_s: u32,
}

#[derive(Serialize)]
struct CopyJson<'a> {
    schema: &'static str,
    image: &'a str,
    from: &'a str,
    to: &'a str,
    bytes: u64,
    seconds: f64,
    mib_per_s: f64,
    sha256: &'a str,
    loaded: &'a [String],
    already_present: bool,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One progress line: "312.0 / 1024.0 MiB  30%  85.2 MiB/s  ETA 8 s".
pub fn progress_line(p: &ImageCopyProgress) -> String {
    let rate = if p.seconds > 0.0 {
        mib(p.bytes) / p.seconds
    } else {
        0.0
    };
    match p.phase.as_str() {
        "connecting" => "connecting to the source agent".to_string(),
        "loading" => format!(
            "{:.1} MiB received and checked; loading into Podman",
            mib(p.bytes)
        ),
        _ if p.total_bytes > 0 => {
            let pct = (p.bytes as f64 * 100.0 / p.total_bytes as f64).min(100.0);
            let eta = if rate > 0.0 {
                format!(
                    "ETA {:.0} s",
                    mib(p.total_bytes.saturating_sub(p.bytes)) / rate
                )
            } else {
                "ETA -".to_string()
            };
            format!(
                "{:.1} / {:.1} MiB  {pct:.0}%  {rate:.1} MiB/s  {eta}",
                mib(p.bytes),
                mib(p.total_bytes)
            )
        }
        _ => format!("{:.1} MiB  {rate:.1} MiB/s", mib(p.bytes)),
    }
}

pub async fn copy(
    client: &mut AdminServiceClient<Channel>,
    args: &CopyArgs,
    output: Output,
) -> Result<()> {
    let mut stream = client
        .copy_image(CopyImageRequest {
            image: args.image.clone(),
            from_node: args.from.clone(),
            to_node: args.to.clone(),
            stall_timeout_ms: args.stall_timeout_s.saturating_mul(1000),
        })
        .await
        .map_err(crate::admin::call_error)?
        .into_inner();
    let tty = output == Output::Table && std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let Some(p) = stream.message().await.map_err(crate::admin::call_error)? else {
            bail!(
                "the coordinator ended the copy without a result; see `meshctl images {}`",
                args.to
            );
        };
        if !p.error.is_empty() {
            if tty {
                eprintln!();
            }
            bail!(
                "copying {} from {} to {}: {}",
                args.image,
                args.from,
                args.to,
                p.error
            );
        }
        if !p.done {
            if output == Output::Table {
                if tty {
                    eprint!("\r\x1b[K{}", progress_line(&p));
                } else {
                    eprintln!("{}", progress_line(&p));
                }
            }
            continue;
        }
        if tty {
            eprintln!();
        }
        let rate = if p.seconds > 0.0 {
            mib(p.bytes) / p.seconds
        } else {
            0.0
        };
        match output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&CopyJson {
                    schema: "meshctl.image-copy.v1",
                    image: &args.image,
                    from: &args.from,
                    to: &args.to,
                    bytes: p.bytes,
                    seconds: p.seconds,
                    mib_per_s: rate,
                    sha256: &p.sha256,
                    loaded: &p.loaded,
                    already_present: p.already_present,
                })?
            ),
            Output::Table if p.already_present => println!(
                "{} already holds {}: nothing copied",
                args.to, args.image
            ),
            Output::Table => println!(
                "copied {} from {} to {}: {:.1} MiB in {:.1} s ({rate:.1} MiB/s), sha256 {} checked; loaded as {}",
                args.image,
                args.from,
                args.to,
                mib(p.bytes),
                p.seconds,
                p.sha256,
                p.loaded.join(", ")
            ),
        }
        return Ok(());
    }
}

/// One image across the mesh.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageUse {
    pub image: String,
    pub size_bytes: u64,
    pub held_by: Vec<String>,
    /// Groups of the applied topology whose services run it.
    pub used_by: Vec<String>,
    /// Hosts that may run one of those groups (its host, its standby) and lack it.
    pub missing_on: Vec<String>,
}

/// Every image the agents report or the applied topology's groups run, with who holds it and
/// where it is missing.
pub fn summarize(reports: &ListContainersResponse, topology: &TopologyStatus) -> Vec<ImageUse> {
    let held: Vec<(String, Vec<ImageSummary>)> = reports
        .nodes
        .iter()
        .filter_map(|n| {
            n.report
                .as_ref()
                .filter(|r| r.runtime_available)
                .map(|r| (n.node.clone(), r.images.clone()))
        })
        .collect();
    let mut out: Vec<(ImageSummary, ImageUse)> = Vec::new();
    for (node, images) in &held {
        for i in images {
            let name = i
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| i.id.chars().take(12).collect());
            match out.iter_mut().find(|(s, _)| s.id == i.id) {
                Some((_, u)) => u.held_by.push(node.clone()),
                None => out.push((
                    i.clone(),
                    ImageUse {
                        image: name,
                        size_bytes: i.size_bytes,
                        held_by: vec![node.clone()],
                        used_by: Vec::new(),
                        missing_on: Vec::new(),
                    },
                )),
            }
        }
    }
    for g in &topology.groups {
        let hosts: Vec<&String> = [&g.host, &g.standby]
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        for wanted in &g.images {
            let at = match out
                .iter()
                .position(|(s, _)| holds(std::slice::from_ref(s), wanted))
            {
                Some(at) => at,
                None => {
                    out.push((
                        ImageSummary::default(),
                        ImageUse {
                            image: wanted.clone(),
                            size_bytes: 0,
                            held_by: Vec::new(),
                            used_by: Vec::new(),
                            missing_on: Vec::new(),
                        },
                    ));
                    out.len() - 1
                }
            };
            let u = &mut out[at].1;
            if !u.used_by.contains(&g.group) {
                u.used_by.push(g.group.clone());
            }
            for h in &hosts {
                let lacks = held
                    .iter()
                    .find(|(n, _)| n == *h)
                    .is_some_and(|(_, images)| !holds(images, wanted));
                if lacks && !u.missing_on.contains(h) {
                    u.missing_on.push((*h).clone());
                }
            }
        }
    }
    let mut rows: Vec<ImageUse> = out.into_iter().map(|(_, u)| u).collect();
    rows.sort_by(|a, b| a.image.cmp(&b.image));
    rows
}

fn size_text(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", mib(bytes))
    }
}

fn list_text(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// `meshctl images [NODE]`.
pub async fn list(
    client: &mut AdminServiceClient<Channel>,
    node: Option<&str>,
    output: Output,
) -> Result<()> {
    let reports = crate::containers_cmd::reports(client, node).await?;
    let topology = crate::place::topology_status(client).await?;
    let rows = summarize(&reports, &topology);
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct NodeImage {
                node: String,
                id: String,
                names: Vec<String>,
                size_bytes: u64,
            }
            #[derive(Serialize)]
            struct Images {
                schema: &'static str,
                images: Vec<NodeImage>,
                by_image: Vec<ImageUse>,
            }
            let images = reports
                .nodes
                .iter()
                .flat_map(|n| {
                    n.report
                        .iter()
                        .flat_map(|r| r.images.iter())
                        .map(|i| NodeImage {
                            node: n.node.clone(),
                            id: i.id.chars().take(12).collect(),
                            names: i.names.clone(),
                            size_bytes: i.size_bytes,
                        })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&Images {
                    schema: "meshctl.images.v1",
                    images,
                    by_image: rows,
                })?
            );
        }
        Output::Table if rows.is_empty() => println!("no images reported"),
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.image.clone(),
                        size_text(r.size_bytes),
                        list_text(&r.held_by),
                        list_text(&r.used_by),
                        list_text(&r.missing_on),
                    ]
                })
                .collect();
            print!(
                "{}",
                crate::table::render(
                    &["IMAGE", "SIZE", "HELD BY", "USED BY", "MISSING ON"],
                    &cells
                )
            );
            if rows.iter().any(|r| !r.missing_on.is_empty()) {
                println!("copy one with: meshctl images copy IMAGE --from HOST --to HOST");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{ContainerReport, GroupStatus, NodeContainers};

    fn report(node: &str, images: &[(&str, &str, u64)]) -> NodeContainers {
        NodeContainers {
            node: node.into(),
            report: Some(ContainerReport {
                runtime_available: true,
                images: images
                    .iter()
                    .map(|(id, name, size)| ImageSummary {
                        id: id.to_string(),
                        names: vec![name.to_string()],
                        size_bytes: *size,
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_image_says_who_holds_it_who_runs_it_and_where_it_is_missing() {
        let reports = ListContainersResponse {
            nodes: vec![
                report(
                    "mainpc",
                    &[
                        ("aaa", "localhost/memory:latest", 13 << 30),
                        ("bbb", "localhost/llm:latest", 10 << 30),
                    ],
                ),
                report("pc2", &[("bbb", "localhost/llm:latest", 10 << 30)]),
            ],
        };
        let topology = TopologyStatus {
            applied: true,
            groups: vec![
                GroupStatus {
                    group: "memory-system".into(),
                    host: "mainpc".into(),
                    standby: "pc2".into(),
                    images: vec!["memory".into(), "redis:7".into()],
                    ..Default::default()
                },
                GroupStatus {
                    group: "llm".into(),
                    host: "pc2".into(),
                    images: vec!["localhost/llm:latest".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let rows = summarize(&reports, &topology);
        let by = |name: &str| rows.iter().find(|r| r.image == name).unwrap().clone();
        let memory = by("localhost/memory:latest");
        assert_eq!(memory.held_by, ["mainpc"]);
        assert_eq!(memory.used_by, ["memory-system"]);
        assert_eq!(memory.missing_on, ["pc2"], "the standby lacks it");
        assert_eq!(memory.size_bytes, 13 << 30);
        let llm = by("localhost/llm:latest");
        assert_eq!(llm.held_by, ["mainpc", "pc2"]);
        assert!(llm.missing_on.is_empty());
        let redis = by("redis:7");
        assert!(redis.held_by.is_empty());
        assert_eq!(redis.missing_on, ["mainpc", "pc2"]);
    }

    #[test]
    fn progress_says_bytes_rate_and_eta() {
        let p = ImageCopyProgress {
            phase: "receiving".into(),
            bytes: 256 << 20,
            total_bytes: 1024 << 20,
            seconds: 2.0,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p),
            "256.0 / 1024.0 MiB  25%  128.0 MiB/s  ETA 6 s"
        );
        let p = ImageCopyProgress {
            phase: "loading".into(),
            bytes: 1 << 20,
            ..Default::default()
        };
        assert!(progress_line(&p).contains("loading into Podman"));
    }
}
