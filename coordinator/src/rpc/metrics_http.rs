//! The coordinator's `/metrics` endpoint (Prometheus / OpenMetrics text)
//! and web dashboard (see [`super::dashboard_http`]), on a listener of
//! their own, off the mutual-TLS gRPC port: by default on localhost only
//! (`metrics_listen` in coordinator.toml, `--metrics-listen`; "off" turns
//! it off). Plain HTTP, or with `metrics_tls` HTTPS with mutual TLS (see
//! [`super::metrics_tls`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers share: the coordinator's state, and its shutdown
/// (which ends the dashboard's streams).
#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    match crate::state::exposition::render(&s.shared) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the metrics failed: {e}"),
        ),
    }
}

/// The router: `/metrics` and the dashboard.
pub fn router(shared: Arc<Shared>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(super::dashboard_http::routes())
        .with_state(HttpState { shared, shutdown })
}

/// Serves `/metrics` and the dashboard on `addr` until `shutdown`, over
/// TLS when `tls` is given. A port that cannot be bound is logged (with
/// the setting to change) and the coordinator goes on without them.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve /metrics there; set metrics_listen (or --metrics-listen) to a free address, or \"off\"");
            return;
        }
    };
    let app = router(shared, shutdown.clone());
    let stop = shutdown.clone();
    let served = match tls {
        None => {
            tracing::info!(%addr, "serving /metrics and the dashboard at http://{addr}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
        Some(config) => {
            let listener =
                match super::metrics_tls::TlsListener::new(listener, config, shutdown.clone()) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "cannot serve /metrics over TLS there");
                        return;
                    }
                };
            tracing::info!(%addr, "serving /metrics and the dashboard at https://{addr}/ (mutual TLS: a client certificate from the mesh CA is required)");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
    };
    if let Err(e) = served {
        tracing::warn!(%addr, error = %e, "the /metrics server stopped");
    }
}
