//! `mesh-coordinator`: parse configuration, bind, serve until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mesh_coordinator::config::{self, LivenessSection, Overrides, TlsSection};
use mesh_coordinator::Coordinator;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "mesh-coordinator", version, about = "The mesh coordinator")]
struct Args {
    /// TOML configuration file; flags and environment override it.
    #[arg(long, env = "MESH_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on for agents and meshctl [default: 0.0.0.0:7443].
    #[arg(long, env = "MESH_COORDINATOR_LISTEN")]
    listen: Option<String>,
    /// Address `/metrics` (Prometheus) is served on, or "off"
    /// [default: 127.0.0.1:9464].
    #[arg(long, env = "MESH_COORDINATOR_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve `/metrics` and the dashboard over mutual TLS with the mesh
    /// certificates (clients need a certificate from the mesh CA), for
    /// scrapers and browsers on other hosts.
    #[arg(long, env = "MESH_COORDINATOR_METRICS_TLS")]
    metrics_tls: bool,
    /// Directory for the state database (the applied topology and its
    /// placement) [default: mesh-coordinator-state in the working directory].
    #[arg(long, env = "MESH_COORDINATOR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Certificate directory made by `meshctl certs` (uses ca.crt and coordinator-NAME.crt/.key).
    #[arg(long, env = "MESH_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// NAME of this coordinator's certificate [default: coordinator].
    #[arg(long, env = "MESH_COORDINATOR_NAME")]
    name: Option<String>,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Where hosts join with a token, or "off" [default: the listen IP, port 7445].
    #[arg(long, env = "MESH_COORDINATOR_JOIN_LISTEN")]
    join_listen: Option<String>,
    /// Lifetime in seconds of the agent and coordinator certificates this
    /// coordinator issues and renews [default: 86400].
    #[arg(long, env = "MESH_MEMBER_CERT_LIFETIME_S")]
    member_cert_lifetime_s: Option<u64>,
    /// Missed heartbeats before a node is Suspect [default: 3].
    #[arg(long)]
    suspect_after: Option<u32>,
    /// Missed heartbeats before a node is Down [default: 10].
    #[arg(long)]
    down_after: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    raise_fd_limit();
    let file = match &args.config {
        Some(path) => config::load_file(path)?,
        None => Default::default(),
    };
    let overrides = Overrides {
        listen: args.listen,
        join_listen: args.join_listen,
        member_cert_lifetime_s: args.member_cert_lifetime_s,
        metrics_listen: args.metrics_listen,
        metrics_tls: args.metrics_tls.then_some(true),
        state_dir: args.state_dir,
        tls: TlsSection {
            certs_dir: args.certs_dir,
            name: args.name,
            ca: args.ca,
            cert: args.cert,
            key: args.key,
        },
        liveness: LivenessSection {
            suspect_after: args.suspect_after,
            down_after: args.down_after,
            tick_ms: None,
        },
    };
    let config = config::resolve(file, overrides)?;
    let tls = mesh_certs::MeshTls::load(&config.tls)?;
    let mut settings = config.settings;
    settings.tls_files = Some(config.tls.clone());
    settings.signer = match &config.signing_dir {
        Some(dir) if mesh_coordinator::state::signer::has_signing_key(dir) => {
            let signer = mesh_coordinator::state::signer::Signer::load(dir, &config.tls.ca)
                .map_err(|e| {
                    anyhow::anyhow!("cannot use the signing CA in {}: {e}", dir.display())
                })?
                .with_lifetimes(config.member_cert_lifetime, config.admin_cert_lifetime);
            tracing::info!(dir = %dir.display(), fingerprint = signer.fingerprint(), "signing CA loaded: joins and renewals on");
            Some(std::sync::Arc::new(signer))
        }
        _ => {
            tracing::info!(
                "no signing CA in the certificate directory: joins and renewals are off"
            );
            None
        }
    };
    if settings.signer.is_some() {
        settings.join_listen = config.join_listen;
    }
    let coordinator = Coordinator::new(&tls, settings)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, identity = %tls.identity(), "starting");

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    coordinator.serve(listener, shutdown).await?;
    Ok(())
}

/// Every agent holds one connection; distributions often start services
/// with a soft limit of 1024 descriptors, so take the hard limit.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let from = limit.current;
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, ?from, "cannot raise the open-files limit");
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
