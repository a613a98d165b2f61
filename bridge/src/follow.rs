//! The patterns where the service sends and the bridge's local endpoint hands out (PUB/SUB,
//! PUSH/PULL from the service). Client side ([`follow`]): one tunnel stream from wherever the
//! service is now, re-opened with capped backoff when it ends or fails, and switched at once
//! when the service moves. Service side ([`forward_down`]): everything a socket connected to
//! the service receives goes down the stream.

use std::future::Future;

use crate::SendStream;
use bytes::Bytes;
use mesh_backoff::Backoff;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zeromq::{SocketRecv, ZmqMessage};

use crate::bridge::BridgeCtx;
use crate::error::{Error, Result};
use crate::frame::{Kind, Record};
use crate::stream::{self, Outgoing, Reader};
use crate::target::ServiceTarget;
use crate::Pattern;

/// Ends a stream the service side cannot serve, telling the client side why.
pub(crate) async fn refuse(mut send: SendStream, reason: String, max_record: usize) {
    warn!("{reason}");
    let failed = Record::new(Kind::Failed, vec![Bytes::from(reason)]);
    let _ = stream::write_record(&mut send, failed, max_record).await;
    let _ = send.finish().await;
}

/// Sends every message `socket` receives from the service at `endpoint` down the stream, until
/// the socket fails or the client side goes away (it never sends on this stream).
pub(crate) async fn forward_down<S: SocketRecv>(
    socket: &mut S,
    endpoint: &str,
    send: SendStream,
    mut reader: Reader,
    max_record: usize,
) {
    let (wtx, _writer) = stream::spawn_writer(send);
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Ok(msg) => {
                    let record = Record::new(Kind::Message, msg.into_vec());
                    match Outgoing::new(record, max_record) {
                        Ok(out) => {
                            if wtx.send(out).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => warn!("dropped a message from the service: {e}"),
                    }
                }
                Err(e) => {
                    warn!("receive from the service at {endpoint}: {e}");
                    return;
                }
            },
            next = stream::next(&mut reader) => match next {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// The local endpoint of a bridge that the service's stream feeds.
pub(crate) trait Relay {
    /// The pattern's name in logs.
    const WHAT: &'static str;
    /// The pattern asked for when opening the stream.
    const PATTERN: Pattern;

    /// Hands one message from the service to the local clients; `false` when the bridge
    /// stopped meanwhile.
    fn deliver(&mut self, ctx: &BridgeCtx, msg: ZmqMessage) -> impl Future<Output = bool> + Send;
}

/// Opens a stream to `target` and relays it into `relay` until it ends. `Ok` (with why) is an
/// orderly end.
async fn relay_stream<R: Relay>(
    ctx: &BridgeCtx,
    target: &ServiceTarget,
    relay: &mut R,
) -> Result<String> {
    let (_send, mut reader) = stream::open(
        &ctx.tunnels,
        &target.peer,
        &ctx.spec.name,
        &target.service,
        R::PATTERN,
    )
    .await?;
    info!(peer = %target.peer.node, "{} stream up", R::WHAT);
    loop {
        let rec = match stream::next(&mut reader).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(format!("agent '{}' ended it", target.peer.node)),
            Err(e) => return Err(Error::stream(&target.peer.node, e)),
        };
        match rec.kind {
            Kind::Message => {
                ctx.counters.received(rec.payload_len());
                let Ok(msg) = ZmqMessage::try_from(rec.frames) else {
                    continue;
                };
                if !relay.deliver(ctx, msg).await {
                    return Ok("bridge stopped".into());
                }
            }
            Kind::Failed => {
                return Err(Error::Refused {
                    peer: target.peer.node.clone(),
                    bridge: ctx.spec.name.clone(),
                    reason: rec.reason(),
                })
            }
            kind => debug!(?kind, "unexpected record on a {} stream", R::WHAT),
        }
    }
}

/// Keeps one stream from wherever `target` says the service is, until the bridge stops.
pub(crate) async fn follow<R: Relay>(
    ctx: BridgeCtx,
    mut relay: R,
    mut target: watch::Receiver<ServiceTarget>,
) {
    let backoff = Backoff::default();
    let mut failures = 0u32;
    let mut target_open = true;
    loop {
        let current = target.borrow_and_update().clone();
        let wait = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            changed = target.changed(), if target_open => {
                if changed.is_err() {
                    target_open = false;
                }
                failures = 0;
                continue;
            }
            ended = relay_stream(&ctx, &current, &mut relay) => {
                match ended {
                    Ok(reason) => {
                        failures = 0;
                        info!(peer = %current.peer.node, "{} stream ended: {reason}", R::WHAT);
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        ctx.counters.error();
                        warn!(peer = %current.peer.node, "{} stream failed: {e}", R::WHAT);
                    }
                }
                backoff.delay(failures.max(1))
            }
        };
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = target.changed(), if target_open => {
                if changed.is_err() {
                    target_open = false;
                }
                failures = 0;
            }
        }
    }
}
