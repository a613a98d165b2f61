//! Raw TCP forwarding for anything the bridge does not need to understand: each local
//! connection becomes one tunnel stream to the service's agent, which connects to the service.
//! Bytes pass unchanged both ways, half-closes included.
//!
//! A connection stays with the place the service was when it was opened; after a move, new
//! connections go to the new place. Counters: `msgs_out` and `msgs_in` count finished
//! connections, bytes are counted when a connection ends.

use crate::SendStream;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::bridge::BridgeCtx;
use crate::error::Result;
use crate::frame::{Kind, Record};
use crate::service::ServeStream;
use crate::stream::{self, Reader};
use crate::target::ServiceTarget;
use crate::Pattern;

/// Binds the local listener and starts accepting; returns the bound address.
pub(crate) async fn start(
    ctx: BridgeCtx,
    target: watch::Receiver<ServiceTarget>,
) -> Result<String> {
    let listener = TcpListener::bind(&ctx.spec.local)
        .await
        .map_err(|e| ctx.local_bind_error(e))?;
    let endpoint = listener
        .local_addr()
        .map_err(|e| ctx.local_bind_error(e))?
        .to_string();
    info!(%endpoint, "TCP bridge listening");
    tokio::spawn(accept_loop(ctx, listener, target).in_current_span());
    Ok(endpoint)
}

async fn accept_loop(
    ctx: BridgeCtx,
    listener: TcpListener,
    target: watch::Receiver<ServiceTarget>,
) {
    let ctx = std::sync::Arc::new(ctx);
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (local, from) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!("accepting a local connection: {e}");
                continue;
            }
        };
        let current = target.borrow().clone();
        let ctx = ctx.clone();
        let span = info_span!("conn", %from, peer = %current.peer.node);
        tokio::spawn(
            async move {
                let shutdown = ctx.shutdown.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    r = forward(&ctx, local, &current) => if let Err(e) = r {
                        ctx.counters.error();
                        warn!("TCP connection through the bridge failed: {e}");
                    },
                }
            }
            .instrument(span),
        );
    }
}

async fn forward(ctx: &BridgeCtx, local: TcpStream, target: &ServiceTarget) -> Result<()> {
    let (mut send, reader) = stream::open(
        &ctx.tunnels,
        &target.peer,
        &ctx.spec.name,
        &target.service,
        Pattern::Tcp,
    )
    .await?;
    let _ = local.set_nodelay(true);
    let (up, down) = splice(local, &mut send, reader).await;
    ctx.counters.sent(usize::try_from(up).unwrap_or(usize::MAX));
    ctx.counters
        .received(usize::try_from(down).unwrap_or(usize::MAX));
    Ok(())
}

/// Copies bytes both ways until both directions ended; returns (bytes up, bytes down).
async fn splice(tcp: TcpStream, send: &mut SendStream, reader: Reader) -> (u64, u64) {
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    // The reader may already hold bytes that followed the last record.
    let parts = reader.into_parts();
    let leftover = parts.read_buf.freeze();
    let mut recv = parts.io;
    let up = async {
        let n = tokio::io::copy(&mut tcp_read, send).await.unwrap_or(0);
        let _ = send.finish().await;
        n
    };
    let down = async {
        let mut n = leftover.len() as u64;
        if tcp_write.write_all(&leftover).await.is_err() {
            return 0;
        }
        n += tokio::io::copy(&mut recv, &mut tcp_write)
            .await
            .unwrap_or(0);
        let _ = tcp_write.shutdown().await;
        n
    };
    let (up, down) = tokio::join!(up, down);
    // Let the last bytes and the end of stream reach the peer before the stream is dropped.
    let _ = send.stopped().await;
    (up, down)
}

/// Serves one TCP bridge stream: connects to the service, answers Ready, then splices.
pub(crate) async fn serve(ctx: ServeStream, mut send: SendStream, reader: Reader) {
    let service = match TcpStream::connect(&ctx.endpoint).await {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("cannot connect to the service at {}: {e}", ctx.endpoint);
            warn!("{reason}");
            let refused = Record::new(Kind::Refused, vec![Bytes::from(reason)]);
            let _ = stream::write_record(&mut send, refused, ctx.max_record).await;
            let _ = send.finish().await;
            return;
        }
    };
    let _ = service.set_nodelay(true);
    if stream::write_record(&mut send, Record::new(Kind::Ready, vec![]), ctx.max_record)
        .await
        .is_err()
    {
        return;
    }
    let (up, down) = splice(service, &mut send, reader).await;
    debug!(
        to_service = down,
        from_service = up,
        "TCP bridge stream ended"
    );
}
