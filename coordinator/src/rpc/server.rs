//! Wires the coordinator together: TLS listener, gRPC services, liveness
//! ticker, graceful shutdown. Listeners are passed in so tests bind port 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_certs::{MeshTls, Role};
use mesh_proto::transport::{tls_incoming, ALPN_H2};
use mesh_proto::v1::admin_service_server::AdminServiceServer;
use mesh_proto::v1::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::decide::liveness::LivenessPolicy;
use crate::rpc::admin_service::AdminApi;
use crate::rpc::agent_service::{log_transition, AgentApi};
use crate::state::registry::Now;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this coordinator's certificate is {0}; a coordinator needs a certificate with role coordinator (meshctl certs issue --role coordinator)")]
    WrongRole(String),
    #[error("invalid liveness settings: {0}")]
    Liveness(String),
    #[error(transparent)]
    Certs(#[from] mesh_certs::Error),
    #[error(transparent)]
    Store(#[from] crate::state::store::StoreError),
    #[error("cannot resume the topology stored in {path}: {message}; move the file away to start without it")]
    Restore { path: String, message: String },
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `/metrics` listens on localhost at this port unless configured.
pub const DEFAULT_METRICS_PORT: u16 = 9464;

#[derive(Clone, Debug)]
pub struct Settings {
    pub liveness: LivenessPolicy,
    /// How often liveness is re-assessed.
    pub tick: Duration,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Where the applied topology is kept (redb). None: in memory only, a
    /// restart forgets it.
    pub state_dir: Option<std::path::PathBuf>,
    /// How often the topology rollout re-evaluates the agents' reports.
    pub rollout_tick: Duration,
    /// Where `/metrics` is served (None: not at all).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `/metrics` and the dashboard over mutual TLS (mesh certificates).
    pub metrics_tls: bool,
    /// How much event history is kept.
    pub events: crate::state::events::Retention,
    /// Where hosts join with a token (None: not at all; needs `signer`).
    pub join_listen: Option<std::net::SocketAddr>,
    /// Signs joining and renewing members, and renews this coordinator's
    /// own certificate.
    pub signer: Option<Arc<crate::state::signer::Signer>>,
    /// Where this coordinator's certificate lives, so a renewed one is
    /// written back (None: renewed in memory only).
    pub tls_files: Option<mesh_certs::TlsFiles>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            liveness: LivenessPolicy::default(),
            tick: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            state_dir: None,
            rollout_tick: Duration::from_millis(200),
            metrics_listen: Some(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                DEFAULT_METRICS_PORT,
            ))),
            metrics_tls: false,
            events: Default::default(),
            join_listen: None,
            signer: None,
            tls_files: None,
        }
    }
}

/// A coordinator ready to serve: checked configuration, shared state.
pub struct Coordinator {
    shared: Arc<Shared>,
    server_tls: Arc<rustls::ServerConfig>,
    metrics_tls: Option<Arc<rustls::ServerConfig>>,
    join_tls: Option<Arc<rustls::ServerConfig>>,
    tls: MeshTls,
    settings: Settings,
}

impl Coordinator {
    pub fn new(tls: &MeshTls, settings: Settings) -> Result<Coordinator> {
        let identity = tls.identity();
        if identity.role != Role::Coordinator {
            return Err(Error::WrongRole(identity.to_string()));
        }
        settings.liveness.validate().map_err(Error::Liveness)?;
        let store = match &settings.state_dir {
            Some(dir) => Some(crate::state::store::Store::open(dir)?),
            None => None,
        };
        let path = store
            .as_ref()
            .map(|s| s.path().display().to_string())
            .unwrap_or_default();
        let shared = Shared::new(identity.mesh.clone(), settings.liveness, store)?;
        shared.events.set_retention(settings.events);
        match crate::rpc::topology_api::restore(&shared) {
            Ok(Some(source)) => {
                tracing::info!(%source, "resuming the applied topology from the state database")
            }
            Ok(None) => {}
            Err(message) => return Err(Error::Restore { path, message }),
        }
        // Numbered before any agent connects: an agent keeps the newest
        // directory it saw, also one from before this process.
        let _ = shared.revocations.set(tls.revocations().clone());
        if let Some(signer) = &settings.signer {
            let _ = shared.signer.set(signer.clone());
        }
        tls.revocations().replace(
            shared
                .identities
                .revoked_serials(Now::system().unix_ms / 1000),
        );
        shared.refresh_directory(Now::system().unix_ms.max(0) as u64);
        Ok(Coordinator {
            join_tls: match &settings.signer {
                Some(signer) => Some(tls.server_config_for_join(signer.root_pem(), &[ALPN_H2])?),
                None => None,
            },
            tls: tls.clone(),
            shared,
            server_tls: tls.server_config(&[ALPN_H2])?,
            metrics_tls: if settings.metrics_tls {
                Some(tls.server_config(&[b"http/1.1"])?)
            } else {
                None
            },
            settings,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains for a bounded time.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
        let shared = self.shared;
        let refusals = shared.clone();
        let quiet = RefusalWindow::default();
        let incoming = tls_incoming(
            listener,
            self.server_tls,
            self.settings.handshake_timeout,
            move |refusal| {
                let reason = crate::state::metrics::connection_reason(&refusal.reason);
                refusals.metrics.count_connection_refused(reason);
                // Every refusal is counted; one per peer and reason per 10 s
                // is recorded and logged, so a flood cannot flood the history.
                if !quiet.first_in_window(refusal.peer.ip(), reason, Instant::now()) {
                    return;
                }
                refusals.events.record(
                    "certificate",
                    "",
                    "",
                    format!(
                        "TLS connection from {} refused: {}",
                        refusal.peer, refusal.reason
                    ),
                );
                tracing::warn!(peer = %refusal.peer, reason = %refusal.reason, "TLS connection refused");
            },
        );
        let ticker = tokio::spawn(liveness_loop(
            shared.clone(),
            self.settings.tick,
            shutdown.clone(),
        ));
        tokio::spawn(crate::state::image_sync::run(
            shared.clone(),
            shutdown.clone(),
        ));
        let rollout = tokio::spawn(rollout_loop(
            shared.clone(),
            self.settings.rollout_tick,
            shutdown.clone(),
        ));
        if let Some(addr) = self.settings.metrics_listen {
            tokio::spawn(crate::rpc::metrics_http::serve(
                addr,
                shared.clone(),
                shutdown.clone(),
                self.metrics_tls.clone(),
            ));
        }
        if let (Some(addr), Some(join_tls)) = (self.settings.join_listen, self.join_tls.clone()) {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "join port listening");
                    tokio::spawn(serve_join(
                        shared.clone(),
                        l,
                        join_tls,
                        self.settings.handshake_timeout,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot listen on the join port; hosts cannot join (set join_listen)")
                }
            }
        }
        if let Some(signer) = self.settings.signer.clone() {
            tokio::spawn(crate::rpc::self_renewal::run(
                self.tls.clone(),
                signer,
                self.settings.tls_files.clone(),
                shutdown.clone(),
            ));
        }
        tracing::info!(mesh = %shared.mesh, "coordinator serving");
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(AgentServiceServer::new(AgentApi::new(shared.clone())))
            .add_service(AdminServiceServer::new(AdminApi::new(shared.clone())))
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
        // Agent streams never end by themselves, so graceful shutdown would
        // wait forever: give in-flight calls a fixed grace period, then stop.
        let grace = self.settings.shutdown_grace;
        let result = tokio::select! {
            result = server => result.map_err(Error::Serve),
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::info!(?grace, "grace period over, closing remaining streams");
                Ok(())
            }
        };
        ticker.abort();
        rollout.abort();
        result
    }
}

/// The join port: Join only, anonymous TLS, handshakes bounded as on the
/// main port.
async fn serve_join(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
) {
    let incoming = tls_incoming(listener, tls, handshake_timeout, |refusal| {
        tracing::debug!(peer = %refusal.peer, reason = %refusal.reason, "join TLS connection refused");
    });
    let result = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(10))
        .add_service(mesh_proto::v1::join_service_server::JoinServiceServer::new(
            crate::rpc::identity_api::JoinApi::new(shared),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "join server failed");
    }
}

async fn liveness_loop(shared: Arc<Shared>, tick: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let changes = shared.registry().tick(Now::system());
                for change in changes {
                    log_transition(&shared, Some(change));
                }
            }
        }
    }
}

/// Applies the topology rollout to the agents' latest reports, step by step.
async fn rollout_loop(shared: Arc<Shared>, tick: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let reports = crate::state::topology_state::usable_reports(
                    shared.registry().container_reports(None),
                );
                shared.events.containers(&reports);
                crate::state::topology_state::seed_volumes(&shared);
                shared.events.flush();
                let sets = shared.topology.tick(&reports, &shared.events);
                // Directory first: an agent must close a bridge endpoint on
                // a port before a service that moved there publishes it.
                let now = Now::system().unix_ms.max(0) as u64;
                shared.refresh_directory(now);
                crate::state::topology_state::push_sets(&shared, sets, now);
                crate::state::failover::tick(&shared);
                crate::state::topology_state::refresh_volumes(&shared, now);
            }
        }
    }
}

/// Which (peer, reason) pairs were reported in the last 10 s.
#[derive(Default)]
struct RefusalWindow(
    std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, &'static str), Instant>>,
);

impl RefusalWindow {
    const WINDOW: Duration = Duration::from_secs(10);

    /// Whether this refusal is the first of its peer and reason in the window.
    fn first_in_window(&self, ip: std::net::IpAddr, reason: &'static str, now: Instant) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 4096 {
            seen.retain(|_, at| now.duration_since(*at) < Self::WINDOW);
        }
        match seen.get(&(ip, reason)) {
            Some(at) if now.duration_since(*at) < Self::WINDOW => false,
            _ => {
                seen.insert((ip, reason), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod refusal_window_tests {
    use super::*;

    #[test]
    fn one_report_per_peer_and_reason_per_window() {
        let w = RefusalWindow::default();
        let t = Instant::now();
        let a: std::net::IpAddr = [10, 0, 0, 2].into();
        let b: std::net::IpAddr = [10, 0, 0, 3].into();
        assert!(w.first_in_window(a, "unknown_ca", t));
        assert!(!w.first_in_window(a, "unknown_ca", t + Duration::from_secs(1)));
        assert!(w.first_in_window(a, "expired", t + Duration::from_secs(1)));
        assert!(w.first_in_window(b, "unknown_ca", t + Duration::from_secs(1)));
        assert!(w.first_in_window(a, "unknown_ca", t + Duration::from_secs(11)));
    }
}
