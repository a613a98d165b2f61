//! Bridged vs direct ZeroMQ: REQ/REP round trip (p50/p99) and pipelined DEALER throughput,
//! for 64 B and 64 KiB messages. Prints a markdown table.
//!
//! Roles:
//! * `all` (default): everything in this process on loopback, with a throwaway mesh CA.
//! * `server`: the service host: echo REP and ROUTER services and a tunnel endpoint exporting
//!   them as `bench-rep` and `bench-router`; runs until killed.
//! * `client`: the client host: measures direct (to the server's service endpoints) and
//!   bridged (through a tunnel to the server's agent) and prints the table.
//!
//! * `quic-client`: raw QUIC round trips and throughput to the server's echo endpoint
//!   (`--quic-echo`): the floor of the tunnel between the two hosts, no ZeroMQ, no bridge.
//!
//! * `tcp-loopback`: a plain TCP echo between two threads on loopback: the kernel's floor
//!   for each local hop (client to bridge endpoint, bridge to service).
//!
//! * `quic-streams`: raw QUIC with the mesh's TLS settings on loopback, comparing one
//!   multiplexed stream with one stream per request (the design choice of the REQ/REP bridge).
//!
//! `server` and `client` read agent certificates from `--certs-dir` (made by `meshctl certs`),
//! so the two can run in different network namespaces or on different PCs;
//! `bridge/bench-netns.sh` runs them between two network namespaces. Tunnel endpoints and
//! bridges run on a current-thread runtime of their own, as in `mesh-agent`
//! (`--agent-runtime`); `--only` measures one thing alone, for profiling.
//!
//! Run: `cargo build --release --bin bench-bridge && target/release/bench-bridge`
//! (in-process), or `bridge/bench-netns.sh` (as root) for two hosts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mesh_bridge::{
    Bridge, BridgeSpec, Export, InFlightPolicy, Pattern, PeerAddr, ServiceTarget, Target,
    TunnelConfig, Tunnels,
};
use mesh_certs::{CertificateAuthority, Identity, MeshTls, Role, TlsFiles, Validity};
use zeromq::{RepSocket, RouterSocket, Socket, SocketRecv, SocketSend};

mod measure;
mod quic_streams;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RunRole {
    All,
    Server,
    Client,
    /// Raw QUIC on loopback: one multiplexed stream vs one stream per request.
    QuicStreams,
    /// Raw QUIC to the server's echo endpoint (`--quic-echo`): the round trip and throughput
    /// floor of the tunnel between the two hosts, with no ZeroMQ and no bridge.
    QuicClient,
    /// Plain TCP echo on loopback between two blocking threads (no ZeroMQ, no async
    /// runtime): the kernel's floor for each local hop a bridge endpoint adds.
    TcpLoopback,
    /// The client host's agent side alone: a tunnel endpoint and the two bridges to the
    /// server's services, at `--bridge-rep` and `--bridge-router`, until killed. Other
    /// clients (pyzmq in `bridge/bench-encrypted.sh`) measure through them.
    Endpoint,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark ZeroMQ through a mesh bridge against direct connections")]
struct Args {
    /// What this process does.
    #[arg(long, value_enum, default_value = "all")]
    role: RunRole,
    /// Directory with ca.crt and agent certificates (server and client roles).
    #[arg(long)]
    certs_dir: Option<PathBuf>,
    /// This agent's node name (server: pc2, client: mainpc by default).
    #[arg(long)]
    node: Option<String>,
    /// Server: UDP address of the tunnel endpoint.
    #[arg(long, default_value = "0.0.0.0:7500")]
    tunnel_listen: SocketAddr,
    /// Server: where the echo REP service binds (also what the client uses for direct runs).
    #[arg(long, default_value = "tcp://0.0.0.0:7501")]
    rep_bind: String,
    /// Server: where the echo ROUTER service binds.
    #[arg(long, default_value = "tcp://0.0.0.0:7502")]
    router_bind: String,
    /// Server: export this REP endpoint (another process's) instead of its own echo REP.
    #[arg(long)]
    export_rep: Option<String>,
    /// Server: export this ROUTER endpoint instead of its own echo ROUTER.
    #[arg(long)]
    export_router: Option<String>,
    /// Server: UDP address of a raw QUIC echo endpoint (mesh TLS and transport settings, no
    /// bridge), for `--role quic-client`.
    #[arg(long, default_value = "0.0.0.0:7503")]
    quic_echo: SocketAddr,
    /// Client: the server agent's tunnel address.
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// Client: the server agent's node name.
    #[arg(long, default_value = "pc2")]
    peer_name: String,
    /// Client: direct endpoint of the server's REP service.
    #[arg(long)]
    direct_rep: Option<String>,
    /// Client: direct endpoint of the server's ROUTER service.
    #[arg(long)]
    direct_router: Option<String>,
    /// Round trips measured per size (after 10% warm-up).
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Messages per pipelined throughput run with 64 B messages (fewer for 64 KiB).
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Client: rounds of the whole measurement (direct and bridged alternate); the table shows
    /// medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests a pipelined DEALER keeps in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Where the tunnel endpoints and bridges run: on a thread of their own with a
    /// current-thread runtime as in the node agent (default), or on the benchmark's
    /// multi-thread runtime beside the ZeroMQ clients and services.
    #[arg(long, value_enum, default_value = "current-thread")]
    agent_runtime: AgentRuntime,
    /// Client: measure only this (for profiling); default everything.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// With `--only` or `--role quic-client`: this message size alone (64 or 65536).
    #[arg(long)]
    size: Option<usize>,
    /// What the client's tunnel endpoint dials with: "tls" (TLS 1.3 over TCP, the default)
    /// or "quic". Servers accept both.
    #[arg(long, default_value = "tls")]
    transport: mesh_bridge::Transport,
    /// Endpoint role: a raw TCP bridge to the server's REP service (ZeroMQ carried as bytes,
    /// no per-message work), for comparison with byte tunnels such as stunnel.
    #[arg(long, default_value = "127.0.0.1:7611")]
    bridge_rep_tcp: String,
    /// Endpoint role: a raw TCP bridge to the server's ROUTER service.
    #[arg(long, default_value = "127.0.0.1:7612")]
    bridge_router_tcp: String,
    /// Endpoint role: the local endpoint of the bridge to the server's REP service.
    #[arg(long, default_value = "tcp://127.0.0.1:7601")]
    bridge_rep: String,
    /// Endpoint role: the local endpoint of the bridge to the server's ROUTER service.
    #[arg(long, default_value = "tcp://127.0.0.1:7602")]
    bridge_router: String,
}

/// Where the agent side (tunnel endpoints and bridges) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AgentRuntime {
    /// A thread of its own with a current-thread tokio runtime, as `mesh-agent` runs it.
    CurrentThread,
    /// The benchmark's multi-thread runtime, shared with the ZeroMQ clients and services.
    Shared,
}

/// One part of the client's measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    DirectRtt,
    BridgedRtt,
    DirectThroughput,
    BridgedThroughput,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match args.role {
        RunRole::All => run_all(&args).await,
        RunRole::Server => run_server(&args).await,
        RunRole::Client => run_client(&args).await,
        RunRole::QuicStreams => quic_streams::run(&args).await,
        RunRole::TcpLoopback => tcp_loopback(),
        RunRole::Endpoint => run_endpoint(&args).await,
        RunRole::QuicClient => {
            let agent = agent_runtime(args.agent_runtime)?;
            let args = args.clone();
            on_agent(&agent, async move { quic_streams::run_client(&args).await }).await
        }
    }
}

/// Round trips of a plain TCP echo on loopback (blocking threads, `TCP_NODELAY`), 64 B and
/// 64 KiB; prints p50/p99 as a markdown list.
fn tcp_loopback() -> Result<()> {
    use std::io::{Read, Write};
    println!("### Plain TCP echo on loopback (two blocking threads, no ZeroMQ)\n");
    for (size, n) in [(64usize, 5_000usize), (64 * 1024, 2_000)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let echo = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            let mut buf = vec![0u8; size];
            while s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf)?;
            }
            Ok(())
        });
        let mut client = std::net::TcpStream::connect(addr)?;
        client.set_nodelay(true)?;
        let mut buf = vec![7u8; size];
        let mut h = Histogram::<u64>::new(3)?;
        for i in 0..n {
            let started = Instant::now();
            client.write_all(&buf)?;
            client.read_exact(&mut buf)?;
            if i >= n / 10 {
                h.record(started.elapsed().as_micros() as u64)?;
            }
        }
        drop(client);
        echo.join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
        println!(
            "- {}: p50 {} µs, p99 {} µs",
            if size == 64 { "64 B" } else { "64 KiB" },
            quantile_us(&h, 0.5),
            quantile_us(&h, 0.99)
        );
    }
    Ok(())
}

fn load_tls(args: &Args, default_node: &str) -> Result<MeshTls> {
    let dir = args
        .certs_dir
        .as_deref()
        .context("--certs-dir is required for the server and client roles")?;
    let node = args.node.as_deref().unwrap_or(default_node);
    Ok(MeshTls::load(&TlsFiles::in_dir(dir, Role::Agent, node))?)
}

async fn rep_echo(bind: &str) -> Result<String> {
    let mut rep = RepSocket::new();
    let ep = rep.bind(bind).await.context("bind echo REP")?.to_string();
    tokio::spawn(async move {
        while let Ok(m) = rep.recv().await {
            if rep.send(m).await.is_err() {
                return;
            }
        }
    });
    Ok(ep)
}

async fn router_echo(bind: &str) -> Result<String> {
    let mut router = RouterSocket::new();
    let ep = router
        .bind(bind)
        .await
        .context("bind echo ROUTER")?
        .to_string();
    tokio::spawn(async move {
        while let Ok(m) = router.recv().await {
            if router.send(m).await.is_err() {
                return;
            }
        }
    });
    Ok(ep)
}

fn export(tunnels: &Tunnels, rep: &str, router: &str) {
    tunnels.exports().set(
        "bench-rep",
        Export {
            pattern: Pattern::ReqRep,
            endpoint: rep.to_string(),
        },
    );
    tunnels.exports().set(
        "bench-router",
        Export {
            pattern: Pattern::ReqRep,
            endpoint: router.to_string(),
        },
    );
    // The same services as raw TCP (the tunnel as a byte pipe, as stunnel would carry them).
    for (name, ep) in [("bench-rep-tcp", rep), ("bench-router-tcp", router)] {
        tunnels.exports().set(
            name,
            Export {
                pattern: Pattern::Tcp,
                endpoint: ep.trim_start_matches("tcp://").to_string(),
            },
        );
    }
}

/// The runtime the agent side runs on (see [`AgentRuntime`]).
fn agent_runtime(kind: AgentRuntime) -> Result<tokio::runtime::Handle> {
    if kind == AgentRuntime::Shared {
        return Ok(tokio::runtime::Handle::current());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("agent".to_string())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    Ok(rx.recv()??)
}

/// Runs `f` on the agent's runtime and waits for it.
async fn on_agent<T: Send + 'static>(
    agent: &tokio::runtime::Handle,
    f: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    agent.spawn(f).await?
}

async fn run_server(args: &Args) -> Result<()> {
    let tls = Arc::new(load_tls(args, "pc2")?);
    let agent = agent_runtime(args.agent_runtime)?;
    let rep = rep_echo(&args.rep_bind).await?;
    let router = router_echo(&args.router_bind).await?;
    let (tunnels, echo) = {
        let rep = args.export_rep.clone().unwrap_or_else(|| rep.clone());
        let router = args.export_router.clone().unwrap_or_else(|| router.clone());
        let (listen, quic_echo) = (args.tunnel_listen, args.quic_echo);
        on_agent(&agent, async move {
            let tunnels = Tunnels::bind(&tls, TunnelConfig::new(listen))?;
            export(&tunnels, &rep, &router);
            let echo = quic_streams::echo_endpoint(&tls, quic_echo)?;
            Ok((tunnels, echo))
        })
        .await?
    };
    eprintln!(
        "serving: tunnel {} (agent {}), REP {rep}, ROUTER {router}, raw QUIC echo {}; Ctrl-C to \
         stop",
        tunnels.local_addr()?,
        tunnels.node(),
        echo.local_addr()?
    );
    tokio::signal::ctrl_c().await?;
    tunnels.close();
    Ok(())
}

/// Client-side endpoints to measure: direct and bridged, REP and ROUTER services.
struct Endpoints {
    direct_rep: String,
    direct_router: String,
    bridged_rep: String,
    bridged_router: String,
    /// The REQ/REP bridge to the REP service, for its own round-trip counter.
    rep_bridge: Bridge,
}

async fn bridges(
    tunnels: &Tunnels,
    peer: PeerAddr,
    locals: [String; 2],
) -> Result<(Bridge, Bridge, Vec<Target>)> {
    let mut out = Vec::new();
    let mut targets = Vec::new();
    for (service, local) in ["bench-rep", "bench-router"].into_iter().zip(locals) {
        let target = Target::new(ServiceTarget {
            peer: peer.clone(),
            service: service.to_string(),
            epoch: 0,
        });
        let bridge = Bridge::start(
            tunnels,
            BridgeSpec {
                name: service.to_string(),
                pattern: Pattern::ReqRep,
                local,
                in_flight: InFlightPolicy::Error,
            },
            target.subscribe(),
        )
        .await?;
        out.push(bridge);
        targets.push(target);
    }
    let (Some(router), Some(rep)) = (out.pop(), out.pop()) else {
        bail!("bridges not started");
    };
    Ok((rep, router, targets))
}

async fn run_all(args: &Args) -> Result<()> {
    let transport = args.transport;
    let tls = throwaway_agents(&["pc2", "mainpc"])?;
    let agent = agent_runtime(args.agent_runtime)?;
    let rep = rep_echo("tcp://127.0.0.1:0").await?;
    let router = router_echo("tcp://127.0.0.1:0").await?;
    let (brep, brouter, _agents) = {
        let (rep, router) = (rep.clone(), router.clone());
        on_agent(&agent, async move {
            let loopback: SocketAddr = "127.0.0.1:0".parse()?;
            let server = Tunnels::bind(&tls[0], TunnelConfig::new(loopback))?;
            let client = Tunnels::bind(&tls[1], tunnel_config(loopback, transport))?;
            export(&server, &rep, &router);
            let peer = PeerAddr {
                node: "pc2".to_string(),
                addr: server.local_addr()?,
            };
            let (brep, brouter, targets) = bridges(&client, peer, any_port()).await?;
            Ok((brep, brouter, (server, client, targets)))
        })
        .await?
    };
    let eps = Endpoints {
        direct_rep: rep,
        direct_router: router,
        bridged_rep: brep.endpoint().to_string(),
        bridged_router: brouter.endpoint().to_string(),
        rep_bridge: brep,
    };
    measure::measure(args, &eps, "in-process, loopback").await
}

async fn run_client(args: &Args) -> Result<()> {
    let transport = args.transport;
    let tls = load_tls(args, "mainpc")?;
    let peer = client_peer(args)?;
    let agent = agent_runtime(args.agent_runtime)?;
    let (brep, brouter, _agent) = on_agent(&agent, async move {
        let tunnels = Tunnels::bind(&tls, tunnel_config("0.0.0.0:0".parse()?, transport))?;
        let (brep, brouter, targets) = bridges(&tunnels, peer, any_port()).await?;
        Ok((brep, brouter, (tunnels, targets)))
    })
    .await?;
    let eps = Endpoints {
        direct_rep: args
            .direct_rep
            .clone()
            .context("--direct-rep ENDPOINT is required")?,
        direct_router: args
            .direct_router
            .clone()
            .context("--direct-router ENDPOINT is required")?,
        bridged_rep: brep.endpoint().to_string(),
        bridged_router: brouter.endpoint().to_string(),
        rep_bridge: brep,
    };
    let setup = match args.agent_runtime {
        AgentRuntime::CurrentThread => {
            "client and server processes; tunnels and bridges on a current-thread runtime of \
             their own, as in mesh-agent"
        }
        AgentRuntime::Shared => {
            "client and server processes; tunnels and bridges on the benchmark's multi-thread \
             runtime"
        }
    };
    measure::measure(args, &eps, setup).await
}

/// The tunnel settings of the measuring side.
fn tunnel_config(bind: SocketAddr, transport: mesh_bridge::Transport) -> TunnelConfig {
    let mut config = TunnelConfig::new(bind);
    config.transport = transport;
    config
}

/// Local bridge endpoints on free loopback ports.
fn any_port() -> [String; 2] {
    [
        "tcp://127.0.0.1:0".to_string(),
        "tcp://127.0.0.1:0".to_string(),
    ]
}

fn client_peer(args: &Args) -> Result<PeerAddr> {
    Ok(PeerAddr {
        node: args.peer_name.clone(),
        addr: args
            .peer
            .context("--peer ADDR (the server's tunnel) is required")?,
    })
}

async fn run_endpoint(args: &Args) -> Result<()> {
    let transport = args.transport;
    let tls = load_tls(args, "mainpc")?;
    let peer = client_peer(args)?;
    let agent = agent_runtime(args.agent_runtime)?;
    let locals = [args.bridge_rep.clone(), args.bridge_router.clone()];
    let (rep_tcp, router_tcp) = (args.bridge_rep_tcp.clone(), args.bridge_router_tcp.clone());
    let (brep, brouter, agent_side) = on_agent(&agent, async move {
        let tunnels = Tunnels::bind(&tls, tunnel_config("0.0.0.0:0".parse()?, transport))?;
        let (brep, brouter, mut targets) = bridges(&tunnels, peer.clone(), locals).await?;
        let mut raw = Vec::new();
        for (service, local) in [("bench-rep-tcp", rep_tcp), ("bench-router-tcp", router_tcp)] {
            let target = Target::new(ServiceTarget {
                peer: peer.clone(),
                service: service.to_string(),
                epoch: 0,
            });
            raw.push(
                Bridge::start(
                    &tunnels,
                    BridgeSpec {
                        name: service.to_string(),
                        pattern: Pattern::Tcp,
                        local,
                        in_flight: InFlightPolicy::Error,
                    },
                    target.subscribe(),
                )
                .await?,
            );
            targets.push(target);
        }
        Ok((brep, brouter, (tunnels, targets, raw)))
    })
    .await?;
    eprintln!(
        "bridging: REP at {}, ROUTER at {}, as raw TCP at {} and {}; Ctrl-C to stop",
        brep.endpoint(),
        brouter.endpoint(),
        agent_side.2[0].endpoint(),
        agent_side.2[1].endpoint()
    );
    tokio::signal::ctrl_c().await?;
    agent_side.0.close();
    drop((brep, brouter, agent_side));
    Ok(())
}

const SIZES: [(usize, &str); 2] = [(64, "64 B"), (64 * 1024, "64 KiB")];

fn quantile_us(h: &Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

/// Shared by the in-process roles: a throwaway CA and agent TLS material.
fn throwaway_agents(names: &[&str]) -> Result<Vec<MeshTls>> {
    let ca = CertificateAuthority::generate("bench", Validity::days(1))?;
    names
        .iter()
        .map(|name| {
            let leaf = ca.issue(
                &Identity::new("bench", Role::Agent, name)?,
                &[],
                Validity::days(1),
            )?;
            Ok(MeshTls::from_pem(
                ca.cert_pem(),
                &leaf.cert_pem,
                &leaf.key_pem,
            )?)
        })
        .collect()
}
