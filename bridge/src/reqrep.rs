//! REQ/REP and DEALER/ROUTER across hosts.
//!
//! Client side ([`start`]): a ROUTER (the bridge's own ZMTP, `crate::zmtp`) bound at the
//! bridge's stable endpoint, which REQ and DEALER clients connect to. Each local client gets a bridge-assigned client id and each
//! request a bridge-assigned request id; all requests of the bridge go to the service's agent
//! on one tunnel stream, and replies come back tagged with their request id, so a reply can
//! only reach the client that sent the request. The bridge keeps every request until it is
//! answered; when the service moves or the stream fails, the bridge applies the
//! [`InFlightPolicy`] and drops any reply that arrives later.
//!
//! Service side ([`serve`], in `reqrep/service.rs`): one DEALER per remote client, connected
//! to the service with a bridge-assigned identity, so the service sees exactly the frames the
//! client sent (no extra envelope frames) and a stable, unforgeable identity per client.

mod service;

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::bridge::BridgeCtx;
use crate::error::{Error, Result};
use crate::frame::{Kind, Record};
use crate::idhash::IdMap;
use crate::stream::{self, Outgoing};
use crate::target::{InFlightPolicy, ServiceTarget, ERROR_PREFIX};
use crate::tunnel::Tunnels;
use crate::zmtp::{Router, RouterEvent as Inbound};
use crate::Pattern;

pub(crate) use service::serve;

/// The frames of a request up to and including the first empty frame: the routing envelope a
/// reply must carry back. Empty when the request has no delimiter.
pub(crate) fn envelope(frames: &[Bytes]) -> Vec<Bytes> {
    match frames.iter().position(Bytes::is_empty) {
        Some(i) => frames[..=i].to_vec(),
        None => Vec::new(),
    }
}

/// Most events (or local requests) handled in one go before the loop looks at its other inputs
/// again.
const EVENT_BATCH: usize = 64;

/// What a route (one tunnel stream) reports to the bridge loop.
enum Event {
    Record(u64, Record),
    Closed(u64, String),
}

struct InFlight {
    identity: Bytes,
    client: u64,
    envelope: Vec<Bytes>,
    /// The request, kept only under [`InFlightPolicy::RetryOnce`].
    frames: Option<Vec<Bytes>>,
    retried: bool,
    route: u64,
    sent_at: Instant,
}

struct Route {
    gen: u64,
    tx: mpsc::Sender<Outgoing>,
}

/// Binds the ROUTER and starts the bridge loop; returns the bound endpoint.
pub(crate) async fn start(
    ctx: BridgeCtx,
    target: watch::Receiver<ServiceTarget>,
) -> Result<String> {
    let (in_tx, in_rx) = mpsc::channel(1024);
    let (send, endpoint) = Router::bind(
        &ctx.spec.local,
        in_tx,
        ctx.shutdown.clone(),
        ctx.tunnels.max_record(),
    )
    .await
    .map_err(|e| ctx.local_bind_error(e))?;

    let current = target.borrow().clone();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let client = Client {
        ctx,
        send,
        current,
        route: None,
        next_gen: 0,
        inflight: IdMap::default(),
        clients: HashMap::new(),
        next_client: 0,
        next_request: 0,
        events_tx,
    };
    info!(%endpoint, "REQ/REP bridge listening");
    tokio::spawn(client.run(in_rx, events_rx, target).in_current_span());
    Ok(endpoint)
}

struct Client {
    ctx: BridgeCtx,
    send: Router,
    current: ServiceTarget,
    route: Option<Route>,
    next_gen: u64,
    inflight: IdMap<InFlight>,
    clients: HashMap<Bytes, u64>,
    next_client: u64,
    next_request: u64,
    events_tx: mpsc::UnboundedSender<Event>,
}

impl Client {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut target: watch::Receiver<ServiceTarget>,
    ) {
        let shutdown = self.ctx.shutdown.clone();
        let mut target_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = inbound.recv() => {
                    let Some(msg) = msg else { break };
                    self.on_inbound(msg).await;
                    for _ in 1..EVENT_BATCH {
                        match inbound.try_recv() {
                            Ok(msg) => self.on_inbound(msg).await,
                            Err(_) => break,
                        }
                    }
                }
                Some(ev) = events.recv() => {
                    self.on_event(ev).await;
                    for _ in 1..EVENT_BATCH {
                        match events.try_recv() {
                            Ok(ev) => self.on_event(ev).await,
                            Err(_) => break,
                        }
                    }
                }
                changed = target.changed(), if target_open => match changed {
                    Ok(()) => {
                        let new = target.borrow_and_update().clone();
                        self.on_move(new).await;
                    }
                    // The handle is gone: the service stays where it was last put.
                    Err(_) => target_open = false,
                },
            }
            self.ctx.counters.set_in_flight(self.inflight.len());
        }
        debug!("REQ/REP bridge stopped");
    }

    async fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Message(m) => self.on_request(m).await,
            Inbound::Gone(id) => {
                self.clients.remove(&id);
            }
        }
    }

    fn policy(&self) -> InFlightPolicy {
        self.ctx.spec.in_flight
    }

    async fn on_request(&mut self, mut frames: Vec<Bytes>) {
        if frames.len() < 2 {
            return;
        }
        let identity = frames.remove(0);
        let client = match self.clients.get(&identity) {
            Some(c) => *c,
            None => {
                self.next_client += 1;
                self.clients.insert(identity.clone(), self.next_client);
                self.next_client
            }
        };
        self.next_request += 1;
        let id = self.next_request;
        let payload: usize = frames.iter().map(Bytes::len).sum();
        self.ctx.counters.sent(payload);
        let entry = InFlight {
            identity,
            client,
            envelope: envelope(&frames),
            frames: None,
            retried: false,
            route: 0,
            sent_at: Instant::now(),
        };
        let record = Record {
            kind: Kind::Request,
            id,
            client,
            frames,
        };
        let out = match Outgoing::new(record, self.ctx.tunnels.max_record()) {
            Ok(out) => out,
            Err(e) => {
                self.reply_error(entry, &e.to_string()).await;
                return;
            }
        };
        self.inflight.insert(id, entry);
        if let Err(reason) = self.send_to_route(id, out).await {
            self.fail(id, reason).await;
        }
    }

    /// Queues request `id` on the current route, opening one if needed.
    async fn send_to_route(&mut self, id: u64, out: Outgoing) -> std::result::Result<(), String> {
        let keep = self.policy() == InFlightPolicy::RetryOnce;
        if self.route.is_none() {
            self.open_route();
        }
        let Some(route) = &self.route else {
            return Ok(());
        };
        let Some(entry) = self.inflight.get_mut(&id) else {
            return Ok(());
        };
        entry.route = route.gen;
        if keep && entry.frames.is_none() {
            entry.frames = Some(out.record().frames.clone());
        }
        match route.tx.send(out).await {
            Ok(()) => Ok(()),
            Err(_) => {
                self.route = None;
                Err(format!(
                    "the tunnel stream to agent '{}' closed",
                    self.current.peer.node
                ))
            }
        }
    }

    fn open_route(&mut self) {
        self.next_gen += 1;
        let gen = self.next_gen;
        let (tx, rx) = stream::channel();
        let span = info_span!(
            "route",
            peer = %self.current.peer.node,
            service = %self.current.service,
            gen
        );
        tokio::spawn(
            route_task(
                self.ctx.tunnels.clone(),
                self.current.clone(),
                self.ctx.spec.name.clone(),
                gen,
                rx,
                self.events_tx.clone(),
            )
            .instrument(span),
        );
        self.route = Some(Route { gen, tx });
    }

    /// Applies the in-flight policy to request `id`, which failed for `reason`.
    async fn fail(&mut self, id: u64, mut reason: String) {
        loop {
            let Some(entry) = self.inflight.get_mut(&id) else {
                return;
            };
            if self.ctx.spec.in_flight == InFlightPolicy::RetryOnce && !entry.retried {
                if let Some(frames) = entry.frames.clone() {
                    entry.retried = true;
                    self.ctx.counters.retry();
                    let record = Record {
                        kind: Kind::Request,
                        id,
                        client: entry.client,
                        frames,
                    };
                    debug!(id, "retrying a request once: {reason}");
                    match Outgoing::new(record, self.ctx.tunnels.max_record()) {
                        Ok(out) => match self.send_to_route(id, out).await {
                            Ok(()) => return,
                            Err(r) => {
                                reason = r;
                                continue;
                            }
                        },
                        Err(e) => reason = e.to_string(),
                    }
                }
            }
            if let Some(entry) = self.inflight.remove(&id) {
                self.reply_error(entry, &reason).await;
            }
            return;
        }
    }

    /// Answers the client of `entry` with an error reply: its envelope, then one frame.
    async fn reply_error(&mut self, entry: InFlight, reason: &str) {
        self.ctx.counters.error();
        warn!(client = entry.client, "request failed: {reason}");
        let mut frames = vec![entry.identity];
        frames.extend(entry.envelope);
        frames.push(Bytes::from(format!("{ERROR_PREFIX}{reason}")));
        self.deliver(frames).await;
    }

    async fn deliver(&mut self, frames: Vec<Bytes>) {
        // Settle the gauge before the client can see its answer, so a
        // client that reads the counters after its last reply sees 0.
        self.ctx.counters.set_in_flight(self.inflight.len());
        if let Err(e) = self.send.send(frames).await {
            // The client left.
            self.ctx.counters.error();
            debug!("reply to a local client dropped: {e}");
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Record(gen, rec) => {
                let current = self.inflight.get(&rec.id).is_some_and(|e| e.route == gen);
                match (rec.kind, current) {
                    (Kind::Reply, true) => {
                        let Some(entry) = self.inflight.remove(&rec.id) else {
                            return;
                        };
                        self.ctx.counters.received(rec.payload_len());
                        self.ctx.counters.rtt(entry.sent_at.elapsed());
                        let mut frames = Vec::with_capacity(rec.frames.len() + 1);
                        frames.push(entry.identity);
                        frames.extend(rec.frames);
                        self.deliver(frames).await;
                    }
                    (Kind::Failed, true) => {
                        let reason = rec.reason();
                        self.fail(rec.id, reason).await;
                    }
                    (Kind::Reply | Kind::Failed, false) => self.ctx.counters.late_reply(),
                    (kind, _) => debug!(?kind, "unexpected record on a REQ/REP stream"),
                }
            }
            Event::Closed(gen, reason) => {
                if self.route.as_ref().is_some_and(|r| r.gen == gen) {
                    self.route = None;
                }
                let ids: Vec<u64> = self
                    .inflight
                    .iter()
                    .filter(|(_, e)| e.route == gen)
                    .map(|(id, _)| *id)
                    .collect();
                if !ids.is_empty() {
                    warn!(
                        requests = ids.len(),
                        "tunnel stream failed with requests in flight: {reason}"
                    );
                }
                for id in ids {
                    self.fail(id, reason.clone()).await;
                }
            }
        }
    }

    async fn on_move(&mut self, new: ServiceTarget) {
        if new == self.current {
            return;
        }
        let reason = if new.peer == self.current.peer {
            format!(
                "service '{}' on agent '{}' moved to failover epoch {} (from {}) while the request was in flight",
                self.ctx.spec.name, new.peer.node, new.epoch, self.current.epoch
            )
        } else {
            format!(
                "service '{}' moved from agent '{}' to agent '{}' while the request was in flight",
                self.ctx.spec.name, self.current.peer.node, new.peer.node
            )
        };
        info!(from = %self.current.peer.node, to = %new.peer.node, epoch = new.epoch, "service moved");
        self.current = new;
        // Dropping the sender finishes the old stream.
        let Some(old) = self.route.take() else {
            return;
        };
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, e)| e.route == old.gen)
            .map(|(id, _)| *id)
            .collect();
        drop(old);
        for id in ids {
            self.fail(id, reason.clone()).await;
        }
    }
}

/// One tunnel stream to the service's agent: opens it, writes what the bridge queues, reads
/// replies, and reports its end.
async fn route_task(
    tunnels: Tunnels,
    target: ServiceTarget,
    bridge: String,
    gen: u64,
    rx: mpsc::Receiver<Outgoing>,
    events: mpsc::UnboundedSender<Event>,
) {
    let opened = stream::open(
        &tunnels,
        &target.peer,
        &bridge,
        &target.service,
        Pattern::ReqRep,
    )
    .await;
    let reason = match opened {
        Err(e) => e.to_string(),
        Ok((send, mut reader)) => {
            let mut writer = stream::spawn_writer_with(send, rx);
            loop {
                tokio::select! {
                    next = stream::next(&mut reader) => match next {
                        Ok(Some(rec)) => {
                            if events.send(Event::Record(gen, rec)).is_err() {
                                break "bridge stopped".to_string();
                            }
                        }
                        Ok(None) => break format!(
                            "agent '{}' ended the tunnel stream", target.peer.node
                        ),
                        Err(e) => break Error::stream(&target.peer.node, e).to_string(),
                    },
                    done = &mut writer => match done {
                        Ok(Ok(())) => {
                            linger(gen, &mut reader, &events).await;
                            break "stream closed by the bridge".to_string();
                        }
                        Ok(Err(e)) => break Error::stream(&target.peer.node, e).to_string(),
                        Err(e) => break e.to_string(),
                    },
                }
            }
        }
    };
    debug!("route ended: {reason}");
    let _ = events.send(Event::Closed(gen, reason));
}

/// How long a route that the bridge closed (the service moved) keeps reading, so that late
/// replies from the old place are seen, dropped and counted rather than cut off unseen.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

async fn linger(gen: u64, reader: &mut stream::Reader, events: &mpsc::UnboundedSender<Event>) {
    let drain = async {
        while let Ok(Some(rec)) = stream::next(reader).await {
            if events.send(Event::Record(gen, rec)).is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::envelope;
    use bytes::Bytes;

    fn f(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn envelope_is_everything_up_to_the_first_empty_frame() {
        assert_eq!(envelope(&f(&[b"", b"body"])), f(&[b""]));
        assert_eq!(
            envelope(&f(&[b"id", b"x", b"", b"body", b""])),
            f(&[b"id", b"x", b""])
        );
        assert_eq!(envelope(&f(&[b"body"])), Vec::<Bytes>::new());
        assert_eq!(envelope(&[]), Vec::<Bytes>::new());
    }
}
