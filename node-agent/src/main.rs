//! `mesh-agent`: parse configuration, start the session loop, stop on signal.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::time::Duration;

use mesh_node_agent::config::{self, Overrides, PodmanSettings, TlsSection};
use mesh_node_agent::inventory::gpu::{GpuProbe, HostGpus};
use mesh_node_agent::inventory::InventorySource;
use mesh_node_agent::manager::{Manager, ManagerConfig};
use mesh_node_agent::runtime::create::GpuFacts;
use mesh_node_agent::runtime::podman::PodmanRuntime;
use mesh_node_agent::runtime::service::{supervise, ServiceConfig};
use mesh_node_agent::session::ManagerLink;
use mesh_node_agent::volumes::coordinator::CoordinatorLink;
use mesh_node_agent::volumes::{VolumeHost, VolumeHostConfig, VolumeLink, VolumeMounts};
use mesh_node_agent::Agent;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "mesh-agent", version, about = "The mesh node agent")]
struct Args {
    /// TOML configuration file; flags and environment override it.
    #[arg(long, env = "MESH_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// This node's name (must match the name in its agent certificate).
    #[arg(long, env = "MESH_NODE", global = true)]
    node: Option<String>,
    /// Coordinator address, HOST:PORT.
    #[arg(long, env = "MESH_COORDINATOR")]
    coordinator: Option<String>,
    /// Address other hosts reach this node at (default: as seen by the coordinator).
    #[arg(long, env = "MESH_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,
    /// Heartbeat interval in milliseconds [default: 500].
    #[arg(long, env = "MESH_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Where container storage lives; its free space is reported [default: /].
    #[arg(long, env = "MESH_STORAGE_PATH")]
    storage_path: Option<PathBuf>,
    /// Extra label KEY=VALUE (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Certificate directory made by `meshctl certs` (uses ca.crt and agent-NODE.crt/.key).
    #[arg(long, env = "MESH_CERTS_DIR", global = true)]
    certs_dir: Option<PathBuf>,
    /// CA certificate (overrides the one in --certs-dir).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// This agent's certificate (overrides the one in --certs-dir).
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// This agent's private key (overrides the one in --certs-dir).
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// Where the agent keeps its state [default: /var/lib/mesh-agent/NODE].
    #[arg(long, env = "MESH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Podman API socket to use [default: /run/podman/podman.sock].
    #[arg(long, env = "MESH_PODMAN_SOCKET")]
    podman_socket: Option<PathBuf>,
    /// Run a Podman service of this agent's own under the state dir.
    #[arg(long)]
    podman_own_service: bool,
    /// UDP address of this agent's bridge tunnel endpoint [default 0.0.0.0:7444].
    #[arg(long, env = "MESH_TUNNEL_LISTEN")]
    tunnel_listen: Option<String>,
    /// Where this agent serves its own /metrics, e.g. 127.0.0.1:9465
    /// [default: nowhere].
    #[arg(long, env = "MESH_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print this host's inventory (CPU, memory, disk, GPUs via NVML) as JSON and exit.
    Inventory,
    /// Join a mesh with a token from `meshctl token create`, then run:
    /// makes this host's key here (it is never sent), checks the
    /// coordinator against the CA the token pins, gets a certificate for
    /// a CSR, writes ca.crt and agent-NAME.crt/.key into --certs-dir.
    /// Nothing is written when the coordinator refuses.
    Join {
        /// The coordinator's address, HOST:PORT (its main port, 7443).
        coordinator: String,
        /// The join token.
        #[arg(long, env = "MESH_JOIN_TOKEN")]
        token: String,
        /// This node's name [default: --node].
        #[arg(long)]
        name: Option<String>,
        /// The coordinator's join port.
        #[arg(long, default_value_t = 7445)]
        join_port: u16,
        /// Join, write the files and exit instead of starting the agent.
        #[arg(long)]
        no_start: bool,
    },
    /// Open a bridge tunnel (mutual-TLS QUIC) to another agent with this
    /// agent's certificate, print the outcome (round-trip time, or what
    /// failed and its likely cause) and exit: 0 when the tunnel opened, 1
    /// when not. Needs no coordinator; uses --node and the certificate
    /// settings.
    TunnelCheck {
        /// The other agent's tunnel endpoint, IP:PORT (UDP for QUIC, TCP
        /// for TLS; 7444 unless its `[bridge] listen` says otherwise).
        #[arg(long)]
        peer: std::net::SocketAddr,
        /// Dial with this transport, "tls" or "quic" [default: this host's
        /// `[bridge] transport`].
        #[arg(long)]
        transport: Option<mesh_bridge::Transport>,
        /// The other agent's node name; its certificate must say so.
        #[arg(long)]
        peer_name: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = Args::parse();
    if let Some(Command::Join {
        coordinator,
        token,
        name,
        join_port,
        no_start,
    }) = args.command.take_if(|c| matches!(c, Command::Join { .. }))
    {
        // With --config (as the system service runs it), the name and the certificate
        // directory come from there when not given.
        let file = match &args.config {
            Some(path) => config::load_file(path)?,
            None => Default::default(),
        };
        let Some(name) = name.or_else(|| args.node.clone()).or(file.node.clone()) else {
            anyhow::bail!(
                "give this node's name: mesh-agent join COORDINATOR --token TOKEN --name NAME"
            );
        };
        let Some(dir) = args.certs_dir.clone().or(file.tls.certs_dir.clone()) else {
            anyhow::bail!(
                "give --certs-dir DIR (or [tls] certs_dir in --config): where this host keeps \
                 its key and certificate"
            );
        };
        let join_addr =
            mesh_proto::join::join_address(&coordinator, join_port).map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let joined = runtime
            .block_on(mesh_proto::join::join(
                &join_addr,
                &token,
                mesh_certs::Role::Agent,
                &name,
                &dir,
            ))
            .map_err(anyhow::Error::msg)?;
        println!(
            "joined mesh '{}' as agent '{}': {} (key {}, mode 0600), valid until {} (renewed automatically)",
            joined.mesh,
            joined.name,
            joined.cert.display(),
            joined.key.display(),
            time::OffsetDateTime::from_unix_timestamp(joined.not_after_unix)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| joined.not_after_unix.to_string())
        );
        if let Some(path) = &args.config {
            if file.node.as_deref() != Some(joined.name.as_str()) {
                println!(
                    "set node = \"{}\" in {} before starting the agent from it",
                    joined.name,
                    path.display()
                );
            }
        }
        if no_start {
            return Ok(());
        }
        args.node = Some(joined.name);
        args.coordinator = Some(coordinator);
    }
    let file = match &args.config {
        Some(path) => config::load_file(path)?,
        None => Default::default(),
    };
    if let Some(Command::Inventory) = args.command {
        let mut source = InventorySource {
            storage_path: args
                .storage_path
                .or(file.storage_path)
                .unwrap_or_else(|| PathBuf::from("/")),
            gpus: Box::new(HostGpus::detect(file.gpus)),
        };
        println!("{}", inventory_json(&source.collect()));
        return Ok(());
    }
    let tunnel_check = match &args.command {
        Some(Command::TunnelCheck {
            peer,
            peer_name,
            timeout_ms,
            transport,
        }) => Some((
            *peer,
            peer_name.clone(),
            Duration::from_millis(*timeout_ms),
            *transport,
        )),
        _ => None,
    };
    // A tunnel check talks to no coordinator: any address satisfies the
    // configuration when none is set.
    let coordinator = match (&tunnel_check, args.coordinator) {
        (Some(_), None) if file.coordinator.is_none() => Some("127.0.0.1:7443".to_string()),
        (_, given) => given,
    };
    let overrides = Overrides {
        node: args.node,
        coordinator,
        advertise_address: args.advertise_address,
        heartbeat_ms: args.heartbeat_ms,
        storage_path: args.storage_path,
        labels: args.labels,
        tls: TlsSection {
            certs_dir: args.certs_dir,
            ca: args.ca,
            cert: args.cert,
            key: args.key,
        },
        state_dir: args.state_dir,
        podman_socket: args.podman_socket,
        podman_own_service: args.podman_own_service.then_some(true),
        tunnel_listen: args.tunnel_listen,
        metrics_listen: args.metrics_listen,
    };
    let config = config::resolve(file, overrides)?;
    let tls = mesh_certs::MeshTls::load(&config.tls)?;
    if tls.identity().name != config.node || tls.identity().role != mesh_certs::Role::Agent {
        anyhow::bail!(
            "certificate {} does not belong to agent '{}'; issue one with `meshctl certs issue --role agent --name {}`",
            tls.identity(),
            config.node,
            config.node
        );
    }
    if let Some((peer, peer_name, limit, transport)) = tunnel_check {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let transport = transport
            .or(config.bridge.as_ref().map(|b| b.transport))
            .unwrap_or_default();
        let ok = runtime.block_on(mesh_node_agent::bridges::tunnel_check(
            &tls, peer, &peer_name, limit, transport,
        ))?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut gpus = HostGpus::detect(config.gpus.clone());
    let gpu_facts = GpuFacts {
        cdi_available: mesh_node_agent::containers::spec::cdi_spec_present(),
        gpu_count: gpus.report().gpus.len() as u32,
    };
    let inventory = InventorySource {
        storage_path: config.storage_path.clone(),
        gpus: Box::new(gpus),
    };
    tracing::info!(node = %config.node, coordinator = %config.coordinator, "agent starting");
    let mesh = tls.identity().mesh.clone();
    let agent = Agent::new(config.clone(), &tls, inventory)?;
    // One thread is plenty for an agent and keeps its footprint small.
    let coordinator_tls = tls.client_config(
        mesh_certs::PeerExpectation {
            mesh: mesh.clone(),
            role: mesh_certs::Role::Coordinator,
        },
        &[mesh_proto::transport::ALPN_H2],
    )?;
    let volumes_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mesh-volumes")
        .enable_all()
        .build()?;
    let volumes_handle = volumes_runtime.handle().clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            trigger.cancel();
        });
        // Our own Podman service is kept running as long as the agent runs;
        // containers outlive both (conmon), and a restarted agent adopts them.
        let socket = match &config.podman {
            PodmanSettings::Socket(socket) => socket.clone(),
            PodmanSettings::Own {
                oci_runtime,
                shared_image_stores,
            } => {
                let mut service_config =
                    ServiceConfig::sandbox_defaults(config.state_dir.join("podman"));
                service_config.oci_runtime = oci_runtime.clone();
                service_config.shared_image_stores = shared_image_stores.clone();
                let socket = service_config.state_dir.join("podman.sock");
                tokio::spawn(supervise(service_config, shutdown.clone()));
                socket
            }
        };
        let podman = PodmanRuntime::new(&socket, gpu_facts);
        let mut bridges = None;
        if let Some(b) = &config.bridge {
            match mesh_node_agent::bridges::BridgeHost::bind(
                &tls,
                &config.node,
                b.listen,
                b.transport,
                b.endpoint_address,
                &config.advertise_address,
            ) {
                Ok(host) => {
                    tracing::info!(listen = %b.listen, port = host.tunnel_port(), "bridge tunnel endpoint listening");
                    host.spawn_retries(shutdown.clone());
                    bridges = Some(host);
                }
                Err(e) => tracing::warn!(error = %e, "bridges disabled on this host: the tunnel endpoint could not start; set [bridge] listen or --tunnel-listen"),
            }
        }
        // Volumes: attach, serve and report; their replication runs on a
        // runtime of its own.
        let mounts = VolumeMounts::default();
        let (assignments, assignments_rx) = tokio::sync::watch::channel(Vec::new());
        let coordinator_link = Arc::new(CoordinatorLink::new(
            &config.coordinator,
            coordinator_tls.clone(),
            volumes_handle.clone(),
        ));
        let (volume_host, volume_states) = VolumeHost::new(
            VolumeHostConfig {
                state_dir: config.state_dir.clone(),
                fsync_bound: config.volume_fsync_bound,
                every: Duration::from_secs(1),
            },
            bridges.clone(),
            coordinator_link,
            mounts.clone(),
            volumes_handle.clone(),
        );
        let (inputs, inputs_rx) = tokio::sync::mpsc::channel(16);
        let volume_host = volume_host
            .with_manager(inputs.clone())
            .with_lease(agent.lease());
        let volumes_task = tokio::spawn(volume_host.run(assignments_rx, shutdown.clone()));
        let (usage_tx, usage_rx) = tokio::sync::watch::channel(Vec::new());
        let podman_logs = podman.clone();
        tokio::spawn(mesh_node_agent::usage::run(
            podman.clone(),
            mesh.clone(),
            usage_tx,
            shutdown.clone(),
        ));
        let (manager, report) = Manager::new(
            podman,
            ManagerConfig {
                mesh,
                state_dir: config.state_dir.clone(),
                tick: Duration::from_millis(500),
            },
        );
        let manager = manager.with_volumes(VolumeLink {
            assignments,
            mounts,
        });
        let manager_task = tokio::spawn(manager.run(inputs_rx, shutdown.clone()));
        let (metrics_report, metrics_usage) = (report.clone(), usage_rx.clone());
        let mut agent = agent
            .with_manager(ManagerLink { inputs, report })
            .with_usage(usage_rx)
            .with_logs(Arc::new(podman_logs))
            .with_volumes(volume_states);
        if let Some(addr) = config.metrics_listen {
            let view = mesh_node_agent::metrics_http::AgentView {
                node: config.node.clone(),
                inventory: agent.inventory(),
                containers: Some(metrics_report),
                usage: Some(metrics_usage),
                bridges: bridges.clone(),
            };
            tokio::spawn(mesh_node_agent::metrics_http::serve(
                addr,
                view,
                shutdown.clone(),
            ));
        }
        if let Some(host) = bridges {
            agent = agent.with_images(mesh_node_agent::images::ImageHost::start(
                &socket,
                host.clone(),
                volumes_handle.clone(),
            ));
            agent = agent.with_bridges(host);
        }
        agent = agent.with_renewal(mesh_node_agent::session::renewal::Renewal {
            tls: tls.clone(),
            files: Some(config.tls.clone()),
        });
        if let Err(e) = agent.spawn(shutdown).await {
            tracing::error!(error = %e, "cannot start the session thread");
        }
        let _ = manager_task.await;
        let _ = volumes_task.await;
        tracing::info!("agent stopped");
    });
    volumes_runtime.shutdown_background();
    Ok(())
}

fn inventory_json(inv: &mesh_proto::v1::HostInventory) -> serde_json::Value {
    let gpus = inv.gpus.clone().unwrap_or_default();
    serde_json::json!({
        "cpu_count": inv.cpu_count,
        "load": [inv.load_1m, inv.load_5m, inv.load_15m],
        "memory_total_bytes": inv.memory_total_bytes,
        "memory_available_bytes": inv.memory_available_bytes,
        "disk": inv.disk.as_ref().map(|d| serde_json::json!({
            "path": d.path, "total_bytes": d.total_bytes,
            "available_bytes": d.available_bytes, "error": d.error })),
        "uptime_seconds": inv.uptime_seconds,
        "problems": inv.problems,
        "gpu_source": mesh_proto::v1::GpuSource::try_from(gpus.source)
            .map(|s| s.as_str_name()).unwrap_or("GPU_SOURCE_UNSPECIFIED"),
        "nvml_unavailable": gpus.nvml_unavailable,
        "driver_version": gpus.driver_version,
        "cuda_version": gpus.cuda_version,
        "gpus": gpus.gpus.iter().map(|g| serde_json::json!({
            "index": g.index, "uuid": g.uuid, "name": g.name,
            "memory_total_bytes": g.memory_total_bytes,
            "memory_used_bytes": g.memory_used_bytes,
            "memory_free_bytes": g.memory_free_bytes,
            "utilization_percent": g.utilization_percent,
            "temperature_celsius": g.temperature_celsius,
            "declared": g.declared })).collect::<Vec<_>>(),
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        return;
    }
    let _ = ctrl_c.await;
}
