//! A recording, scriptable [`ContainerRuntime`] for tests of the logic
//! above the runtime seam (only with `cfg(test)` or the `test-util`
//! feature). It keeps containers in memory, behaves like Podman where the
//! manager depends on it (start of a running container and stop of a
//! stopped one are no-ops, remove of a missing one is fine), records every
//! call in order, and lets a test script failures, crashes on start and
//! slow calls. Slow calls sleep on `tokio::time`, so tests run them in
//! paused time.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mesh_proto::v1::ContainerSpec;

use super::{
    ContainerRuntime, ImageInfo, ObservedContainer, Result, RuntimeError, RuntimeInfo, StatsSample,
};
use crate::containers::spec::{container_name, ownership_labels};

/// The runtime operations, for recording and scripting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Ping,
    List,
    Create,
    Start,
    Stop,
    Kill,
    Pause,
    Unpause,
    Remove,
    Logs,
    Exec,
    Images,
    Address,
    Stats,
}

/// One call the runtime received: the operation and the Podman name it
/// was about (the mesh for `list`, empty for calls about no container),
/// and that container's state word when the call came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub name: String,
    pub status: Option<String>,
}

/// A container the fake holds.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeContainer {
    pub id: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Podman's state word: created, running, paused, exited.
    pub status: String,
    pub exit_code: i64,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, FakeContainer>,
    calls: Vec<Call>,
    failures: BTreeMap<(Op, String), VecDeque<RuntimeError>>,
    delays: BTreeMap<(Op, String), Duration>,
    crash_on_start: BTreeMap<String, i64>,
    exec_codes: BTreeMap<String, i64>,
    logs: BTreeMap<String, Vec<String>>,
    /// Podman name -> what `stats` reports for it while it runs.
    stats: BTreeMap<String, StatsSample>,
    unavailable: bool,
    next_id: u64,
}

/// Cheap to clone: clones share one in-memory host.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of `op` so far, by Podman name.
    pub fn calls_of(&self, op: Op) -> Vec<String> {
        let state = self.lock();
        let calls = state.calls.iter().filter(|c| c.op == op);
        calls.map(|c| c.name.clone()).collect()
    }

    /// How many write calls (create, start, stop, kill, pause, unpause,
    /// remove) were made.
    pub fn writes(&self) -> usize {
        use Op::*;
        let state = self.lock();
        let writes = [Create, Start, Stop, Kill, Pause, Unpause, Remove];
        state
            .calls
            .iter()
            .filter(|c| writes.contains(&c.op))
            .count()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// A container by Podman name.
    pub fn container(&self, podman_name: &str) -> Option<FakeContainer> {
        self.lock().containers.get(podman_name).cloned()
    }

    /// The Podman state word of a container, if it exists.
    pub fn status(&self, podman_name: &str) -> Option<String> {
        self.container(podman_name).map(|c| c.status)
    }

    /// Puts a container on the host as if an earlier agent had created it
    /// for `spec` (ownership labels included), in `status`.
    pub fn adopt(&self, mesh: &str, spec: &ContainerSpec, generation: u64, status: &str) {
        let mut state = self.lock();
        state.next_id += 1;
        let container = FakeContainer {
            id: format!("fake{}", state.next_id),
            image: spec.image.clone(),
            labels: ownership_labels(mesh, spec, generation),
            status: status.into(),
            exit_code: 0,
        };
        state
            .containers
            .insert(container_name(&spec.name), container);
    }

    /// The container's main process exits with `code` (a crash when not 0).
    pub fn exit(&self, podman_name: &str, code: i64) {
        if let Some(c) = self.lock().containers.get_mut(podman_name) {
            c.status = "exited".into();
            c.exit_code = code;
        }
    }

    /// Something outside the agent changed the container's state.
    pub fn set_status(&self, podman_name: &str, status: &str) {
        if let Some(c) = self.lock().containers.get_mut(podman_name) {
            c.status = status.into();
        }
    }

    /// The next call of `op` about `podman_name` fails with `error`
    /// (queued: call again to fail more than once).
    pub fn fail_next(&self, op: Op, podman_name: &str, error: RuntimeError) {
        let mut state = self.lock();
        let queue = state.failures.entry((op, podman_name.into())).or_default();
        queue.push_back(error);
    }

    /// Calls of `op` about `podman_name` take `delay` (of tokio time).
    pub fn delay(&self, op: Op, podman_name: &str, delay: Duration) {
        self.lock().delays.insert((op, podman_name.into()), delay);
    }

    /// From now on, the container exits with `code` as soon as it starts
    /// (`None`: it stays up again).
    pub fn crash_on_start(&self, podman_name: &str, code: Option<i64>) {
        let mut state = self.lock();
        match code {
            Some(code) => state.crash_on_start.insert(podman_name.into(), code),
            None => state.crash_on_start.remove(podman_name),
        };
    }

    /// What `exec` in the container returns (a health probe's verdict).
    pub fn set_exec(&self, podman_name: &str, code: i64) {
        self.lock().exec_codes.insert(podman_name.into(), code);
    }

    pub fn set_logs(&self, podman_name: &str, lines: &[&str]) {
        let lines = lines.iter().map(|l| l.to_string()).collect();
        self.lock().logs.insert(podman_name.into(), lines);
    }

    /// The Podman API stops (or starts again) answering.
    /// What `stats` reports for the container while it runs (its id is
    /// filled in).
    pub fn set_stats(&self, podman_name: &str, sample: StatsSample) {
        self.lock().stats.insert(podman_name.to_string(), sample);
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Records the call, waits its scripted delay, then returns its
    /// scripted failure if any.
    async fn enter(&self, op: Op, name: &str) -> Result<()> {
        let delay = {
            let mut state = self.lock();
            let status = state.containers.get(name).map(|c| c.status.clone());
            state.calls.push(Call {
                op,
                name: name.into(),
                status,
            });
            state.delays.get(&(op, name.to_string())).copied()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        if state.unavailable {
            return Err(RuntimeError::Unavailable {
                socket: "fake".into(),
                reason: "stopped by the test".into(),
            });
        }
        let scripted = state
            .failures
            .get_mut(&(op, name.to_string()))
            .and_then(VecDeque::pop_front);
        match scripted {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies `change` to an existing container.
    fn with<T>(
        &self,
        name: &str,
        change: impl FnOnce(&mut FakeContainer, &State) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut container = state
            .containers
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound { name: name.into() })?;
        let out = change(&mut container, state)?;
        state.containers.insert(name.into(), container);
        Ok(out)
    }
}

fn refused(what: &str, c: &FakeContainer) -> RuntimeError {
    RuntimeError::Podman(format!("cannot {what} a container that is {}", c.status))
}

impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<RuntimeInfo> {
        self.enter(Op::Ping, "").await?;
        Ok(RuntimeInfo {
            version: "fake".into(),
        })
    }

    async fn list(&self, mesh: &str) -> Result<Vec<ObservedContainer>> {
        self.enter(Op::List, mesh).await?;
        let state = self.lock();
        let label = crate::containers::spec::LABEL_MESH;
        let ours = state
            .containers
            .iter()
            .filter(|(_, c)| c.labels.get(label).is_some_and(|m| m == mesh));
        Ok(ours
            .map(|(name, c)| ObservedContainer {
                id: c.id.clone(),
                podman_name: name.clone(),
                image: c.image.clone(),
                labels: c.labels.clone(),
                status: c.status.clone(),
                exit_code: c.exit_code,
                started_at: 0,
            })
            .collect())
    }

    async fn create(&self, mesh: &str, spec: &ContainerSpec, generation: u64) -> Result<String> {
        let name = container_name(&spec.name);
        self.enter(Op::Create, &name).await?;
        let mut state = self.lock();
        if state.containers.contains_key(&name) {
            return Err(RuntimeError::Podman(format!(
                "the container name \"{name}\" is already in use"
            )));
        }
        state.next_id += 1;
        let id = format!("fake{}", state.next_id);
        let container = FakeContainer {
            id: id.clone(),
            image: spec.image.clone(),
            labels: ownership_labels(mesh, spec, generation),
            status: "created".into(),
            exit_code: 0,
        };
        state.containers.insert(name, container);
        Ok(id)
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.enter(Op::Start, name).await?;
        self.with(name, |c, state| {
            match c.status.as_str() {
                "running" => return Ok(()),
                "paused" => return Err(refused("start", c)),
                _ => {}
            }
            match state.crash_on_start.get(name) {
                Some(code) => {
                    c.status = "exited".into();
                    c.exit_code = *code;
                }
                None => {
                    c.status = "running".into();
                    c.exit_code = 0;
                }
            }
            Ok(())
        })
    }

    async fn stop(&self, name: &str, _timeout: Duration) -> Result<()> {
        self.enter(Op::Stop, name).await?;
        self.with(name, |c, _| {
            if matches!(c.status.as_str(), "running" | "paused") {
                c.status = "exited".into();
                c.exit_code = 0;
            }
            Ok(())
        })
    }

    async fn kill(&self, name: &str) -> Result<()> {
        self.enter(Op::Kill, name).await?;
        self.with(name, |c, _| {
            if !matches!(c.status.as_str(), "running" | "paused") {
                return Err(refused("kill", c));
            }
            c.status = "exited".into();
            c.exit_code = 137;
            Ok(())
        })
    }

    async fn pause(&self, name: &str) -> Result<()> {
        self.enter(Op::Pause, name).await?;
        self.with(name, |c, _| match c.status.as_str() {
            "paused" => Ok(()),
            "running" => {
                c.status = "paused".into();
                Ok(())
            }
            _ => Err(refused("pause", c)),
        })
    }

    async fn unpause(&self, name: &str) -> Result<()> {
        self.enter(Op::Unpause, name).await?;
        self.with(name, |c, _| {
            if c.status != "paused" {
                return Err(refused("unpause", c));
            }
            c.status = "running".into();
            Ok(())
        })
    }

    async fn remove(&self, name: &str) -> Result<()> {
        self.enter(Op::Remove, name).await?;
        self.lock().containers.remove(name);
        Ok(())
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        self.enter(Op::Logs, name).await?;
        let state = self.lock();
        if !state.containers.contains_key(name) {
            return Err(RuntimeError::NotFound { name: name.into() });
        }
        let lines = state.logs.get(name).cloned().unwrap_or_default();
        let skip = lines.len().saturating_sub(tail);
        Ok(lines.into_iter().skip(skip).collect())
    }

    async fn exec(&self, name: &str, _command: &[String]) -> Result<i64> {
        self.enter(Op::Exec, name).await?;
        self.with(name, |c, state| {
            if c.status != "running" {
                return Err(refused("exec in", c));
            }
            Ok(state.exec_codes.get(name).copied().unwrap_or(0))
        })
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        self.enter(Op::Images, "").await?;
        let state = self.lock();
        let mut images: Vec<String> = state.containers.values().map(|c| c.image.clone()).collect();
        images.sort();
        images.dedup();
        Ok(images
            .into_iter()
            .map(|image| ImageInfo {
                id: format!("sha256:{image}"),
                names: vec![image],
                size_bytes: 1,
            })
            .collect())
    }

    async fn stats(&self, ids: &[String]) -> Result<Vec<StatsSample>> {
        self.enter(Op::Stats, "").await?;
        let state = self.lock();
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| c.status == "running" && ids.contains(&c.id))
            .map(|(name, c)| StatsSample {
                id: c.id.clone(),
                ..state.stats.get(name).cloned().unwrap_or_default()
            })
            .collect())
    }

    async fn address(&self, name: &str) -> Result<Option<IpAddr>> {
        self.enter(Op::Address, name).await?;
        self.with(name, |_, _| Ok(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))))
    }
}

#[cfg(test)]
mod tests;
