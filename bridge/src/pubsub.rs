//! PUB/SUB across hosts.
//!
//! Service side ([`serve`]): one SUB connected to the service's PUB, subscribed to everything,
//! feeding one tunnel stream. Client side ([`start`]): that stream feeds a PUB bound at the
//! bridge's stable endpoint; local subscribers filter there. So there is one stream per host
//! pair however many local subscribers there are, and one stream keeps the publisher's order.
//!
//! When the service moves, the bridge switches to a stream from the new place; messages
//! published while no stream is up are lost, as they are for any ZeroMQ subscriber that is not
//! connected.

use std::time::Duration;

use bytes::Bytes;
use quinn::SendStream;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};
use zeromq::{PubSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use crate::backoff::Backoff;
use crate::bridge::BridgeCtx;
use crate::error::{Error, Result};
use crate::frame::{Kind, Record};
use crate::service::ServeStream;
use crate::stream::{self, Outgoing, Reader};
use crate::target::ServiceTarget;
use crate::Pattern;

/// How long the service side waits for the service's PUB to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds the local PUB and starts following the service; returns the bound endpoint.
pub(crate) async fn start(
    ctx: BridgeCtx,
    target: watch::Receiver<ServiceTarget>,
) -> Result<String> {
    let mut publisher = PubSocket::new();
    let endpoint = ctx.bind_local(&mut publisher).await?;
    info!(%endpoint, "PUB/SUB bridge listening");
    tokio::spawn(follow_target(ctx, publisher, target).in_current_span());
    Ok(endpoint)
}

/// Keeps one stream from wherever the service is now, reconnecting with backoff.
async fn follow_target(
    ctx: BridgeCtx,
    mut publisher: PubSocket,
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
            ended = relay(&ctx, &current, &mut publisher) => {
                match ended {
                    Ok(reason) => {
                        failures = 0;
                        info!(peer = %current.peer.node, "PUB/SUB stream ended: {reason}");
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        ctx.counters.error();
                        warn!(peer = %current.peer.node, "PUB/SUB stream failed: {e}");
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

/// Relays one stream into the local PUB until it ends. `Ok` is an orderly end.
async fn relay(
    ctx: &BridgeCtx,
    target: &ServiceTarget,
    publisher: &mut PubSocket,
) -> Result<String> {
    let (_send, mut reader) = stream::open(
        &ctx.tunnels,
        &target.peer,
        &ctx.spec.name,
        &target.service,
        Pattern::PubSub,
    )
    .await?;
    info!(peer = %target.peer.node, "PUB/SUB stream up");
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
                if let Err(e) = publisher.send(msg).await {
                    ctx.counters.error();
                    debug!("local PUB send: {e}");
                }
            }
            Kind::Failed => {
                return Err(Error::Refused {
                    peer: target.peer.node.clone(),
                    bridge: ctx.spec.name.clone(),
                    reason: rec.reason(),
                })
            }
            kind => debug!(?kind, "unexpected record on a PUB/SUB stream"),
        }
    }
}

/// Serves one PUB/SUB bridge stream: everything the service publishes goes down the stream.
pub(crate) async fn serve(ctx: ServeStream, mut send: SendStream, mut reader: Reader) {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut sub = SubSocket::with_options(options);
    let connected = async {
        sub.connect(&ctx.endpoint).await?;
        sub.subscribe("").await
    };
    if let Err(e) = connected.await {
        let reason = format!("cannot subscribe to the service at {}: {e}", ctx.endpoint);
        warn!("{reason}");
        let failed = Record::new(Kind::Failed, vec![Bytes::from(reason)]);
        let _ = stream::write_record(&mut send, failed, ctx.max_record).await;
        let _ = send.finish();
        return;
    }
    let (wtx, _writer) = stream::spawn_writer(send);
    loop {
        tokio::select! {
            msg = sub.recv() => match msg {
                Ok(msg) => {
                    let record = Record::new(Kind::Message, msg.into_vec());
                    match Outgoing::new(record, ctx.max_record) {
                        Ok(out) => {
                            if wtx.send(out).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => warn!("dropped a published message: {e}"),
                    }
                }
                Err(e) => {
                    warn!("SUB receive from {}: {e}", ctx.endpoint);
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
