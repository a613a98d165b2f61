//! What an agent should be sent, as a pure function of what it says it
//! holds, what it should hold and what was sent to it lately.
//!
//! Anything sent can be lost (a full queue, a stream cut mid-send), so the
//! coordinator does not rely on having sent something: on connect, on every
//! change and on every heartbeat it compares the generations the agent
//! reports with its own and sends what lags, the directory before the
//! container set (a service moving onto a host needs its bridge endpoint's
//! port back before its container can publish it). The same generation is
//! not sent twice within [`RESEND_AFTER`], so a slow agent is not flooded.

use std::time::{Duration, Instant};

use mesh_proto::v1::coordinator_message::Body;
use mesh_proto::v1::{DesiredContainers, Directory};

/// The same generation of one kind goes to one agent at most this often.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// The generations an agent says it holds (0: none). None where it does
/// not say (it reports no containers, or no directory generation): then
/// each generation is sent once, on connect or on change, and not repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// The directory it applied.
    pub directory: Option<u64>,
    /// The container set it works towards.
    pub desired: Option<u64>,
}

impl Held {
    /// A freshly connected agent: assumed to hold nothing.
    pub const NOTHING: Held = Held {
        directory: Some(0),
        desired: Some(0),
    };
}

/// Whether an agent holding `has` (None: unknown) may lag `generation`.
fn lags(has: Option<u64>, generation: u64) -> bool {
    generation > has.unwrap_or(0)
}

/// The messages that bring an agent holding `held` to `directory` and
/// `desired`, in the order to send them: the directory first. A directory
/// numbered 0 was never handed out and is not sent.
pub fn sync_messages(
    held: Held,
    directory: &Directory,
    desired: Option<&DesiredContainers>,
) -> Vec<Body> {
    let mut out = Vec::new();
    if lags(held.directory, directory.generation) {
        out.push(Body::Directory(directory.clone()));
    }
    if let Some(d) = desired.filter(|d| lags(held.desired, d.generation)) {
        out.push(Body::Desired(d.clone()));
    }
    out
}

/// The kinds of message that are kept in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Desired,
}

/// What `body` is, and its generation, if it is kept in step.
pub fn kind_of(body: &Body) -> Option<(Kind, u64)> {
    match body {
        Body::Directory(d) => Some((Kind::Directory, d.generation)),
        Body::Desired(d) => Some((Kind::Desired, d.generation)),
        _ => None,
    }
}

/// What was last sent to one agent stream, per kind: generation and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub directory: Option<(u64, Instant)>,
    pub desired: Option<(u64, Instant)>,
}

impl Sent {
    fn slot(&mut self, kind: Kind) -> &mut Option<(u64, Instant)> {
        match kind {
            Kind::Directory => &mut self.directory,
            Kind::Desired => &mut self.desired,
        }
    }

    /// The generation of `kind` sent last, and when.
    pub fn last(&self, kind: Kind) -> Option<(u64, Instant)> {
        match kind {
            Kind::Directory => self.directory,
            Kind::Desired => self.desired,
        }
    }

    /// Whether `body` may go out at `now`: not the generation sent last
    /// unless that was at least [`RESEND_AFTER`] ago, and never again when
    /// `repair` is false (what the agent holds is unknown).
    pub fn due(&self, body: &Body, repair: bool, now: Instant) -> bool {
        let Some((kind, generation)) = kind_of(body) else {
            return true;
        };
        match self.last(kind) {
            Some((g, at)) if g == generation => {
                repair && now.saturating_duration_since(at) >= RESEND_AFTER
            }
            _ => true,
        }
    }

    /// `body` was queued for the agent at `now`.
    pub fn record(&mut self, body: &Body, now: Instant) {
        if let Some((kind, generation)) = kind_of(body) {
            *self.slot(kind) = Some((generation, now));
        }
    }
}

/// The messages to send now, in order: [`sync_messages`] less what was
/// sent too recently. Where the directory is due and not sent (recently
/// sent, so already ahead on the stream) the order still holds.
pub fn plan(
    held: Held,
    directory: &Directory,
    desired: Option<&DesiredContainers>,
    sent: &Sent,
    now: Instant,
) -> Vec<Body> {
    sync_messages(held, directory, desired)
        .into_iter()
        .filter(|b| {
            let repair = match kind_of(b).map(|(k, _)| k) {
                Some(Kind::Directory) => held.directory.is_some(),
                Some(Kind::Desired) => held.desired.is_some(),
                None => true,
            };
            sent.due(b, repair, now)
        })
        .collect()
}

#[cfg(test)]
mod tests;
