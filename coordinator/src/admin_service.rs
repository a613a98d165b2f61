//! The admin API for meshctl: nodes and status. Admin certificates only.

use std::sync::Arc;

use mesh_certs::Role;
use mesh_proto::v1::admin_service_server::AdminService;
use mesh_proto::v1::{GetStatusRequest, GetStatusResponse, ListNodesRequest, ListNodesResponse};
use tonic::{Request, Response, Status};

use crate::auth;
use crate::registry::Now;
use crate::state::{Shared, VERSION};

pub struct AdminApi {
    shared: Arc<Shared>,
}

impl AdminApi {
    pub fn new(shared: Arc<Shared>) -> AdminApi {
        AdminApi { shared }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, &s.mesh, "ListNodes", &s.metrics)?;
        let _span = tracing::debug_span!("list_nodes", caller = %caller).entered();
        let now = Now::system();
        let nodes = s.registry().snapshot(now);
        Ok(Response::new(ListNodesResponse {
            nodes,
            now_unix_ms: now.unix_ms,
        }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, &s.mesh, "GetStatus", &s.metrics)?;
        let registry = s.registry();
        let (ready, suspect, down) = registry.counts();
        Ok(Response::new(GetStatusResponse {
            coordinator_version: VERSION.to_string(),
            mesh: s.mesh.clone(),
            uptime_seconds: s.started.elapsed().as_secs(),
            nodes_ready: ready,
            nodes_suspect: suspect,
            nodes_down: down,
            heartbeats_received: s.metrics.heartbeats(),
            connections_refused: s.metrics.connections_refused(),
            calls_refused: s.metrics.calls_refused(),
            agent_streams_open: registry.open_sessions(),
        }))
    }
}
