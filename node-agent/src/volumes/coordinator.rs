//! The primary's questions to the coordinator (`AgentService.VolumeEvent`
//! over mutual TLS), behind the `mesh_volumes` seam: outdate the standby
//! before going on alone, and say when it is UpToDate again. Only a
//! committed answer counts; anything else is an error, and the primary
//! keeps waiting and asks again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_proto::transport::{self, ConnectOptions};
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::{VolumeEventAnswer, VolumeEventKind, VolumeEventRequest};
use mesh_volumes::replication::transport::{Coordinator, CoordinatorError, OutdateAnswer};
use tokio::runtime::Handle;
use tonic::transport::Channel;

/// How the agent reaches the coordinator; shared by its volumes.
pub struct CoordinatorLink {
    pub address: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub options: ConnectOptions,
    /// Bound on one call, connecting included.
    pub timeout: Duration,
    pub runtime: Handle,
    channel: Mutex<Option<Channel>>,
}

impl CoordinatorLink {
    pub fn new(address: &str, tls: Arc<rustls::ClientConfig>, runtime: Handle) -> CoordinatorLink {
        CoordinatorLink {
            address: address.to_string(),
            tls,
            options: ConnectOptions::default(),
            timeout: Duration::from_secs(5),
            runtime,
            channel: Mutex::new(None),
        }
    }

    /// Sends one event and waits for its answer. Blocks: call it on a
    /// blocking thread.
    pub fn event(&self, req: VolumeEventRequest) -> Result<(VolumeEventAnswer, u64), String> {
        let cached = self
            .channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let call = async {
            let channel = match cached {
                Some(c) => c,
                None => transport::connect(&self.address, self.tls.clone(), &self.options)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            let mut client = AgentServiceClient::new(channel.clone());
            let answer = client
                .volume_event(req)
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            Ok::<_, String>((channel, answer))
        };
        let result = self.runtime.block_on(async {
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|_| format!("no answer within {:?}", self.timeout))?
        });
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((channel, answer)) => {
                *slot = Some(channel);
                Ok((answer.answer(), answer.epoch))
            }
            Err(e) => {
                *slot = None;
                Err(format!("coordinator {}: {e}", self.address))
            }
        }
    }
}

/// One volume's view of the link (the seam speaks of groups; the record
/// is per volume).
pub struct RpcCoordinator {
    pub link: Arc<CoordinatorLink>,
    pub volume: String,
}

impl RpcCoordinator {
    fn ask(
        &self,
        group: &str,
        epoch: u64,
        request: u64,
        kind: VolumeEventKind,
    ) -> Result<OutdateAnswer, CoordinatorError> {
        let req = VolumeEventRequest {
            group: group.to_string(),
            volume: self.volume.clone(),
            epoch,
            request,
            kind: kind as i32,
        };
        match self.link.event(req).map_err(CoordinatorError)? {
            (VolumeEventAnswer::Recorded, _) => Ok(OutdateAnswer::Outdated),
            (VolumeEventAnswer::NewerEpoch, newer) => Ok(OutdateAnswer::NewerEpoch(newer)),
            (other, _) => Err(CoordinatorError(format!(
                "the coordinator did not record it: {}",
                other.as_str_name()
            ))),
        }
    }
}

impl Coordinator for RpcCoordinator {
    fn outdate_standby(
        &self,
        group: &str,
        epoch: u64,
        request: u64,
    ) -> Result<OutdateAnswer, CoordinatorError> {
        self.ask(group, epoch, request, VolumeEventKind::OutdateStandby)
    }

    fn standby_up_to_date(&self, group: &str, epoch: u64) -> Result<(), CoordinatorError> {
        match self.ask(group, epoch, 0, VolumeEventKind::StandbyUpToDate)? {
            OutdateAnswer::Outdated => Ok(()),
            OutdateAnswer::NewerEpoch(e) => Err(CoordinatorError(format!(
                "the group is at epoch {e}, newer than this primary's {epoch}"
            ))),
        }
    }
}
