//! `bench-observability`: issue #13's numbers for what exists so far.
//!
//! 1. `/metrics` of a mesh of 200 nodes (each with one GPU) and 2,000
//!    containers (10 per node), in a real coordinator state (`Shared`, the
//!    registry fed through its own register/heartbeat calls): the body's
//!    size, and N scrapes over real HTTP (the coordinator's own `/metrics`
//!    server on a loopback port), timed; the CPU share at a 1 s scrape
//!    interval is the mean scrape time per second. With `--bridges` (100)
//!    bridge endpoints reported by the agents, each with its counters,
//!    round-trip histogram, and a tunnel to its service's host; and every
//!    container's resource usage (CPU, memory, I/O, GPU memory).
//! 2. The event history in a redb store: N events appended through the
//!    coordinator's event log (100 nodes), then a query by node, with the
//!    process's RSS before and after.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use clap::Parser;
use mesh_coordinator::decide::liveness::LivenessPolicy;
use mesh_coordinator::state::registry::{Now, Registration};
use mesh_coordinator::state::Shared;
use mesh_proto::v1::{
    ContainerReport, ContainerState, ContainerStatus, Gpu, GpuReport, HealthState, HostInventory,
    ListEventsRequest,
};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    #[arg(long, default_value_t = 10)]
    containers_per_node: usize,
    #[arg(long, default_value_t = 100)]
    scrapes: usize,
    #[arg(long, default_value_t = 100)]
    bridges: usize,
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<usize> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        anyhow::bail!(
            "scrape failed: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(body.len())
}

fn mesh(shared: &Shared, nodes: usize, per_node: usize) -> anyhow::Result<()> {
    for n in 0..nodes {
        let node = format!("pc{n}");
        let (session, _) = shared.registry().register(
            Registration {
                node: node.clone(),
                labels: Default::default(),
                agent_version: "bench".into(),
                address: format!("10.0.{}.{}", n / 250, n % 250 + 1),
                heartbeat_interval: Duration::from_millis(500),
                tunnel_port: 7444,
            },
            Now::system(),
        );
        let inventory = HostInventory {
            cpu_count: 16,
            load_1m: 1.5,
            memory_total_bytes: 64 << 30,
            memory_available_bytes: 32 << 30,
            gpus: Some(GpuReport {
                gpus: vec![Gpu {
                    index: 0,
                    uuid: format!("GPU-{n}"),
                    name: "RTX 3060".into(),
                    memory_total_bytes: 12 << 30,
                    memory_used_bytes: 3 << 30,
                    memory_free_bytes: 9 << 30,
                    utilization_percent: Some(30),
                    temperature_celsius: Some(60),
                    declared: false,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let containers = ContainerReport {
            runtime_available: true,
            containers: (0..per_node)
                .map(|c| ContainerStatus {
                    name: format!("svc-{n}-{c}"),
                    group: format!("group-{n}"),
                    service: format!("svc-{n}-{c}"),
                    state: ContainerState::Running as i32,
                    health: HealthState::Healthy as i32,
                    restart_count: (c % 3) as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        shared
            .registry()
            .heartbeat(
                &node,
                session,
                Some(inventory),
                Some(containers),
                Now::system(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// `count` bridge endpoints spread over the nodes, and every container's
/// resource usage, as their heartbeats report them.
fn bridges(shared: &Shared, nodes: usize, count: usize, per_node: usize) {
    use mesh_proto::v1::{BridgeCounters, BridgeStat, TunnelStat};
    let le = mesh_bridge::RTT_BUCKETS_US.to_vec();
    for n in 0..nodes {
        let mine: Vec<BridgeStat> = (0..count)
            .filter(|b| b % nodes == n)
            .map(|b| BridgeStat {
                service: format!("svc-{b}"),
                counters: Some(BridgeCounters {
                    msgs_out: 1_000 + b as u64,
                    bytes_out: 64_000,
                    msgs_in: 1_000,
                    bytes_in: 64_000,
                    rtt_count: 1_000,
                    rtt_sum_us: 300_000,
                    rtt_bucket_le_us: le.clone(),
                    rtt_bucket_counts: le.iter().map(|_| 1_000 / le.len() as u64).collect(),
                    ..Default::default()
                }),
            })
            .collect();
        let tunnels = (!mine.is_empty())
            .then(|| TunnelStat {
                peer: format!("pc{}", (n + 1) % nodes),
                rtt_us: Some(250),
                reconnects: 1,
                failures: 0,
            })
            .into_iter()
            .collect();
        let usage = (0..per_node)
            .map(|c| mesh_proto::v1::ContainerUsage {
                name: format!("svc-{n}-{c}"),
                group: format!("group-{n}"),
                service: format!("svc-{n}-{c}"),
                cpu_percent: 12.5,
                memory_bytes: 300 << 20,
                memory_limit_bytes: 1 << 30,
                block_read_bytes: 1 << 20,
                net_rx_bytes: 1 << 20,
                pids: 4,
                gpu_memory_bytes: if c == 0 { 3 << 30 } else { 0 },
                ..Default::default()
            })
            .collect();
        shared.traffic.report(
            &format!("pc{n}"),
            mesh_coordinator::state::traffic::NodeTraffic {
                bridges: mine,
                tunnels,
                usage,
            },
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shared = Shared::new("bench".into(), LivenessPolicy::default(), None)?;
    mesh(&shared, args.nodes, args.containers_per_node)?;
    bridges(&shared, args.nodes, args.bridges, args.containers_per_node);
    let addr: std::net::SocketAddr = "127.0.0.1:19464".parse()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(mesh_coordinator::rpc::metrics_http::serve(
        addr,
        shared.clone(),
        shutdown.clone(),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = mesh_coordinator::state::exposition::render(&shared)?;
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..args.scrapes {
        let t = Instant::now();
        size = tokio::task::spawn_blocking(move || scrape(addr)).await??;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "/metrics: {} nodes, {} containers, {} bridges: body {} KiB ({series} samples); {} scrapes over HTTP: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; at a 1 s interval {:.1}% of a core",
        args.nodes,
        args.nodes * args.containers_per_node,
        args.bridges,
        size / 1024,
        times.len(),
        p(0.5),
        p(0.99),
        times.last().copied().unwrap_or(0.0),
        mean / 10.0
    );
    shutdown.cancel();

    let dir = tempfile::tempdir()?;
    let store = mesh_coordinator::state::store::Store::open(dir.path())?;
    let log = mesh_coordinator::state::events::EventLog::new(Some(std::sync::Arc::new(store)));
    let before = rss_mib();
    let t = Instant::now();
    for i in 0..args.events {
        let node = format!("pc{}", i % 100);
        log.record(
            "container",
            &node,
            "group",
            format!("{node}/svc: running -> stopped (exit code 0), event {i}"),
        );
        if i % 10_000 == 0 {
            log.flush();
        }
    }
    log.flush();
    let append = t.elapsed();
    let t = Instant::now();
    let found = log
        .list(&ListEventsRequest {
            node: "pc42".into(),
            limit: 1000,
            ..Default::default()
        })
        .map_err(anyhow::Error::msg)?;
    let query = t.elapsed();
    let file = std::fs::metadata(dir.path().join("coordinator.redb"))?.len();
    println!(
        "events: {} appended in {:.1} s ({:.0}/s), store {} MiB (the newest {} kept); query by node (1000 newest of pc42): {} found in {:.1} ms; RSS {:.1} MiB before, {:.1} MiB after",
        args.events,
        append.as_secs_f64(),
        args.events as f64 / append.as_secs_f64(),
        file >> 20,
        mesh_coordinator::state::store::EVENTS_KEPT,
        found.len(),
        query.as_secs_f64() * 1000.0,
        before,
        rss_mib()
    );
    Ok(())
}
