//! Open agent streams, for sending desired sets and commands down to a
//! node, and commands awaiting their result. Each stream remembers what its
//! agent last said it holds and what was sent to it, for [`crate::decide::sync`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mesh_proto::v1::coordinator_message::Body;
use mesh_proto::v1::{
    CheckReport, CheckRequest, CommandResult, ContainerCommand, CoordinatorMessage,
    DesiredContainers, Directory, ImageCopy, ImageCopyProgress, LogChunk, LogFollow,
};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::decide::sync::{self, Held, Kind, Sent};
use crate::state::registry::SessionId;

pub type Outbox = mpsc::Sender<Result<CoordinatorMessage, Status>>;

#[derive(Debug)]
struct Stream {
    session: SessionId,
    outbox: Outbox,
    /// What the agent said it holds in its last heartbeat.
    held: Held,
    sent: Sent,
}

#[derive(Debug, Default)]
pub struct Sessions {
    outboxes: Mutex<HashMap<String, Stream>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
    checks: Mutex<HashMap<u64, oneshot::Sender<CheckReport>>>,
    /// Logs followed for admins: id -> (node, where its chunks go).
    follows: Mutex<HashMap<u64, (String, mpsc::Sender<LogChunk>)>>,
    /// Image copies under way: id -> (receiving node, where its progress goes).
    copies: Mutex<HashMap<u64, (String, mpsc::Sender<ImageCopyProgress>)>>,
    next_command: AtomicU64,
}

/// Chunks of a followed log waiting for a slow admin before the follow is
/// given up.
const FOLLOW_QUEUE: usize = 256;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// A new stream for `node`; its agent is assumed to hold nothing.
    pub fn attach(&self, node: &str, session: SessionId, outbox: Outbox) {
        lock(&self.outboxes).insert(
            node.to_string(),
            Stream {
                session,
                outbox,
                held: Held::NOTHING,
                sent: Sent::default(),
            },
        );
    }

    pub fn detach(&self, node: &str, session: SessionId) {
        let mut outboxes = lock(&self.outboxes);
        if outboxes.get(node).is_some_and(|s| s.session == session) {
            outboxes.remove(node);
            // Its followed logs end: their receivers see the senders go.
            lock(&self.follows).retain(|_, (n, _)| n != node);
            lock(&self.copies).retain(|_, (n, _)| n != node);
        }
    }

    /// Ends `node`'s stream with `status` (its agent sees why); whether
    /// it had one.
    pub fn close(&self, node: &str, status: Status) -> bool {
        let stream = lock(&self.outboxes).remove(node);
        lock(&self.follows).retain(|_, (n, _)| n != node);
        lock(&self.copies).retain(|_, (n, _)| n != node);
        match stream {
            Some(s) => {
                let _ = s.outbox.try_send(Err(status));
                true
            }
            None => false,
        }
    }

    /// The agent on `session` says it holds `held`.
    pub fn heard(&self, node: &str, session: SessionId, held: Held) {
        if let Some(s) = lock(&self.outboxes).get_mut(node) {
            if s.session == session {
                s.held = held;
            }
        }
    }

    /// Queues for `node` what it lags behind `directory` and `desired` (see
    /// [`sync::plan`]), in order, stopping at the first that does not fit
    /// (a later one must not overtake it); returns the kinds queued.
    /// `desired` must be read before `directory`: a set is only made after
    /// the directory it depends on.
    pub fn sync(
        &self,
        node: &str,
        directory: &Directory,
        desired: Option<&DesiredContainers>,
        now: Instant,
    ) -> Vec<Kind> {
        let mut outboxes = lock(&self.outboxes);
        let Some(stream) = outboxes.get_mut(node) else {
            return Vec::new();
        };
        let mut queued = Vec::new();
        for body in sync::plan(stream.held, directory, desired, &stream.sent, now) {
            let kind = sync::kind_of(&body);
            let message = CoordinatorMessage {
                body: Some(body.clone()),
            };
            if stream.outbox.try_send(Ok(message)).is_err() {
                tracing::debug!(node = %node, ?kind, "agent queue full; the next heartbeat repairs it");
                break;
            }
            if let Some((k, generation)) = kind {
                if stream.sent.last(k).is_some_and(|(g, _)| g == generation) {
                    tracing::info!(node = %node, kind = ?k, generation, held = ?stream.held, "agent still lags; sent again");
                }
                queued.push(k);
            }
            stream.sent.record(&body, now);
        }
        queued
    }

    /// Queues `body` (a command or check) for `node`; false when the node
    /// has no open stream or its queue is full. Not repaired: the caller
    /// reports the failure. Directories and sets go through [`Self::sync`].
    pub fn send(&self, node: &str, body: Body) -> bool {
        let outbox = lock(&self.outboxes).get(node).map(|s| s.outbox.clone());
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

    /// Asks `node`'s agent to follow `container`'s log: its chunks come
    /// on the receiver until the log ends, the agent goes, or
    /// [`Self::stop_logs`].
    pub fn follow_logs(
        &self,
        node: &str,
        container: &str,
        tail: u32,
    ) -> Result<(u64, mpsc::Receiver<LogChunk>), Status> {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(FOLLOW_QUEUE);
        lock(&self.follows).insert(id, (node.to_string(), tx));
        let asked = self.send(
            node,
            Body::FollowLogs(LogFollow {
                id,
                container: container.to_string(),
                tail,
                stop: false,
            }),
        );
        if !asked {
            lock(&self.follows).remove(&id);
            return Err(Status::unavailable(format!(
                "node '{node}' is not connected; check `meshctl nodes`"
            )));
        }
        Ok((id, rx))
    }

    /// The admin stopped following log `id`: the agent stops too.
    pub fn stop_logs(&self, id: u64) {
        if let Some((node, _)) = lock(&self.follows).remove(&id) {
            self.send(
                &node,
                Body::FollowLogs(LogFollow {
                    id,
                    stop: true,
                    ..Default::default()
                }),
            );
        }
    }

    /// A chunk of a followed log from an agent. An admin too slow to take
    /// it loses the follow (it is told so) rather than holding up the
    /// agent's stream.
    pub fn log_chunk(&self, chunk: LogChunk) {
        let id = chunk.id;
        let end = chunk.end;
        let target = lock(&self.follows).get(&id).map(|(_, tx)| tx.clone());
        let Some(tx) = target else { return };
        if tx.try_send(chunk).is_err() {
            self.stop_logs(id);
        } else if end {
            lock(&self.follows).remove(&id);
        }
    }

    /// Asks `to`'s agent to pull `image` from `from`'s: its progress comes on the receiver,
    /// which closes without a last report if the agent goes.
    pub fn copy_image(
        &self,
        to: &str,
        from: &str,
        image: &str,
        stall_timeout_ms: u32,
    ) -> Result<(u64, mpsc::Receiver<ImageCopyProgress>), Status> {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(FOLLOW_QUEUE);
        lock(&self.copies).insert(id, (to.to_string(), tx));
        let asked = self.send(
            to,
            Body::CopyImage(ImageCopy {
                id,
                image: image.to_string(),
                from_node: from.to_string(),
                stall_timeout_ms,
                cancel: false,
            }),
        );
        if !asked {
            lock(&self.copies).remove(&id);
            return Err(Status::unavailable(format!(
                "node '{to}' is not connected; check `meshctl nodes`"
            )));
        }
        Ok((id, rx))
    }

    /// The admin who asked for copy `id` went away: the agent stops it.
    pub fn cancel_copy(&self, id: u64) {
        if let Some((node, _)) = lock(&self.copies).remove(&id) {
            self.send(
                &node,
                Body::CopyImage(ImageCopy {
                    id,
                    cancel: true,
                    ..Default::default()
                }),
            );
        }
    }

    /// Progress of copy `p.id` from the agent pulling it. Reports the admin is too slow for
    /// are dropped (the next says more); the last one is always kept.
    pub fn image_progress(&self, p: ImageCopyProgress) {
        let last = p.done || !p.error.is_empty();
        let target = if last {
            lock(&self.copies).remove(&p.id).map(|(_, tx)| tx)
        } else {
            lock(&self.copies).get(&p.id).map(|(_, tx)| tx.clone())
        };
        let Some(tx) = target else { return };
        if last {
            tokio::spawn(async move {
                let _ = tx.send(p).await;
            });
        } else {
            let _ = tx.try_send(p);
        }
    }

    /// An agent answered command `result.id`.
    pub fn complete(&self, result: CommandResult) {
        if let Some(tx) = lock(&self.pending).remove(&result.id) {
            let _ = tx.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::HeartbeatAck;
    use tokio::sync::mpsc::Receiver;

    type Inbox = Receiver<Result<CoordinatorMessage, Status>>;

    fn directory(generation: u64) -> Directory {
        Directory {
            generation,
            ..Default::default()
        }
    }

    fn set(generation: u64) -> DesiredContainers {
        DesiredContainers {
            generation,
            ..Default::default()
        }
    }

    fn holds(directory: u64, desired: u64) -> Held {
        Held {
            directory: Some(directory),
            desired: Some(desired),
        }
    }

    /// The (kind, generation) of what the agent would read next.
    fn next(inbox: &mut Inbox) -> Option<(Kind, u64)> {
        let message = inbox.try_recv().ok()?.ok()?;
        message.body.as_ref().and_then(sync::kind_of)
    }

    fn fill(outbox: &Outbox) {
        let ack = CoordinatorMessage {
            body: Some(Body::HeartbeatAck(HeartbeatAck {
                seq: 1,
                leases: vec![],
            })),
        };
        outbox.try_send(Ok(ack)).expect("room for one");
    }

    #[test]
    fn a_set_that_found_the_queue_full_is_sent_on_the_next_heartbeat() {
        let sessions = Sessions::default();
        let (tx, mut inbox) = mpsc::channel(1);
        sessions.attach("pc2", 1, tx.clone());
        sessions.heard("pc2", 1, holds(5, 1));
        fill(&tx);
        let t0 = Instant::now();
        // The set changes while the queue is full: nothing goes out.
        assert!(sessions
            .sync("pc2", &directory(5), Some(&set(2)), t0)
            .is_empty());
        assert_eq!(next(&mut inbox), None, "the ack that filled the queue");
        // The next heartbeat still reports generation 1: repaired at once,
        // since generation 2 never went out.
        sessions.heard("pc2", 1, holds(5, 1));
        let t1 = t0 + Duration::from_millis(100);
        let queued = sessions.sync("pc2", &directory(5), Some(&set(2)), t1);
        assert_eq!(queued, vec![Kind::Desired]);
        assert_eq!(next(&mut inbox), Some((Kind::Desired, 2)));
    }

    #[test]
    fn a_set_lost_on_the_way_is_sent_again_once_a_second_while_the_agent_lags() {
        let sessions = Sessions::default();
        let (tx, mut inbox) = mpsc::channel(8);
        sessions.attach("pc2", 1, tx);
        sessions.heard("pc2", 1, holds(5, 1));
        let (dir, desired) = (directory(5), set(2));
        let t0 = Instant::now();
        assert_eq!(
            sessions.sync("pc2", &dir, Some(&desired), t0),
            vec![Kind::Desired]
        );
        // The stream is cut mid-send: the agent never reads it.
        assert_eq!(next(&mut inbox), Some((Kind::Desired, 2)));
        let beat = |ms: u64, held: Held| {
            sessions.heard("pc2", 1, held);
            sessions.sync("pc2", &dir, Some(&desired), t0 + Duration::from_millis(ms))
        };
        assert!(
            beat(500, holds(5, 1)).is_empty(),
            "not yet: maybe in flight"
        );
        assert_eq!(beat(1000, holds(5, 1)), vec![Kind::Desired]);
        assert_eq!(next(&mut inbox), Some((Kind::Desired, 2)));
        assert!(
            beat(1500, holds(5, 1)).is_empty(),
            "a slow agent is not flooded"
        );
        assert!(beat(5000, holds(5, 2)).is_empty(), "it holds it now");
        assert_eq!(next(&mut inbox), None);
    }

    #[test]
    fn a_directory_that_does_not_fit_holds_back_the_set_behind_it() {
        let sessions = Sessions::default();
        let (tx, mut inbox) = mpsc::channel(1);
        sessions.attach("pc2", 1, tx.clone());
        fill(&tx);
        let (dir, desired) = (directory(5), set(2));
        let t0 = Instant::now();
        assert!(sessions.sync("pc2", &dir, Some(&desired), t0).is_empty());
        assert_eq!(next(&mut inbox), None);
        // Room for one: the directory, and not the set past it.
        assert_eq!(
            sessions.sync("pc2", &dir, Some(&desired), t0),
            vec![Kind::Directory]
        );
        assert_eq!(next(&mut inbox), Some((Kind::Directory, 5)));
        assert_eq!(
            sessions.sync("pc2", &dir, Some(&desired), t0),
            vec![Kind::Desired]
        );
        assert_eq!(next(&mut inbox), Some((Kind::Desired, 2)));
    }

    #[test]
    fn a_stale_stream_cannot_speak_for_the_new_one() {
        let sessions = Sessions::default();
        let (tx, mut inbox) = mpsc::channel(8);
        sessions.attach("pc2", 2, tx);
        sessions.heard("pc2", 1, holds(5, 2));
        let queued = sessions.sync("pc2", &directory(5), Some(&set(2)), Instant::now());
        assert_eq!(queued, vec![Kind::Directory, Kind::Desired]);
        assert_eq!(next(&mut inbox), Some((Kind::Directory, 5)));
        assert_eq!(next(&mut inbox), Some((Kind::Desired, 2)));
        assert!(sessions
            .sync("pc2", &directory(5), None, Instant::now())
            .is_empty());
        sessions.detach("pc2", 2);
        assert!(sessions
            .sync("pc2", &directory(6), None, Instant::now())
            .is_empty());
    }
}
