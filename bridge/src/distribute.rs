//! PUSH/PULL across hosts, from the service: a service that PUSHes work (a ventilator) to PULL
//! workers on other hosts.
//!
//! Client side ([`start`]): a PUSH bound at the bridge's stable endpoint, which local PULL
//! workers connect to. Once the first local worker has connected, the bridge opens one tunnel
//! stream to the service's agent and hands every message from it to the local workers, round
//! robin. Service side ([`serve`]): one PULL connected to the service's PUSH per stream, so the
//! service spreads its work over the hosts that have workers, one share per host, as it would
//! over directly connected PULLs.
//!
//! Backpressure goes end to end: while no local worker takes a message, the bridge stops
//! reading the stream, QUIC flow control stops the service side, and the service's PUSH holds
//! its messages. What is lost is what ZeroMQ loses too: messages already handed to a host
//! whose stream breaks (the tunnel, or the service moving) and messages queued for a worker
//! that disconnects.

use std::time::Duration;

use bytes::Bytes;
use quinn::SendStream;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};
use zeromq::{
    PullSocket, PushSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqError,
    ZmqMessage,
};

use crate::backoff::Backoff;
use crate::bridge::BridgeCtx;
use crate::error::{Error, Result};
use crate::frame::{Kind, Record};
use crate::service::ServeStream;
use crate::stream::{self, Outgoing, Reader};
use crate::target::ServiceTarget;
use crate::Pattern;

/// How long the service side waits for the service's PUSH to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a message with no local worker to take it is offered again.
const NO_WORKER_RETRY: Duration = Duration::from_millis(20);

/// Binds the local PUSH and starts following the service once a worker connects; returns the
/// bound endpoint.
pub(crate) async fn start(
    ctx: BridgeCtx,
    target: watch::Receiver<ServiceTarget>,
) -> Result<String> {
    let mut push = PushSocket::new();
    let endpoint = ctx.bind_local(&mut push).await?;
    let monitor = push.monitor();
    info!(%endpoint, "PUSH/PULL (from the service) bridge listening");
    tokio::spawn(follow_target(ctx, push, monitor, target).in_current_span());
    Ok(endpoint)
}

/// Waits for the first local worker, then keeps one stream from wherever the service is now,
/// reconnecting with backoff.
async fn follow_target(
    ctx: BridgeCtx,
    mut push: PushSocket,
    mut monitor: futures::channel::mpsc::Receiver<SocketEvent>,
    mut target: watch::Receiver<ServiceTarget>,
) {
    use futures::StreamExt;
    // No work is pulled to this host before a worker is here to take it.
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            ev = monitor.next() => match ev {
                Some(SocketEvent::Accepted(..)) => break,
                Some(_) => {}
                None => return,
            },
        }
    }
    drop(monitor);
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
            ended = relay(&ctx, &current, &mut push) => {
                match ended {
                    Ok(reason) => {
                        failures = 0;
                        info!(peer = %current.peer.node, "PUSH/PULL stream ended: {reason}");
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        ctx.counters.error();
                        warn!(peer = %current.peer.node, "PUSH/PULL stream failed: {e}");
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

/// Hands every message of one stream to the local workers until the stream ends. `Ok` is an
/// orderly end.
async fn relay(ctx: &BridgeCtx, target: &ServiceTarget, push: &mut PushSocket) -> Result<String> {
    let (_send, mut reader) = stream::open(
        &ctx.tunnels,
        &target.peer,
        &ctx.spec.name,
        &target.service,
        Pattern::Distribute,
    )
    .await?;
    info!(peer = %target.peer.node, "PUSH/PULL stream up");
    loop {
        let rec = match stream::next(&mut reader).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(format!("agent '{}' ended it", target.peer.node)),
            Err(e) => return Err(Error::stream(&target.peer.node, e)),
        };
        match rec.kind {
            Kind::Message => {
                ctx.counters.received(rec.payload_len());
                let Ok(mut msg) = ZmqMessage::try_from(rec.frames) else {
                    continue;
                };
                // Not reading on while no worker takes it is the backpressure.
                loop {
                    match push.send(msg).await {
                        Ok(()) => break,
                        Err(ZmqError::ReturnToSender { message, .. }) => {
                            msg = message;
                            tokio::select! {
                                _ = ctx.shutdown.cancelled() => return Ok("bridge stopped".into()),
                                _ = tokio::time::sleep(NO_WORKER_RETRY) => {}
                            }
                        }
                        Err(e) => {
                            ctx.counters.error();
                            debug!("local PUSH send: {e}");
                            break;
                        }
                    }
                }
            }
            Kind::Failed => {
                return Err(Error::Refused {
                    peer: target.peer.node.clone(),
                    bridge: ctx.spec.name.clone(),
                    reason: rec.reason(),
                })
            }
            kind => debug!(?kind, "unexpected record on a PUSH/PULL stream"),
        }
    }
}

/// Serves one stream: a PULL takes this host's share of the service's work and sends it down
/// the stream.
pub(crate) async fn serve(ctx: ServeStream, mut send: SendStream, mut reader: Reader) {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut pull = PullSocket::with_options(options);
    if let Err(e) = pull.connect(&ctx.endpoint).await {
        let reason = format!("cannot connect to the service at {}: {e}", ctx.endpoint);
        warn!("{reason}");
        let failed = Record::new(Kind::Failed, vec![Bytes::from(reason)]);
        let _ = stream::write_record(&mut send, failed, ctx.max_record).await;
        let _ = send.finish();
        return;
    }
    let (wtx, _writer) = stream::spawn_writer(send);
    loop {
        tokio::select! {
            msg = pull.recv() => match msg {
                Ok(msg) => {
                    let record = Record::new(Kind::Message, msg.into_vec());
                    match Outgoing::new(record, ctx.max_record) {
                        Ok(out) => {
                            if wtx.send(out).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => warn!("dropped a message from the service: {e}"),
                    }
                }
                Err(e) => {
                    warn!("PULL receive from {}: {e}", ctx.endpoint);
                    return;
                }
            },
            // The client side never sends on this stream; its end means it is gone.
            next = stream::next(&mut reader) => match next {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
        }
    }
}
