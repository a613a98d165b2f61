//! Manager tests against the recording fake runtime, in paused tokio time:
//! restart backoff, crash loops, holds, commands in the background,
//! adoption after an agent restart, a lost coordinator. No real sleeps.

mod commands;
mod holds;
mod lifecycle;
mod props;
mod volumes;

use std::time::Duration;

use mesh_proto::v1::{
    ContainerReport, ContainerSpec, ContainerStatus, DesiredContainers, Hold as WireHold,
};
use tokio::sync::watch;

use super::{Manager, ManagerConfig};
use crate::runtime::fake::FakeRuntime;

pub const MESH: &str = "home";

pub fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        group: "g".into(),
        service: name.into(),
        image: "img:1".into(),
        ..Default::default()
    }
}

pub fn held(name: &str, hold: WireHold) -> ContainerSpec {
    ContainerSpec {
        hold: hold as i32,
        ..spec(name)
    }
}

pub fn desired(generation: u64, containers: Vec<ContainerSpec>) -> DesiredContainers {
    DesiredContainers {
        generation,
        containers,
        ..Default::default()
    }
}

pub struct Host {
    pub rt: FakeRuntime,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Host {
        Host {
            rt: FakeRuntime::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh manager (an agent (re)start) over this host's runtime and state.
    pub fn manager(&self) -> (Manager<FakeRuntime>, watch::Receiver<ContainerReport>) {
        Manager::new(
            self.rt.clone(),
            ManagerConfig {
                mesh: MESH.into(),
                state_dir: self.dir.path().join("agent"),
                tick: Duration::from_secs(1),
            },
        )
    }
}

/// Lets background operations (spawned tasks) run to their end.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A pass, then what background work it started, then a pass that takes
/// their results.
pub async fn passes(m: &mut Manager<FakeRuntime>) {
    m.pass().await;
    settle().await;
    m.pass().await;
}

/// Advances paused time by `secs` seconds, a pass every second.
pub async fn run_for(m: &mut Manager<FakeRuntime>, secs: u64) {
    for _ in 0..secs {
        tokio::time::advance(Duration::from_secs(1)).await;
        m.pass().await;
        settle().await;
    }
}

pub fn status(report: &watch::Receiver<ContainerReport>, name: &str) -> ContainerStatus {
    let report = report.borrow();
    let found = report.containers.iter().find(|c| c.name == name);
    found
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {report:?}"))
}
