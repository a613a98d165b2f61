//! Named channels: streams on the tunnel that are not bridges.
//!
//! Other parts of the agent (volume replication) reuse the tunnel between two agents (a stream
//! on the QUIC connection, or a TLS connection of its own), with its identity checks, without
//! the bridge knowing what they carry. The
//! serving side registers a handler for a channel name ([`Tunnels::serve_channel`]); the other
//! side opens a stream for that name ([`Tunnels::open_channel`]). After the opening exchange the
//! stream belongs to the handler and to the opener as raw bytes: no records, no bridge framing.
//!
//! The opening exchange uses the bridge's hello record with three frames,
//! `[ALPN, "channel", NAME]`, answered by `Ready` or `Refused [reason]`. Both records are read
//! byte-exactly, so nothing that follows them is swallowed by a buffer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::{RecvStream, SendStream};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::{Error, Result};
use crate::frame::{FrameError, Kind, Record, RecordCodec};
use crate::stream::write_record;
use crate::tunnel::{PeerAddr, Tunnels, ALPN};

/// The second frame of a hello that opens a channel rather than a bridge.
pub(crate) const CHANNEL_TAG: &[u8] = b"channel";

/// The largest opening record (a hello or its answer); real ones are a few dozen bytes.
pub(crate) const MAX_OPENING_RECORD: usize = 64 * 1024;

/// An accepted channel stream, handed to the channel's handler.
#[derive(Debug)]
pub struct Channel {
    /// The peer's node name, verified against its certificate by the tunnel.
    pub peer: String,
    /// Our sending half.
    pub send: SendStream,
    /// Our receiving half.
    pub recv: RecvStream,
}

/// What a channel handler returns.
pub type ChannelFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type Handler = Arc<dyn Fn(Channel) -> ChannelFuture + Send + Sync>;

/// The channel handlers registered on this agent, by name.
#[derive(Clone, Default)]
pub(crate) struct Channels {
    map: Arc<RwLock<HashMap<String, Handler>>>,
}

impl Channels {
    pub(crate) fn set(&self, name: &str, handler: Handler) {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_string(), handler);
    }

    pub(crate) fn remove(&self, name: &str) -> bool {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name)
            .is_some()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Handler> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }
}

/// The hello that opens channel `name`.
pub(crate) fn hello(name: &str) -> Record {
    Record::new(
        Kind::Hello,
        vec![
            Bytes::from_static(ALPN),
            Bytes::from_static(CHANNEL_TAG),
            Bytes::copy_from_slice(name.as_bytes()),
        ],
    )
}

/// The channel name a hello asks for, if it is a channel hello.
pub(crate) fn channel_name(r: &Record) -> Option<std::result::Result<String, String>> {
    if r.kind != Kind::Hello || r.frames.len() != 3 || r.frames[1].as_ref() != CHANNEL_TAG {
        return None;
    }
    if r.frames[0].as_ref() != ALPN {
        return Some(Err(format!(
            "protocol {:?} is not {:?}",
            String::from_utf8_lossy(&r.frames[0]),
            String::from_utf8_lossy(ALPN)
        )));
    }
    Some(
        String::from_utf8(r.frames[2].to_vec())
            .map_err(|_| "channel name is not UTF-8".to_string()),
    )
}

/// Reads exactly one record from `recv` (never more bytes than it holds), or `None` if the
/// stream ended before its first byte.
pub(crate) async fn read_one(
    recv: &mut RecvStream,
    max: usize,
) -> std::result::Result<Option<Record>, FrameError> {
    let io = |e: crate::ReadExactError| FrameError::Io(std::io::Error::other(e));
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(crate::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let size = u32::from_be_bytes(prefix) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut buf = BytesMut::zeroed(4 + size);
    buf[..4].copy_from_slice(&prefix);
    recv.read_exact(&mut buf[4..]).await.map_err(io)?;
    RecordCodec::new(max)
        .decode(&mut buf)?
        .ok_or(FrameError::Malformed("record shorter than its length"))
        .map(Some)
}

/// Answers a channel hello from `peer` for `name`: runs its handler, or refuses the stream.
pub(crate) async fn serve(
    channels: &Channels,
    node: &str,
    peer: String,
    name: std::result::Result<String, String>,
    mut send: SendStream,
    recv: RecvStream,
) {
    let refuse = |reason: String| Record::new(Kind::Refused, vec![Bytes::from(reason)]);
    let found = match &name {
        Ok(name) => channels
            .get(name)
            .ok_or_else(|| format!("agent '{node}' serves no channel '{name}'")),
        Err(reason) => Err(reason.clone()),
    };
    let handler = match found {
        Ok(h) => h,
        Err(reason) => {
            tracing::warn!(%peer, "refused a channel stream: {reason}");
            let _ = write_record(&mut send, refuse(reason), MAX_OPENING_RECORD).await;
            let _ = send.finish().await;
            return;
        }
    };
    if write_record(
        &mut send,
        Record::new(Kind::Ready, vec![]),
        MAX_OPENING_RECORD,
    )
    .await
    .is_err()
    {
        return;
    }
    handler(Channel { peer, send, recv }).await;
}

impl Tunnels {
    /// Serves channel `name`: every stream a peer opens for it with [`Tunnels::open_channel`]
    /// is handed to `handler`, each on a task of its own. Replaces an earlier handler for the
    /// same name; streams already handed out are not affected.
    pub fn serve_channel<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ch| Box::pin(handler(ch)));
        self.channels().set(name, handler);
    }

    /// Stops serving channel `name` to new streams; true if it was served.
    pub fn stop_channel(&self, name: &str) -> bool {
        self.channels().remove(name)
    }

    /// Opens a stream for channel `name` to `peer`, on the tunnel connection to it (dialled if
    /// needed), and waits until the peer accepts it. A peer that serves no such channel refuses
    /// with [`Error::ChannelRefused`] and its reason.
    pub async fn open_channel(
        &self,
        peer: &PeerAddr,
        name: &str,
    ) -> Result<(SendStream, RecvStream)> {
        let (mut send, mut recv) = self.open_stream(peer).await?;
        write_record(&mut send, hello(name), MAX_OPENING_RECORD).await?;
        match read_one(&mut recv, MAX_OPENING_RECORD).await {
            Ok(Some(r)) if r.kind == Kind::Ready => Ok((send, recv)),
            Ok(Some(r)) if r.kind == Kind::Refused => Err(Error::ChannelRefused {
                peer: peer.node.clone(),
                channel: name.to_string(),
                reason: r.reason(),
            }),
            Ok(Some(r)) => Err(Error::stream(
                &peer.node,
                format!("channel '{name}': expected Ready, got {:?}", r.kind),
            )),
            Ok(None) => Err(Error::stream(
                &peer.node,
                format!("channel '{name}': the stream ended before the peer answered"),
            )),
            Err(e) => Err(Error::stream(&peer.node, format!("channel '{name}': {e}"))),
        }
    }
}
