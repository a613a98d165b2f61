//! PUSH/PULL across hosts, towards the service: local PUSH clients connect to a PULL bound at
//! the bridge's stable endpoint; messages go down one tunnel stream to the service's agent,
//! where a PUSH connected to the service's PULL delivers them in order.
//!
//! When the service moves, messages already queued on the old stream are still delivered
//! there; new messages go to the new place. A message that cannot be delivered (no tunnel, no
//! service) is counted as an error and logged: PUSH has no way to tell the sender.
//! The other direction (a service that PUSHes to PULL workers on other hosts) is
//! `distribute.rs`.

use std::time::Duration;

use crate::SendStream;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};
use zeromq::{PullSocket, PushSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::bridge::BridgeCtx;
use crate::counters::Counters;
use crate::error::Result;
use crate::frame::{Kind, Record};
use crate::service::ServeStream;
use crate::stream::{self, Outgoing, Reader};
use crate::target::ServiceTarget;
use crate::tunnel::Tunnels;
use crate::Pattern;

/// How long the service side waits for the service's PULL to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds the local PULL and starts forwarding; returns the bound endpoint.
pub(crate) async fn start(
    ctx: BridgeCtx,
    target: watch::Receiver<ServiceTarget>,
) -> Result<String> {
    let mut pull = PullSocket::new();
    let endpoint = ctx.bind_local(&mut pull).await?;
    info!(%endpoint, "PUSH/PULL bridge listening");
    tokio::spawn(forward(ctx, pull, target).in_current_span());
    Ok(endpoint)
}

async fn forward(ctx: BridgeCtx, mut pull: PullSocket, mut target: watch::Receiver<ServiceTarget>) {
    let mut route: Option<mpsc::Sender<Outgoing>> = None;
    let mut target_open = true;
    loop {
        let msg = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            changed = target.changed(), if target_open => {
                match changed {
                    // Dropping the sender lets the old stream deliver what it has, then finish.
                    Ok(()) => route = None,
                    Err(_) => target_open = false,
                }
                continue;
            }
            msg = pull.recv() => msg,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                debug!("local PULL receive: {e}");
                continue;
            }
        };
        let record = Record::new(Kind::Message, msg.into_vec());
        ctx.counters.sent(record.payload_len());
        let mut out = match Outgoing::new(record, ctx.tunnels.max_record()) {
            Ok(out) => out,
            Err(e) => {
                ctx.counters.error();
                warn!("dropped a message: {e}");
                continue;
            }
        };
        // A route that ended is replaced once.
        for _ in 0..2 {
            let tx = match &route {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let current = target.borrow().clone();
                    let tx = open_route(&ctx, current);
                    route = Some(tx.clone());
                    tx
                }
            };
            match tx.send(out).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    route = None;
                    out = back;
                }
            }
        }
    }
}

fn open_route(ctx: &BridgeCtx, target: ServiceTarget) -> mpsc::Sender<Outgoing> {
    let (tx, rx) = stream::channel();
    let span = info_span!("route", peer = %target.peer.node, service = %target.service);
    tokio::spawn(
        route_task(
            ctx.tunnels.clone(),
            ctx.spec.name.clone(),
            target,
            rx,
            ctx.counters.clone(),
        )
        .instrument(span),
    );
    tx
}

async fn route_task(
    tunnels: Tunnels,
    bridge: String,
    target: ServiceTarget,
    mut rx: mpsc::Receiver<Outgoing>,
    counters: std::sync::Arc<Counters>,
) {
    let (send, mut reader) = match stream::open(
        &tunnels,
        &target.peer,
        &bridge,
        &target.service,
        Pattern::PushPull,
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => {
            rx.close();
            let mut lost = 0u64;
            while rx.recv().await.is_some() {
                lost += 1;
                counters.error();
            }
            warn!(lost, "PUSH/PULL stream failed: {e}");
            return;
        }
    };
    let mut writer = stream::spawn_writer_with(send, rx);
    loop {
        tokio::select! {
            next = stream::next(&mut reader) => match next {
                Ok(Some(r)) if r.kind == Kind::Failed => {
                    counters.error();
                    warn!("the service side dropped a message: {}", r.reason());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            done = &mut writer => {
                if let Ok(Err(e)) = done {
                    counters.error();
                    warn!("PUSH/PULL stream failed: {e}");
                }
                break;
            }
        }
    }
    // Wait for the service side to confirm delivery of what was written (it ends its side
    // after our end of stream).
    while let Ok(Some(r)) = stream::next(&mut reader).await {
        if r.kind == Kind::Failed {
            counters.error();
        }
    }
}

/// Serves one PUSH/PULL bridge stream: every message is pushed to the service.
pub(crate) async fn serve(ctx: ServeStream, mut send: SendStream, mut reader: Reader) {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut push = PushSocket::with_options(options);
    let fail = |reason: String| Record::new(Kind::Failed, vec![Bytes::from(reason)]);
    if let Err(e) = push.connect(&ctx.endpoint).await {
        let reason = format!("cannot connect to the service at {}: {e}", ctx.endpoint);
        warn!("{reason}");
        let _ = stream::write_record(&mut send, fail(reason), ctx.max_record).await;
        let _ = send.finish().await;
        return;
    }
    loop {
        let rec = match stream::next(&mut reader).await {
            Ok(Some(r)) if r.kind == Kind::Message => r,
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                warn!("PUSH/PULL bridge stream failed: {e}");
                break;
            }
        };
        let Ok(msg) = ZmqMessage::try_from(rec.frames) else {
            continue;
        };
        if let Err(e) = push.send(msg).await {
            let reason = format!("pushing to the service at {}: {e}", ctx.endpoint);
            warn!("{reason}");
            if stream::write_record(&mut send, fail(reason), ctx.max_record)
                .await
                .is_err()
            {
                break;
            }
        }
    }
    let _ = send.finish().await;
    debug!("PUSH/PULL bridge stream ended");
}
