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

use crate::SendStream;
use tokio::sync::watch;
use tracing::{debug, info, Instrument};
use zeromq::{
    PullSocket, PushSocket, Socket, SocketEvent, SocketOptions, SocketSend, ZmqError, ZmqMessage,
};

use crate::bridge::BridgeCtx;
use crate::error::Result;
use crate::follow::{follow, forward_down, refuse, Relay};
use crate::service::ServeStream;
use crate::stream::Reader;
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

/// Waits for the first local worker, then keeps one stream from wherever the service is now.
async fn follow_target(
    ctx: BridgeCtx,
    push: PushSocket,
    mut monitor: futures::channel::mpsc::Receiver<SocketEvent>,
    target: watch::Receiver<ServiceTarget>,
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
    follow(ctx, PushRelay(push), target).await;
}

/// The local PUSH, fed from the service's stream: round robin over the local workers.
struct PushRelay(PushSocket);

impl Relay for PushRelay {
    const WHAT: &'static str = "PUSH/PULL";
    const PATTERN: Pattern = Pattern::Distribute;

    async fn deliver(&mut self, ctx: &BridgeCtx, mut msg: ZmqMessage) -> bool {
        // Not reading on while no worker takes it is the backpressure.
        loop {
            match self.0.send(msg).await {
                Ok(()) => return true,
                Err(ZmqError::ReturnToSender { message, .. }) => {
                    msg = message;
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(NO_WORKER_RETRY) => {}
                    }
                }
                Err(e) => {
                    ctx.counters.error();
                    debug!("local PUSH send: {e}");
                    return true;
                }
            }
        }
    }
}

/// Serves one stream: a PULL takes this host's share of the service's work and sends it down
/// the stream.
pub(crate) async fn serve(ctx: ServeStream, send: SendStream, reader: Reader) {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut pull = PullSocket::with_options(options);
    if let Err(e) = pull.connect(&ctx.endpoint).await {
        let reason = format!("cannot connect to the service at {}: {e}", ctx.endpoint);
        return refuse(send, reason, ctx.max_record).await;
    }
    forward_down(&mut pull, &ctx.endpoint, send, reader, ctx.max_record).await;
}
