//! The admin API for meshctl: nodes, status, containers and commands.
//! Admin certificates only.

use std::sync::Arc;
use std::time::Duration;

use mesh_certs::Role;
use mesh_proto::v1::admin_service_server::AdminService;
use mesh_proto::v1::{
    rollout_event, ApplyTopologyRequest, CheckRequest, CheckResponse, CommandAction, CommandResult,
    ContainerCommand, Directory, GetDirectoryRequest, GetStatusRequest, GetStatusResponse,
    GetTopologyRequest, Hold, ListContainersRequest, ListContainersResponse, ListNodesRequest,
    ListNodesResponse, ListVolumesRequest, ListVolumesResponse, NodeContainers,
    PlanTopologyRequest, RolloutEvent, RolloutSummary, RunCommandRequest, SetContainersRequest,
    SetContainersResponse, SwitchoverRequest, SwitchoverResponse, TopologyPlan, TopologyStatus,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::rpc::auth;
use crate::rpc::identity_api;
use crate::rpc::topology_api;
use crate::state::registry::Now;
use crate::state::topology_state::usable_reports;
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
    type ApplyTopologyStream = ReceiverStream<Result<RolloutEvent, Status>>;
    type FollowEventsStream = ReceiverStream<Result<mesh_proto::v1::MeshEvent, Status>>;

    async fn list_events(
        &self,
        request: Request<mesh_proto::v1::ListEventsRequest>,
    ) -> Result<Response<mesh_proto::v1::ListEventsResponse>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "ListEvents")?;
        let events = crate::rpc::events_api::list(s, request.get_ref())?;
        Ok(Response::new(mesh_proto::v1::ListEventsResponse { events }))
    }

    async fn follow_events(
        &self,
        request: Request<mesh_proto::v1::ListEventsRequest>,
    ) -> Result<Response<Self::FollowEventsStream>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "FollowEvents")?;
        let stream = crate::rpc::events_api::follow(s, request.into_inner())?;
        Ok(Response::new(stream))
    }

    type CopyImageStream = crate::rpc::images_api::ProgressStream;

    async fn copy_image(
        &self,
        request: Request<mesh_proto::v1::CopyImageRequest>,
    ) -> Result<Response<Self::CopyImageStream>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "CopyImage")?;
        let stream = crate::rpc::images_api::copy(s, request.into_inner())?;
        Ok(Response::new(stream))
    }

    type FollowLogsStream = ReceiverStream<Result<mesh_proto::v1::LogChunk, Status>>;

    async fn follow_logs(
        &self,
        request: Request<mesh_proto::v1::FollowLogsRequest>,
    ) -> Result<Response<Self::FollowLogsStream>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "FollowLogs")?;
        let req = request.into_inner();
        let (id, mut chunks) = s
            .sessions
            .follow_logs(&req.node, &req.container, req.tail)?;
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        let node = req.node.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    c = chunks.recv() => match c {
                        Some(c) => {
                            let end = c.end;
                            if tx.send(Ok(c)).await.is_err() || end {
                                break;
                            }
                        }
                        None => {
                            let _ = tx
                                .send(Err(Status::unavailable(format!(
                                    "node '{node}' disconnected, or this follower fell behind; run it again"
                                ))))
                                .await;
                            break;
                        }
                    },
                }
            }
            shared.sessions.stop_logs(id);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_usage(
        &self,
        request: Request<mesh_proto::v1::GetUsageRequest>,
    ) -> Result<Response<mesh_proto::v1::GetUsageResponse>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "GetUsage")?;
        let only = request.into_inner().node;
        if !only.is_empty() && !s.registry().is_known(&only) {
            return Err(Status::not_found(format!(
                "no node named '{only}' (see `meshctl nodes`)"
            )));
        }
        let nodes = s
            .traffic
            .all()
            .into_iter()
            .filter(|(n, _)| only.is_empty() || *n == only)
            .map(|(node, t)| mesh_proto::v1::NodeUsage {
                node,
                containers: t.usage,
            })
            .collect();
        Ok(Response::new(mesh_proto::v1::GetUsageResponse { nodes }))
    }

    async fn plan_topology(
        &self,
        request: Request<PlanTopologyRequest>,
    ) -> Result<Response<TopologyPlan>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "PlanTopology")?;
        let req = request.into_inner();
        let _span =
            tracing::info_span!("plan_topology", source = %req.source_name, caller = %caller)
                .entered();
        let prepared = topology_api::prepare(
            s,
            &req.source_name,
            &req.topology_toml,
            &req.fail_hosts,
            &req.explain_group,
        )?;
        Ok(Response::new(prepared.proto))
    }

    async fn apply_topology(
        &self,
        request: Request<ApplyTopologyRequest>,
    ) -> Result<Response<Self::ApplyTopologyStream>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "ApplyTopology")?;
        let req = request.into_inner();
        let span =
            tracing::info_span!("apply_topology", source = %req.source_name, caller = %caller);
        let prepared = {
            let _e = span.enter();
            topology_api::prepare(s, &req.source_name, &req.topology_toml, &[], "")?
        };
        let applied = topology_api::applied_record(
            &prepared,
            &req.source_name,
            &req.topology_toml,
            req.timeout_seconds,
        );
        let (id, mut events) = s
            .topology
            .begin(
                applied,
                prepared.planned,
                topology_api::host_names(&prepared.topology),
                topology_api::unplaced(&prepared.plan),
                crate::decide::directory::bridge_defs(&prepared.topology),
                crate::decide::volumes::volume_defs(&prepared.topology),
            )
            .map_err(|e| Status::internal(format!("{e}; nothing changed")))?;
        tracing::info!(parent: &span, rollout = id, groups = prepared.plan.placements.len(), "topology applied and persisted");
        s.events.record(
            "topology",
            "",
            "",
            format!(
                "{} applied by {caller}: {}",
                req.source_name,
                prepared
                    .plan
                    .placements
                    .iter()
                    .map(|(g, h)| format!("{g} on {h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        for c in &prepared.proto.changes {
            if let Some((kind, node, group, message)) =
                crate::decide::rollout_events::placement_entry(c)
            {
                s.events.record(kind, &node, &group, message);
            }
        }
        let (tx, rx) = mpsc::channel(256);
        let shared = self.shared.clone();
        let first = RolloutEvent {
            body: Some(rollout_event::Body::Plan(prepared.proto)),
        };
        tokio::spawn(
            async move {
                if tx.send(Ok(first)).await.is_err() {
                    return;
                }
                loop {
                    let event = match events.recv().await {
                        Ok((rid, e)) if rid == id => e,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "rollout follower lagged");
                            match shared.topology.summary_of(id) {
                                Some(summary) => RolloutEvent {
                                    body: Some(rollout_event::Body::Summary(summary)),
                                },
                                None => continue,
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            let summary = shared.topology.summary_of(id).unwrap_or(RolloutSummary {
                                ok: false,
                                message: "the coordinator is shutting down; the rollout resumes when it restarts".into(),
                                ..Default::default()
                            });
                            RolloutEvent { body: Some(rollout_event::Body::Summary(summary)) }
                        }
                    };
                    let last = matches!(event.body, Some(rollout_event::Body::Summary(_)));
                    if tx.send(Ok(event)).await.is_err() || last {
                        return;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "ListVolumes")?;
        let volumes = crate::rpc::volumes_api::live_rows(s);
        Ok(Response::new(ListVolumesResponse { volumes }))
    }

    async fn switchover(
        &self,
        request: Request<SwitchoverRequest>,
    ) -> Result<Response<SwitchoverResponse>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "Switchover")?;
        let req = request.into_inner();
        let _span =
            tracing::info_span!("switchover", group = %req.group, to = %req.to, caller = %caller)
                .entered();
        let m = crate::state::switchover::start(s, &req.group, &req.to)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(SwitchoverResponse {
            from: m.from,
            to: m.to,
            epoch: m.epoch,
        }))
    }

    async fn get_directory(
        &self,
        request: Request<GetDirectoryRequest>,
    ) -> Result<Response<Directory>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "GetDirectory")?;
        Ok(Response::new(s.directory()))
    }

    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "Check")?;
        let req = request.into_inner();
        let span = tracing::info_span!("check", caller = %caller);
        let timeout_ms = if req.timeout_ms == 0 {
            3000
        } else {
            req.timeout_ms.min(60_000)
        };
        // Every probe of an agent may take the timeout; give the whole
        // report room for a handful of them.
        let limit = Duration::from_millis(u64::from(timeout_ms) * 4 + 2000);
        let registered: Vec<String> = s
            .registry()
            .snapshot(Now::system())
            .into_iter()
            .map(|n| n.name)
            .collect();
        let connected = s.sessions.connected();
        let mut missing: Vec<String> = registered
            .iter()
            .filter(|n| !connected.contains(n))
            .map(|n| format!("{n}: not connected to the coordinator (see `meshctl nodes`)"))
            .collect();
        let asks = connected.iter().map(|node| {
            let shared = self.shared.clone();
            let node = node.clone();
            async move { shared.sessions.check(&node, timeout_ms, limit).await }
        });
        let results = futures::future::join_all(asks).instrument(span).await;
        let mut reports = Vec::new();
        for r in results {
            match r {
                Ok(report) => reports.push(report),
                Err(e) => missing.push(e),
            }
        }
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(Response::new(CheckResponse { reports, missing }))
    }

    async fn get_topology(
        &self,
        request: Request<GetTopologyRequest>,
    ) -> Result<Response<TopologyStatus>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "GetTopology")?;
        let reports = usable_reports(s.registry().container_reports(None));
        let mut status = s.topology.status(&reports);
        let records = s.volumes.records();
        for g in &mut status.groups {
            if let Some(r) = records
                .values()
                .find(|r| r.group == g.group && r.replicate && !r.standby.is_empty())
            {
                g.standby = r.standby.clone();
            }
        }
        Ok(Response::new(status))
    }

    async fn create_token(
        &self,
        request: Request<mesh_proto::v1::CreateTokenRequest>,
    ) -> Result<Response<mesh_proto::v1::CreateTokenResponse>, Status> {
        let caller = auth::require(&request, Role::Admin, &self.shared, "CreateToken")?;
        identity_api::create_token(&self.shared, &caller, request.into_inner()).map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<mesh_proto::v1::ListTokensRequest>,
    ) -> Result<Response<mesh_proto::v1::ListTokensResponse>, Status> {
        auth::require(&request, Role::Admin, &self.shared, "ListTokens")?;
        Ok(Response::new(identity_api::list_tokens(&self.shared)))
    }

    async fn revoke_token(
        &self,
        request: Request<mesh_proto::v1::RevokeTokenRequest>,
    ) -> Result<Response<mesh_proto::v1::RevokeTokenResponse>, Status> {
        let caller = auth::require(&request, Role::Admin, &self.shared, "RevokeToken")?;
        let id = request.into_inner().id;
        match self.shared.identities.revoke_token(&id) {
            Ok(true) => {
                self.shared.events.record(
                    "admin",
                    "",
                    "",
                    format!("RevokeToken by {caller}: token {id}"),
                );
                Ok(Response::new(Default::default()))
            }
            Ok(false) => Err(Status::not_found(format!(
                "no token '{id}' (see `meshctl token list`)"
            ))),
            Err(e) => Err(Status::unavailable(format!(
                "cannot record the revocation: {e}"
            ))),
        }
    }

    async fn list_identities(
        &self,
        request: Request<mesh_proto::v1::ListIdentitiesRequest>,
    ) -> Result<Response<mesh_proto::v1::ListIdentitiesResponse>, Status> {
        auth::require(&request, Role::Admin, &self.shared, "ListIdentities")?;
        Ok(Response::new(identity_api::list_identities(&self.shared)))
    }

    async fn remove_node(
        &self,
        request: Request<mesh_proto::v1::RemoveNodeRequest>,
    ) -> Result<Response<mesh_proto::v1::RemoveNodeResponse>, Status> {
        let caller = auth::require(&request, Role::Admin, &self.shared, "RemoveNode")?;
        let name = request.into_inner().name;
        identity_api::remove_node(&self.shared, &caller, &name).map(Response::new)
    }

    async fn revoke_certificate(
        &self,
        request: Request<mesh_proto::v1::RevokeCertificateRequest>,
    ) -> Result<Response<mesh_proto::v1::RevokeCertificateResponse>, Status> {
        let caller = auth::require(&request, Role::Admin, &self.shared, "RevokeCertificate")?;
        let serial = request.into_inner().serial;
        identity_api::revoke_certificate(&self.shared, &caller, &serial).map(Response::new)
    }

    async fn renew_certificate(
        &self,
        request: Request<mesh_proto::v1::RenewCertificateRequest>,
    ) -> Result<Response<mesh_proto::v1::RenewCertificateResponse>, Status> {
        let caller = auth::require(&request, Role::Admin, &self.shared, "RenewCertificate")?;
        let csr = request.into_inner().csr_pem;
        identity_api::renew(&self.shared, &caller, &csr).map(Response::new)
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "ListNodes")?;
        let _span = tracing::debug_span!("list_nodes", caller = %caller).entered();
        let now = Now::system();
        let mut nodes = s.registry().snapshot(now);
        for n in &mut nodes {
            if let Some(c) = s.identities.newest(Role::Agent, &n.name) {
                n.cert_not_after_unix = c.not_after_unix;
                n.cert_serial = c.serial;
                n.cert_renewed_unix = c.issued_unix;
            }
        }
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
        auth::require(&request, Role::Admin, s, "GetStatus")?;
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

    async fn set_containers(
        &self,
        request: Request<SetContainersRequest>,
    ) -> Result<Response<SetContainersResponse>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "SetContainers")?;
        let req = request.into_inner();
        let _span =
            tracing::info_span!("set_containers", node = %req.node, caller = %caller).entered();
        mesh_certs::validate_name("node name", &req.node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(source) = s.topology.manages(&req.node) {
            return Err(Status::failed_precondition(format!(
                "{} runs the applied topology {source}; change that file and run `meshctl place {source} --apply` instead (nothing changed)",
                req.node
            )));
        }
        if let Err(problems) = mesh_proto::spec::validate_set(&req.containers) {
            return Err(Status::invalid_argument(format!(
                "containers for {} refused, nothing changed:\n  {}",
                req.node,
                problems.join("\n  ")
            )));
        }
        let now = Now::system().unix_ms.max(0) as u64;
        let desired = s
            .desired
            .set(&req.node, req.containers, now)
            .map_err(|e| Status::internal(format!("{e}; nothing changed")))?;
        let generation = desired.generation;
        let delivered = s
            .sync_node(&req.node, std::time::Instant::now())
            .contains(&crate::decide::sync::Kind::Desired);
        tracing::info!(generation, delivered, "desired containers set");
        Ok(Response::new(SetContainersResponse {
            generation,
            delivered,
        }))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let s = &self.shared;
        auth::require(&request, Role::Admin, s, "ListContainers")?;
        let req = request.into_inner();
        let only = (!req.node.is_empty()).then_some(req.node.as_str());
        let reports = s.registry().container_reports(only);
        let nodes = reports
            .into_iter()
            .map(|(node, report)| NodeContainers {
                desired_generation: s.desired.get(&node).map_or(0, |d| d.generation),
                node,
                report,
            })
            .collect();
        Ok(Response::new(ListContainersResponse { nodes }))
    }

    async fn run_command(
        &self,
        request: Request<RunCommandRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let s = &self.shared;
        let caller = auth::require(&request, Role::Admin, s, "RunCommand")?;
        let req = request.into_inner();
        let action = CommandAction::try_from(req.action).unwrap_or(CommandAction::Unspecified);
        let span = tracing::info_span!("run_command", node = %req.node, service = %req.container, action = action.as_str_name(), caller = %caller);
        if action == CommandAction::Unspecified {
            return Err(Status::invalid_argument(
                "no action: use stop, start, restart, pause, resume, kill or logs",
            ));
        }
        if !s.registry().is_known(&req.node) {
            return Err(Status::not_found(format!(
                "no node named '{}' has registered; see `meshctl nodes`",
                req.node
            )));
        }
        if action != CommandAction::Logs {
            s.events.record(
                "admin",
                &req.node,
                "",
                format!(
                    "RunCommand {} {}/{} by {caller}: allowed",
                    action
                        .as_str_name()
                        .trim_start_matches("COMMAND_ACTION_")
                        .to_lowercase(),
                    req.node,
                    req.container
                ),
            );
        }
        // The hold is desired state: recorded and sent before the command,
        // which only gives the operator an immediate result.
        let held = match crate::decide::holds::hold_for(action) {
            Some(hold) => {
                let _e = span.enter();
                Some(record_hold(s, &req.node, &req.container, hold)?)
            }
            None => None,
        };
        let command = ContainerCommand {
            id: 0,
            container: req.container,
            action: action as i32,
            tail: req.tail,
        };
        let result = s
            .sessions
            .command(&req.node, command, Duration::from_secs(60))
            .instrument(span)
            .await
            .map_err(|e| match held {
                Some(hold) if e.code() == tonic::Code::Unavailable => Status::unavailable(format!(
                    "{}; the hold ({}) is recorded and applies when the agent connects",
                    e.message(),
                    hold.as_str_name()
                )),
                _ => e,
            })?;
        Ok(Response::new(result))
    }
}

/// Records `hold` on `container` of `node` and sends the node its set with
/// it (directory first); returns the hold.
fn record_hold(s: &Shared, node: &str, container: &str, hold: Hold) -> Result<Hold, Status> {
    mesh_certs::validate_name("container name", container)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // Without a set yet (e.g. just after a restart) the hold is kept for
    // the set to come; with one, only its containers can be held.
    if let Some(set) = s.desired.get(node) {
        if !set.containers.iter().any(|c| c.name == container) {
            return Err(Status::not_found(format!(
                "no container named '{container}' is desired on {node}; see `meshctl ps` (nothing changed)"
            )));
        }
    }
    let now = Now::system().unix_ms.max(0) as u64;
    let changed = s
        .desired
        .hold(node, container, hold, now)
        .map_err(|e| Status::internal(format!("{e}; nothing changed")))?;
    let generation = changed.map(|d| d.generation);
    let delivered = generation.is_some()
        && s.sync_node(node, std::time::Instant::now())
            .contains(&crate::decide::sync::Kind::Desired);
    tracing::info!(
        hold = hold.as_str_name(),
        ?generation,
        delivered,
        "hold recorded"
    );
    Ok(hold)
}
