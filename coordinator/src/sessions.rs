//! Open agent streams, for sending desired sets and commands down to a
//! node, and commands awaiting their result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mesh_proto::v1::coordinator_message::Body;
use mesh_proto::v1::{
    CheckReport, CheckRequest, CommandResult, ContainerCommand, CoordinatorMessage,
};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::registry::SessionId;

pub type Outbox = mpsc::Sender<Result<CoordinatorMessage, Status>>;

#[derive(Debug, Default)]
pub struct Sessions {
    outboxes: Mutex<HashMap<String, (SessionId, Outbox)>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
    checks: Mutex<HashMap<u64, oneshot::Sender<CheckReport>>>,
    next_command: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    pub fn attach(&self, node: &str, session: SessionId, outbox: Outbox) {
        lock(&self.outboxes).insert(node.to_string(), (session, outbox));
    }

    pub fn detach(&self, node: &str, session: SessionId) {
        let mut outboxes = lock(&self.outboxes);
        if outboxes.get(node).is_some_and(|(s, _)| *s == session) {
            outboxes.remove(node);
        }
    }

    /// Queues `body` for `node`; false when the node has no open stream
    /// or its queue is full (it will get the latest state on reconnect).
    pub fn send(&self, node: &str, body: Body) -> bool {
        let outbox = lock(&self.outboxes).get(node).map(|(_, o)| o.clone());
        match outbox {
            Some(o) => o
                .try_send(Ok(CoordinatorMessage { body: Some(body) }))
                .is_ok(),
            None => false,
        }
    }

    /// Nodes with an open stream.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.outboxes).keys().cloned().collect();
        v.sort();
        v
    }

    /// Queues `body` for every connected node; returns how many took it.
    pub fn send_all(&self, body: Body) -> usize {
        let outboxes: Vec<Outbox> = lock(&self.outboxes)
            .values()
            .map(|(_, o)| o.clone())
            .collect();
        outboxes
            .into_iter()
            .filter(|o| {
                o.try_send(Ok(CoordinatorMessage {
                    body: Some(body.clone()),
                }))
                .is_ok()
            })
            .count()
    }

    /// Asks `node` to run the connectivity checks; waits for its report.
    pub async fn check(
        &self,
        node: &str,
        timeout_ms: u32,
        limit: Duration,
    ) -> Result<CheckReport, String> {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.checks).insert(id, tx);
        if !self.send(node, Body::Check(CheckRequest { id, timeout_ms })) {
            lock(&self.checks).remove(&id);
            return Err(format!("{node}: not connected"));
        }
        let result = tokio::time::timeout(limit, rx).await;
        lock(&self.checks).remove(&id);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(format!("{node}: disconnected before answering")),
            Err(_) => Err(format!("{node}: no answer within {limit:?}")),
        }
    }

    /// Hands a check report to whoever waits for it.
    pub fn complete_check(&self, report: CheckReport) {
        if let Some(tx) = lock(&self.checks).remove(&report.id) {
            let _ = tx.send(report);
        }
    }

    /// Sends `command` to `node` and waits for the agent's result.
    pub async fn command(
        &self,
        node: &str,
        mut command: ContainerCommand,
        limit: Duration,
    ) -> Result<CommandResult, Status> {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed) + 1;
        command.id = id;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if !self.send(node, Body::Command(command)) {
            lock(&self.pending).remove(&id);
            return Err(Status::unavailable(format!(
                "node '{node}' is not connected; check `meshctl nodes`"
            )));
        }
        let result = tokio::time::timeout(limit, rx).await;
        lock(&self.pending).remove(&id);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(Status::unavailable(format!(
                "node '{node}' disconnected before answering"
            ))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "node '{node}' did not answer within {limit:?}"
            ))),
        }
    }

    /// An agent answered command `result.id`.
    pub fn complete(&self, result: CommandResult) {
        if let Some(tx) = lock(&self.pending).remove(&result.id) {
            let _ = tx.send(result);
        }
    }
}
