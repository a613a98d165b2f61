//! When the standby stops answering: the bound on waiting, the requests to
//! the coordinator, going on alone, and fencing by a newer epoch.

use std::time::Instant;

use super::{Action, Error, Primary, RefuseReason, Result, Standing};

impl Primary {
    /// A `Refused` from the standby. Returns the error to report; after a
    /// stale epoch the primary is fenced for good.
    pub fn on_refused(&mut self, reason: RefuseReason) -> Error {
        if let RefuseReason::StaleEpoch { ours, .. } = reason {
            return self.fence(ours);
        }
        self.on_link_down();
        Error::Refused(reason)
    }

    /// The coordinator persisted the standby Outdated in answer to
    /// `request`: go on alone. An answer to a request of an earlier
    /// episode is ignored: the coordinator may since have recorded the
    /// standby UpToDate again, and going on alone then would acknowledge
    /// writes a promotable standby lacks.
    pub fn on_coordinator_outdated(&mut self, request: u64) {
        let current = matches!(self.standing, Standing::OutdatePending { .. })
            && request >= self.episode_first_request
            && request < self.next_request;
        if self.fenced_by.is_some() || !current {
            return;
        }
        self.standing = Standing::Outdated;
        // The standby may miss anything after the last durable seq; the
        // next session resyncs it from scratch.
        if self.session.is_some() {
            self.actions.push_back(Action::DropSession);
        }
        self.on_link_down();
        self.waiting_fsyncs.clear();
        self.window_blocked_since = None;
    }

    /// The coordinator refused because a newer epoch exists.
    pub fn on_coordinator_refused(&mut self, newer_epoch: u64) -> Error {
        self.fence(newer_epoch)
    }

    pub(super) fn fence(&mut self, newer: u64) -> Error {
        self.fenced_by = Some(newer.max(self.fenced_by.unwrap_or(0)));
        self.session = None;
        self.window.clear();
        self.window_bytes = 0;
        self.waiting_fsyncs.clear();
        Error::Fenced {
            ours: self.epoch,
            newer,
        }
    }

    pub(super) fn check_fenced(&self) -> Result<()> {
        match self.fenced_by {
            Some(newer) => Err(Error::Fenced {
                ours: self.epoch,
                newer,
            }),
            None => Ok(()),
        }
    }

    /// Time-driven decisions and queued actions. Call after every event
    /// and at [`Primary::next_deadline`].
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        if self.fenced_by.is_some() {
            return Vec::new();
        }
        let oldest = self
            .waiting_fsyncs
            .values()
            .copied()
            .chain(self.window_blocked_since)
            .min();
        match self.standing {
            Standing::InSync
                if oldest
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.fsync_bound) =>
            {
                self.ask_coordinator(now)
            }
            Standing::OutdatePending { next_ask } if now >= next_ask => self.ask_coordinator(now),
            _ => {}
        }
        self.actions.drain(..).collect()
    }

    pub(super) fn ask_coordinator(&mut self, now: Instant) {
        let request = self.next_request;
        self.next_request += 1;
        if !matches!(self.standing, Standing::OutdatePending { .. }) {
            self.episode_first_request = request;
        }
        self.standing = Standing::OutdatePending {
            next_ask: now + self.cfg.coordinator_retry,
        };
        self.actions
            .push_back(Action::AskCoordinatorToOutdateStandby {
                epoch: self.epoch,
                request,
            });
    }

    /// When `poll` must be called again at the latest, if no event comes.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.standing {
            Standing::InSync => self
                .waiting_fsyncs
                .values()
                .copied()
                .chain(self.window_blocked_since)
                .min()
                .map(|t| t + self.cfg.fsync_bound),
            Standing::OutdatePending { next_ask } => Some(next_ask),
            Standing::Outdated => None,
        }
    }
}
