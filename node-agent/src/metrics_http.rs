//! The agent's own `/metrics` (`metrics_listen` in agent.toml, off by
//! default): this host's inventory, GPUs, containers with their resource
//! usage, bridge endpoints and tunnels, under the same names as the
//! coordinator's `/metrics` (see `mesh-exposition`), so one dashboard
//! reads both. It answers also while the coordinator is unreachable,
//! which is when a host's own figures matter most.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use mesh_proto::v1::{ContainerReport, ContainerUsage, HostInventory, Node};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What this agent knows of its host, as the heartbeat reports it.
#[derive(Clone)]
pub struct AgentView {
    pub node: String,
    pub inventory: watch::Receiver<HostInventory>,
    pub containers: Option<watch::Receiver<ContainerReport>>,
    pub usage: Option<watch::Receiver<Vec<ContainerUsage>>>,
    pub bridges: Option<Arc<crate::bridges::BridgeHost>>,
}

impl AgentView {
    /// The exposition text now.
    pub async fn render(&self) -> Result<String, std::fmt::Error> {
        let inventory = self.inventory.borrow().clone();
        let mut usage = self
            .usage
            .as_ref()
            .map(|u| u.borrow().clone())
            .unwrap_or_default();
        if let Some(g) = &inventory.gpus {
            crate::usage::attribute_gpu(&mut usage, &g.processes);
        }
        let (bridges, tunnels) = match &self.bridges {
            Some(b) => b.stats().await,
            None => Default::default(),
        };
        let containers = self.containers.as_ref().map(|c| c.borrow().clone());
        let mut reg = Registry::default();
        mesh_exposition::nodes(
            &mut reg,
            &[mesh_exposition::NodeFacts {
                name: &self.node,
                state: None,
                heartbeat_age: None,
                inventory: Some(&inventory),
            }],
        );
        let node = Node {
            name: self.node.clone(),
            inventory: Some(inventory.clone()),
            ..Default::default()
        };
        mesh_exposition::gpus(&mut reg, &[node], &Default::default());
        mesh_exposition::containers(&mut reg, &[(self.node.clone(), containers)]);
        let mut traffic = std::collections::BTreeMap::new();
        traffic.insert(
            self.node.clone(),
            mesh_exposition::NodeTraffic {
                bridges,
                tunnels,
                usage,
            },
        );
        mesh_exposition::usage(&mut reg, &traffic);
        mesh_exposition::bridges(&mut reg, &traffic);
        let mut out = String::new();
        encode(&mut out, &reg)?;
        Ok(out)
    }
}

async fn metrics(State(view): State<AgentView>) -> impl IntoResponse {
    match view.render().await {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the metrics failed: {e}"),
        ),
    }
}

/// Serves `/metrics` on `addr` until `shutdown`; a port that cannot be
/// bound is logged with the setting to change, and the agent goes on.
pub async fn serve(addr: SocketAddr, view: AgentView, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve the agent's /metrics there; set metrics_listen in agent.toml to a free address, or leave it out");
            return;
        }
    };
    tracing::info!(%addr, "serving the agent's /metrics");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(view);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::warn!(%addr, error = %e, "the agent's /metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{ContainerState, ContainerStatus, DiskSpace};

    #[tokio::test]
    async fn the_agent_exports_its_own_host_under_the_meshs_names() {
        let (_i, inventory) = watch::channel(HostInventory {
            load_1m: 0.5,
            memory_total_bytes: 1 << 30,
            disk: Some(DiskSpace {
                available_bytes: 4096,
                ..Default::default()
            }),
            ..Default::default()
        });
        let (_c, containers) = watch::channel(ContainerReport {
            containers: vec![ContainerStatus {
                name: "web".into(),
                state: ContainerState::Running as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
        let (_u, usage) = watch::channel(vec![ContainerUsage {
            name: "web".into(),
            memory_bytes: 2048,
            ..Default::default()
        }]);
        let view = AgentView {
            node: "pc2".into(),
            inventory,
            containers: Some(containers),
            usage: Some(usage),
            bridges: None,
        };
        let text = view.render().await.expect("render");
        for line in [
            "mesh_node_load1{node=\"pc2\"} 0.5",
            "mesh_node_disk_available_bytes{node=\"pc2\"} 4096.0",
            "mesh_container_running{node=\"pc2\",container=\"web\"",
            "mesh_container_memory_bytes{node=\"pc2\",container=\"web\"",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // No coordinator's view here: no node state, no heartbeat age.
        assert!(!text.contains("mesh_node_state{"), "{text}");
        for name in mesh_exposition::sample_names(&text) {
            assert!(mesh_exposition::EXPORTED.contains(&name.as_str()), "{name}");
        }
    }
}
