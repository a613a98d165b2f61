//! Wires the coordinator together: TLS listener, gRPC services, liveness
//! ticker, graceful shutdown. Listeners are passed in so tests bind port 0.

use std::sync::Arc;
use std::time::Duration;

use mesh_certs::{MeshTls, Role};
use mesh_proto::transport::{tls_incoming, ALPN_H2};
use mesh_proto::v1::admin_service_server::AdminServiceServer;
use mesh_proto::v1::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin_service::AdminApi;
use crate::agent_service::{log_transition, AgentApi};
use crate::liveness::LivenessPolicy;
use crate::registry::Now;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this coordinator's certificate is {0}; a coordinator needs a certificate with role coordinator (meshctl certs issue --role coordinator)")]
    WrongRole(String),
    #[error("invalid liveness settings: {0}")]
    Liveness(String),
    #[error(transparent)]
    Certs(#[from] mesh_certs::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Debug)]
pub struct Settings {
    pub liveness: LivenessPolicy,
    /// How often liveness is re-assessed.
    pub tick: Duration,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            liveness: LivenessPolicy::default(),
            tick: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A coordinator ready to serve: checked configuration, shared state.
pub struct Coordinator {
    shared: Arc<Shared>,
    server_tls: Arc<rustls::ServerConfig>,
    settings: Settings,
}

impl Coordinator {
    pub fn new(tls: &MeshTls, settings: Settings) -> Result<Coordinator> {
        let identity = tls.identity();
        if identity.role != Role::Coordinator {
            return Err(Error::WrongRole(identity.to_string()));
        }
        settings.liveness.validate().map_err(Error::Liveness)?;
        Ok(Coordinator {
            shared: Shared::new(identity.mesh.clone(), settings.liveness),
            server_tls: tls.server_config(&[ALPN_H2])?,
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
        let incoming = tls_incoming(
            listener,
            self.server_tls,
            self.settings.handshake_timeout,
            move |refusal| {
                refusals.metrics.count_connection_refused();
                tracing::warn!(peer = %refusal.peer, reason = %refusal.reason, "TLS connection refused");
            },
        );
        let ticker = tokio::spawn(liveness_loop(
            shared.clone(),
            self.settings.tick,
            shutdown.clone(),
        ));
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
        result
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
                    log_transition(Some(change));
                }
            }
        }
    }
}
