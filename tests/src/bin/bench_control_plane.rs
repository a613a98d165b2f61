//! Control-plane benchmark: one `mesh-coordinator` process holding N agent
//! streams over mutual TLS, each heartbeating at H Hz; then one real
//! `mesh-agent` at rest. Prints a Markdown report for BENCHMARKS.md.
//!
//! Heartbeat latency is measured end to end by the load generator: from
//! writing heartbeat `seq` to reading the coordinator's ack of `seq`, so it
//! includes TLS, HTTP/2, the coordinator's processing and its reply.
//!
//! Run: `cargo build --release --bins && target/release/bench-control-plane`

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use mesh_certs::{PeerExpectation, Role};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::agent_message::Body;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::coordinator_message::Body as CoordBody;
use mesh_proto::v1::{
    AgentMessage, DiskSpace, GetStatusRequest, Gpu, GpuReport, GpuSource, Heartbeat, HostInventory,
    ListNodesRequest, Register,
};
use mesh_tests::pki::Pki;
use mesh_tests::process::Proc;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    #[arg(long, default_value_t = 2.0)]
    hz: f64,
    /// Seconds of measurement after all agents registered.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds to measure one real agent at rest.
    #[arg(long, default_value_t = 30)]
    agent_rest_seconds: u64,
    /// Each agent renews its certificate once (new key, CSR,
    /// RenewCertificate on its own connection, the new key swapped into
    /// its TLS) at a random moment within this many seconds of the
    /// measurement window (issue #14: 1,000 agents within one minute).
    #[arg(long)]
    renew_within: Option<u64>,
    /// Directory holding mesh-coordinator and mesh-agent [default: next to this binary].
    #[arg(long)]
    bin_dir: Option<std::path::PathBuf>,
}

/// CPU time (user+system, seconds) and RSS (bytes) of a process.
fn proc_usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the comm.
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Ok((ticks / 100.0, rss_kib * 1024))
}

fn inventory(i: usize) -> HostInventory {
    HostInventory {
        cpu_count: 16,
        load_1m: 0.5,
        load_5m: 0.4,
        load_15m: 0.3,
        memory_total_bytes: 64 << 30,
        memory_available_bytes: 40 << 30,
        disk: Some(DiskSpace {
            path: "/var/lib/containers".into(),
            total_bytes: 1 << 40,
            available_bytes: 1 << 39,
            error: String::new(),
        }),
        uptime_seconds: 1000,
        gpus: Some(GpuReport {
            source: GpuSource::Nvml as i32,
            driver_version: "550.54".into(),
            cuda_version: "12.4".into(),
            gpus: vec![Gpu {
                index: 0,
                uuid: format!("GPU-bench-{i}"),
                name: "NVIDIA GeForce RTX 4090".into(),
                memory_total_bytes: 24 << 30,
                memory_used_bytes: 6 << 30,
                memory_free_bytes: 18 << 30,
                utilization_percent: Some(35),
                temperature_celsius: Some(61),
                declared: false,
            }],
            ..Default::default()
        }),
        problems: vec![],
    }
}

struct AgentResult {
    histogram: Histogram<u64>,
    sent: u64,
    acked: u64,
    /// Heartbeats whose ack came later than one heartbeat period.
    late: u64,
    /// How long the renewal call took (None: none asked, or it failed).
    renewed_us: Option<u64>,
}

/// Waits for the measurement, then renews once after `offset`.
async fn renew_once(
    mut client: AgentServiceClient<tonic::transport::Channel>,
    tls: mesh_certs::MeshTls,
    offset: Duration,
    mut phase: tokio::sync::watch::Receiver<Phase>,
) -> Result<u64> {
    while *phase.borrow_and_update() != Phase::Measure {
        phase.changed().await?;
    }
    tokio::time::sleep(offset).await;
    let started = Instant::now();
    let request = mesh_certs::new_key_and_csr(tls.identity())?;
    let response = client
        .renew_certificate(mesh_proto::v1::RenewCertificateRequest {
            csr_pem: request.csr_pem,
        })
        .await?
        .into_inner();
    tls.renew(&response.cert_chain_pem, &request.key_pem)?;
    Ok(started.elapsed().as_micros() as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Stop,
}

/// Who a simulated agent is and where it connects.
struct AgentConn {
    name: String,
    address: String,
    tls: Arc<rustls::ClientConfig>,
}

async fn run_agent(
    agent: AgentConn,
    period: Duration,
    renew: Option<(mesh_certs::MeshTls, Duration)>,
    handshake_permit: tokio::sync::OwnedSemaphorePermit,
    connected: Arc<Semaphore>,
    mut phase: tokio::sync::watch::Receiver<Phase>,
) -> Result<AgentResult> {
    let AgentConn { name, address, tls } = agent;
    let channel = transport::connect(&address, tls, &ConnectOptions::default()).await?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentMessage {
        body: Some(Body::Register(Register {
            node: name.clone(),
            heartbeat_interval_ms: period.as_millis() as u32,
            agent_version: "bench".into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
    inbound.message().await?.context("no Registered")?;
    drop(handshake_permit);
    connected.add_permits(1);
    let renewal = renew
        .map(|(tls, offset)| tokio::spawn(renew_once(client.clone(), tls, offset, phase.clone())));
    // Real agents are not synchronised: start at a random phase.
    tokio::time::sleep(period.mul_f64(rand_fraction(&name))).await;
    let mut ticker = tokio::time::interval(period);
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut result = AgentResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        sent: 0,
        acked: 0,
        late: 0,
        renewed_us: None,
    };
    let inv = inventory(name.len());
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = *phase.borrow_and_update();
                if now == Phase::Stop { break; }
                seq += 1;
                if now == Phase::Measure { in_flight.insert(seq, Instant::now()); result.sent += 1; }
                tx.send(AgentMessage { body: Some(Body::Heartbeat(Heartbeat {
                    seq, inventory: Some(inv.clone()), containers: None, directory_generation: 0, ..Default::default() })) }).await?;
            }
            message = inbound.message() => {
                let message = message?.context("coordinator closed the stream")?;
                if let Some(CoordBody::HeartbeatAck(ack)) = message.body {
                    if let Some(sent_at) = in_flight.remove(&ack.seq) {
                        let rtt = sent_at.elapsed();
                        result.histogram.record(rtt.as_micros() as u64)?;
                        result.acked += 1;
                        if rtt > period {
                            result.late += 1;
                        }
                    }
                }
            }
        }
    }
    // Collect the acks of the last heartbeats.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !in_flight.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), inbound.message()).await {
            Ok(Ok(Some(m))) => {
                if let Some(CoordBody::HeartbeatAck(ack)) = m.body {
                    if let Some(sent_at) = in_flight.remove(&ack.seq) {
                        result
                            .histogram
                            .record(sent_at.elapsed().as_micros() as u64)?;
                        result.acked += 1;
                    }
                }
            }
            _ => break,
        }
    }
    if let Some(task) = renewal {
        match task.await {
            Ok(Ok(us)) => result.renewed_us = Some(us),
            Ok(Err(e)) => eprintln!("{name}: renewal failed: {e:#}"),
            Err(e) => eprintln!("{name}: renewal task: {e}"),
        }
    }
    Ok(result)
}

fn rand_fraction(name: &str) -> f64 {
    let h = name.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    (h % 10_000) as f64 / 10_000.0
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary has no directory")?
            .to_path_buf(),
    };
    for bin in ["mesh-coordinator", "mesh-agent"] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{} not found in {}: run `cargo build --release --bins` first",
                bin,
                bin_dir.display()
            );
        }
    }
    let pki = Pki::new("bench");
    pki.issue(Role::Coordinator, "coordinator", &[]);
    pki.issue(Role::Admin, "admin", &[]);
    eprintln!("issuing {} agent certificates ...", args.agents);
    let mut agent_tls = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let name = format!("node-{i:04}");
        pki.issue(Role::Agent, &name, &[]);
        let tls = pki.tls(Role::Agent, &name);
        let expect = PeerExpectation {
            mesh: "bench".into(),
            role: Role::Coordinator,
        };
        let config = tls.client_config(expect, &[ALPN_H2])?;
        agent_tls.push((name, tls, config));
    }
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(bin_dir.join("mesh-coordinator"));
    cmd.arg("--listen")
        .arg(&address)
        .arg("--certs-dir")
        .arg(pki.dir())
        .arg("--state-dir")
        .arg(pki.dir().join("coordinator-state"));
    cmd.env("RUST_LOG", "warn");
    let coordinator = Proc::spawn("coordinator", cmd);
    std::thread::sleep(Duration::from_millis(500));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(drive(
        &args,
        &pki,
        &address,
        agent_tls,
        &coordinator,
        &bin_dir,
    ))?;
    println!("{report}");
    Ok(())
}

async fn drive(
    args: &Args,
    pki: &Pki,
    address: &str,
    agent_tls: Vec<(String, mesh_certs::MeshTls, Arc<rustls::ClientConfig>)>,
    coordinator: &Proc,
    bin_dir: &Path,
) -> Result<String> {
    let period = Duration::from_secs_f64(1.0 / args.hz);
    let connected = Arc::new(Semaphore::new(0));
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(Phase::Warmup);
    let connect_start = Instant::now();
    // Bound the handshake burst; each permit is released once registered.
    let limiter = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for (name, mesh_tls, tls) in agent_tls {
        let renew = args.renew_within.map(|w| {
            let offset =
                Duration::from_secs_f64(w as f64 * rand_fraction(&format!("{name}-renew")));
            (mesh_tls, offset)
        });
        let limiter = limiter.clone();
        let connected = connected.clone();
        let address = address.to_string();
        let phase = phase_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = limiter.acquire_owned().await?;
            let agent = AgentConn { name, address, tls };
            run_agent(agent, period, renew, permit, connected, phase).await
        }));
    }
    tokio::select! {
        all = connected.acquire_many(args.agents as u32) => { all?.forget(); }
        _ = tokio::time::sleep(Duration::from_secs(300)) => bail!("agents did not all register within 300 s"),
    }
    let connect_time = connect_start.elapsed();
    eprintln!(
        "{} agents registered in {:.1} s",
        args.agents,
        connect_time.as_secs_f64()
    );
    // Settle: every agent's ticker running, the handshake burst over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    phase_tx.send(Phase::Measure)?;
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let (cpu0, _) = proc_usage(coordinator.pid())?;
    let t0 = Instant::now();
    let mut rss_max = 0u64;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(proc_usage(coordinator.pid())?.1);
    }
    let (cpu1, rss_end) = proc_usage(coordinator.pid())?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu_share = (cpu1 - cpu0) / wall * 100.0;
    phase_tx.send(Phase::Stop)?;

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut sent, mut acked, mut failed, mut late) = (0u64, 0u64, 0usize, 0u64);
    let mut renewals = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        match task.await? {
            Ok(r) => {
                histogram.add(&r.histogram)?;
                sent += r.sent;
                acked += r.acked;
                late += r.late;
                if let Some(us) = r.renewed_us {
                    renewals.record(us)?;
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("agent failed: {e:#}");
            }
        }
    }

    // Ask the coordinator whether any node ever left Ready.
    let admin = pki.tls(Role::Admin, "admin");
    let expect = PeerExpectation {
        mesh: "bench".into(),
        role: Role::Coordinator,
    };
    let channel = transport::connect(
        address,
        admin.client_config(expect, &[ALPN_H2])?,
        &ConnectOptions::default(),
    )
    .await?;
    let mut client = AdminServiceClient::new(channel);
    let nodes = client
        .list_nodes(ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    let degraded = nodes.iter().filter(|n| n.history.len() > 1).count();
    let gap_max_ms = nodes
        .iter()
        .map(|n| n.heartbeat_gap_max_us)
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    let renewal_report = match args.renew_within {
        None => String::new(),
        Some(w) => format!(
            "| certificates renewed (one per agent, spread over {w} s) | {n} of {agents} |\n\
| renewal call (key + CSR here, sign + commit there) p50 / p99 / max | {r50:.2} / {r99:.2} / {rmax:.2} ms |\n",
            n = renewals.len(),
            agents = args.agents,
            r50 = renewals.value_at_quantile(0.5) as f64 / 1000.0,
            r99 = renewals.value_at_quantile(0.99) as f64 / 1000.0,
            rmax = renewals.max() as f64 / 1000.0,
        ),
    };
    let status = client.get_status(GetStatusRequest {}).await?.into_inner();

    let agent_rest = measure_agent_at_rest(args, pki, address, bin_dir).await?;

    let ms = |v: u64| v as f64 / 1000.0;
    Ok(format!(
        "### Coordinator: {agents} agent streams over mutual TLS at {hz} Hz\n\n\
| measure | value |\n|---|---|\n\
| agents registered (TLS 1.3 handshakes + Register) | {agents} in {connect:.1} s |\n\
| measurement window | {wall:.0} s |\n\
| heartbeats sent / acknowledged in window | {sent} / {acked} |\n\
| agents that failed | {failed} |\n\
| nodes that ever left Ready (coordinator's own history) | {degraded} |\n\
| heartbeats acknowledged later than one period | {late} |\n\
| longest gap between two heartbeats of one node, as the coordinator received them | {gap_max_ms:.1} ms |\n\
{renewal_report}\
| heartbeat round trip p50 / p90 / p99 / max | {p50:.2} / {p90:.2} / {p99:.2} / {max:.2} ms |\n\
| coordinator CPU | {cpu:.1} % of one core |\n\
| coordinator RSS at end / max | {rss:.1} / {rssmax:.1} MB |\n\
| heartbeats counted by coordinator (whole run) | {hb} |\n\n\
### Node agent at rest (real `mesh-agent`, 500 ms heartbeats, {rest_s} s)\n\n\
| measure | value |\n|---|---|\n\
| agent RSS | {arss:.1} MB |\n\
| agent CPU | {acpu:.2} % of one core |\n",
        agents = args.agents,
        hz = args.hz,
        connect = connect_time.as_secs_f64(),
        p50 = ms(histogram.value_at_quantile(0.50)),
        p90 = ms(histogram.value_at_quantile(0.90)),
        p99 = ms(histogram.value_at_quantile(0.99)),
        max = ms(histogram.max()),
        cpu = cpu_share,
        rss = rss_end as f64 / 1e6,
        rssmax = rss_max as f64 / 1e6,
        hb = status.heartbeats_received,
        rest_s = args.agent_rest_seconds,
        arss = agent_rest.1 as f64 / 1e6,
        acpu = agent_rest.0,
    ))
}

/// (CPU % of one core, RSS bytes) of one real agent after it settled.
async fn measure_agent_at_rest(
    args: &Args,
    pki: &Pki,
    address: &str,
    bin_dir: &Path,
) -> Result<(f64, u64)> {
    pki.issue(Role::Agent, "rest", &[]);
    let mut cmd = Command::new(bin_dir.join("mesh-agent"));
    cmd.args([
        "--node",
        "rest",
        "--coordinator",
        address,
        "--heartbeat-ms",
        "500",
    ])
    .arg("--certs-dir")
    .arg(pki.dir());
    cmd.env("RUST_LOG", "warn");
    let agent = Proc::spawn("agent-rest", cmd);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, _) = proc_usage(agent.pid())?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.agent_rest_seconds)).await;
    let (cpu1, rss) = proc_usage(agent.pid())?;
    Ok(((cpu1 - cpu0) / t0.elapsed().as_secs_f64() * 100.0, rss))
}
