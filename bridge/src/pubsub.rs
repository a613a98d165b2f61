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

use crate::SendStream;
use tokio::sync::watch;
use tracing::{debug, info, Instrument};
use zeromq::{PubSocket, Socket, SocketOptions, SocketSend, SubSocket, ZmqMessage};

use crate::bridge::BridgeCtx;
use crate::error::Result;
use crate::follow::{follow, forward_down, refuse, Relay};
use crate::service::ServeStream;
use crate::stream::Reader;
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
    tokio::spawn(follow(ctx, PubRelay(publisher), target).in_current_span());
    Ok(endpoint)
}

/// The local PUB, fed from the service's stream; local subscribers filter there.
struct PubRelay(PubSocket);

impl Relay for PubRelay {
    const WHAT: &'static str = "PUB/SUB";
    const PATTERN: Pattern = Pattern::PubSub;

    async fn deliver(&mut self, ctx: &BridgeCtx, msg: ZmqMessage) -> bool {
        if let Err(e) = self.0.send(msg).await {
            ctx.counters.error();
            debug!("local PUB send: {e}");
        }
        true
    }
}

/// Serves one PUB/SUB bridge stream: everything the service publishes goes down the stream.
pub(crate) async fn serve(ctx: ServeStream, send: SendStream, reader: Reader) {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut sub = SubSocket::with_options(options);
    let connected = async {
        sub.connect(&ctx.endpoint).await?;
        sub.subscribe("").await
    };
    if let Err(e) = connected.await {
        let reason = format!("cannot subscribe to the service at {}: {e}", ctx.endpoint);
        return refuse(send, reason, ctx.max_record).await;
    }
    forward_down(&mut sub, &ctx.endpoint, send, reader, ctx.max_record).await;
}
