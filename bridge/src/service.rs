//! The service side of bridges: which local services this agent serves to bridges on other
//! agents, and the dispatch of each incoming bridge stream to its pattern.
//!
//! A peer can only reach services exported here, by name; it never chooses an address, so a
//! tunnel is not an open proxy into this host.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{RecvStream, SendStream};
use bytes::Bytes;
use tracing::{debug, info_span, warn, Instrument};

use crate::channel::{self, Channels};
use crate::frame::{Kind, Record};
use crate::stream::{self, write_record};
use crate::tunnel::ALPN;
use crate::{distribute, pubsub, pushpull, reqrep, tcp, Pattern};

/// A local service offered to bridges on other agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// How the service talks.
    pub pattern: Pattern,
    /// Where the service listens on this host: a ZeroMQ endpoint (`tcp://127.0.0.1:5555`)
    /// for the ZeroMQ patterns, `HOST:PORT` for [`Pattern::Tcp`].
    pub endpoint: String,
}

/// The services exported by this agent, by name. Cheap to clone; changes apply to new streams.
#[derive(Clone, Debug, Default)]
pub struct Exports {
    map: Arc<RwLock<HashMap<String, Export>>>,
}

impl Exports {
    /// Offers `service` (or changes where it is).
    pub fn set(&self, service: &str, export: Export) {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(service.to_string(), export);
    }

    /// Stops offering `service` to new streams.
    pub fn remove(&self, service: &str) {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(service);
    }

    /// Where `service` is, if exported.
    pub fn get(&self, service: &str) -> Option<Export> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(service)
            .cloned()
    }
}

/// What the stream handlers need from the tunnel.
pub(crate) struct ServeCtx {
    pub(crate) exports: Exports,
    pub(crate) max_record: usize,
    pub(crate) node: String,
    pub(crate) channels: Channels,
}

/// What a hello record asks for.
struct Hello {
    bridge: String,
    service: String,
    pattern: Pattern,
}

fn parse_hello(r: &Record) -> Result<Hello, String> {
    let text = |i: usize| -> Result<String, String> {
        let f = r.frames.get(i).ok_or("hello is missing a field")?;
        String::from_utf8(f.to_vec()).map_err(|_| "hello field is not UTF-8".to_string())
    };
    if r.kind != Kind::Hello || r.frames.len() != 4 {
        return Err(format!("expected a hello record, got {:?}", r.kind));
    }
    if r.frames[0].as_ref() != ALPN {
        return Err(format!(
            "protocol {:?} is not {:?}",
            String::from_utf8_lossy(&r.frames[0]),
            String::from_utf8_lossy(ALPN)
        ));
    }
    Ok(Hello {
        bridge: text(1)?,
        service: text(2)?,
        pattern: text(3)?.parse()?,
    })
}

/// Serves one incoming bridge stream from `peer`.
pub(crate) async fn serve_stream(
    ctx: Arc<ServeCtx>,
    peer: String,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    // Read byte-exactly: a channel's stream is handed on raw after its hello.
    let first = match channel::read_one(&mut recv, channel::MAX_OPENING_RECORD).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            debug!(%peer, "bad first record on a bridge stream: {e}");
            return;
        }
    };
    if let Some(name) = channel::channel_name(&first) {
        channel::serve(&ctx.channels, &ctx.node, peer, name, send, recv).await;
        return;
    }
    let reader = stream::reader(recv, ctx.max_record);
    let refuse = |reason: String| Record::new(Kind::Refused, vec![Bytes::from(reason)]);
    let hello = match parse_hello(&first) {
        Ok(h) => h,
        Err(reason) => {
            warn!(%peer, "refused a bridge stream: {reason}");
            let _ = write_record(&mut send, refuse(reason), ctx.max_record).await;
            let _ = send.finish().await;
            return;
        }
    };
    let span = info_span!(
        "serve",
        %peer,
        bridge = %hello.bridge,
        service = %hello.service,
        pattern = %hello.pattern
    );
    let export = match ctx.exports.get(&hello.service) {
        Some(e) if e.pattern == hello.pattern => e,
        found => {
            let reason = match found {
                Some(e) => format!(
                    "service '{}' on {} is {}, the bridge expects {}",
                    hello.service, ctx.node, e.pattern, hello.pattern
                ),
                None => format!(
                    "agent '{}' does not export service '{}'",
                    ctx.node, hello.service
                ),
            };
            span.in_scope(|| warn!("refused a bridge stream: {reason}"));
            let _ = write_record(&mut send, refuse(reason), ctx.max_record).await;
            let _ = send.finish().await;
            return;
        }
    };
    // A TCP stream is ready only once the service accepted the connection: tcp::serve answers.
    if hello.pattern != Pattern::Tcp
        && write_record(&mut send, Record::new(Kind::Ready, vec![]), ctx.max_record)
            .await
            .is_err()
    {
        return;
    }
    let ctx = ServeStream {
        peer,
        endpoint: export.endpoint,
        max_record: ctx.max_record,
    };
    match hello.pattern {
        Pattern::ReqRep => reqrep::serve(ctx, send, reader).instrument(span).await,
        Pattern::PubSub => pubsub::serve(ctx, send, reader).instrument(span).await,
        Pattern::PushPull => pushpull::serve(ctx, send, reader).instrument(span).await,
        Pattern::Distribute => distribute::serve(ctx, send, reader).instrument(span).await,
        Pattern::Tcp => tcp::serve(ctx, send, reader).instrument(span).await,
    }
}

/// One accepted bridge stream, for the pattern handlers.
pub(crate) struct ServeStream {
    pub(crate) peer: String,
    pub(crate) endpoint: String,
    pub(crate) max_record: usize,
}
