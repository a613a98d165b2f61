//! Replication frames over a channel of the agents' mutual-TLS QUIC
//! tunnel (`mesh_bridge::Tunnels::serve_channel` / `open_channel`), so a
//! volume replicates on the one connection two agents already share.
//!
//! - The standby side ([`serve_standby`]): a channel handler per volume
//!   that reads frames (`frame_len`, then `decode_body`), runs
//!   [`Standby::handle`] on a blocking thread, one message at a time (it
//!   writes and fdatasyncs the image), and writes the replies back.
//! - The primary side ([`ReplicatingSink`], in `transport/sink.rs`): the
//!   FUSE server's `WriteSink`, driving the pure [`super::Primary`].
//! - [`Coordinator`]: the seam to the coordinator, which alone may let a
//!   primary go on without its standby.
//!
//! Frames are the wire codec's (`u32` little-endian body length, body);
//! nothing else travels on the channel.

mod sink;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mesh_bridge::{Channel, Tunnels};
use mesh_bridge::{RecvStream, SendStream};
use tracing::{debug, info, warn};

use super::image::Image;
use super::standby::Standby;
use super::wire::{decode_body, frame_len, Message};

pub use sink::{ReplicatingSink, SinkConfig, SinkStatus};

/// The tunnel channel that carries the replication of `volume_id`.
pub fn channel_name(volume_id: &str) -> String {
    format!("volume-replication/{volume_id}")
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("replication stream: {0}")]
    Stream(String),
    #[error("replication stream: no progress writing a frame within {}ms", .0.as_millis())]
    WriteTimeout(Duration),
    #[error("replication frame: {0}")]
    Wire(#[from] super::wire::WireError),
}

/// The next message on `recv`, or `None` where the stream ended cleanly
/// between two frames. The length is checked before the body is read.
pub(crate) async fn read_frame(recv: &mut RecvStream) -> Result<Option<Message>, TransportError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(mesh_bridge::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(TransportError::Stream(e.to_string())),
    }
    let len = frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    Ok(Some(decode_body(&body)?))
}

/// Writes one encoded frame, giving up after `timeout` without progress.
pub(crate) async fn write_frame(
    send: &mut SendStream,
    frame: &[u8],
    timeout: Duration,
) -> Result<(), TransportError> {
    match tokio::time::timeout(timeout, send.write_all(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(TransportError::Stream(e.to_string())),
        Err(_) => Err(TransportError::WriteTimeout(timeout)),
    }
}

/// What the coordinator recorded when asked to outdate a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutdateAnswer {
    /// The standby is persisted Outdated for this epoch: go on alone.
    Outdated,
    /// A newer epoch exists: this primary is fenced.
    NewerEpoch(u64),
}

/// The coordinator could not be asked, or did not answer.
#[derive(Debug, thiserror::Error)]
#[error("coordinator: {0}")]
pub struct CoordinatorError(pub String);

/// The primary's questions to the coordinator. Called on a blocking
/// thread of the runtime, never under the volume's lock, so an
/// implementation may block (on a gRPC call, say) for as long as its own
/// timeout. An error is not an answer: the primary asks again later and
/// goes on waiting, since it may be the side that is cut off.
pub trait Coordinator: Send + Sync + 'static {
    /// Persist the standby of `group` as Outdated for `epoch`; `request`
    /// tells the answer to this ask from one to an earlier ask.
    fn outdate_standby(
        &self,
        group: &str,
        epoch: u64,
        request: u64,
    ) -> Result<OutdateAnswer, CoordinatorError>;

    /// The standby of `group` finished its resync and is UpToDate again.
    fn standby_up_to_date(&self, group: &str, epoch: u64) -> Result<(), CoordinatorError> {
        let _ = (group, epoch);
        Ok(())
    }
}

/// A standby served on a tunnel channel.
pub struct StandbyHandle<I: Image> {
    standby: Mutex<Standby<I>>,
    /// Bumped by every new stream: an older stream stops at its next frame.
    session: AtomicU64,
    write_timeout: Duration,
    /// When this standby last sent a flushed Ack: the primary may hold a
    /// lease from it until then plus the lease (see [`StandbyHandle::last_grant`]).
    last_grant: Mutex<Option<crate::lease_clock::LeaseInstant>>,
}

impl<I: Image> StandbyHandle<I> {
    /// Ends every stream: none applies another frame (a stream checks
    /// before each one). Call when the replica stops being a standby, e.g.
    /// before its image is attached as the primary's.
    /// When this standby last acknowledged a flush (granting the primary a
    /// lease). A promoted standby starts the group only a full lease later.
    pub fn last_grant(&self) -> Option<crate::lease_clock::LeaseInstant> {
        *self
            .last_grant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stop(&self) {
        self.session.fetch_add(1, Ordering::SeqCst);
        // Waits for a frame being applied now; later ones see the bump.
        drop(self.lock());
    }

    /// The standby, for inspection or promotion (stop serving first).
    pub fn lock(&self) -> MutexGuard<'_, Standby<I>> {
        self.standby
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves `standby` on the channel of `volume_id`: the primary's agent
/// opens it with [`ReplicatingSink`]. `write_timeout` bounds each reply's
/// write. Returns the shared standby; `Tunnels::stop_channel` stops it.
pub fn serve_standby<I: Image + Send + 'static>(
    tunnels: &Tunnels,
    volume_id: &str,
    standby: Standby<I>,
    write_timeout: Duration,
) -> Arc<StandbyHandle<I>> {
    serve_standby_from(tunnels, volume_id, standby, write_timeout, None)
}

/// [`serve_standby`], accepting streams only from the agent `primary`
/// (the node name its certificate proves) when one is given: another
/// agent of the mesh cannot write this standby's image.
pub fn serve_standby_from<I: Image + Send + 'static>(
    tunnels: &Tunnels,
    volume_id: &str,
    standby: Standby<I>,
    write_timeout: Duration,
    primary: Option<String>,
) -> Arc<StandbyHandle<I>> {
    let handle = Arc::new(StandbyHandle {
        standby: Mutex::new(standby),
        session: AtomicU64::new(0),
        write_timeout,
        last_grant: Mutex::new(None),
    });
    let h = handle.clone();
    tunnels.serve_channel(&channel_name(volume_id), move |ch| {
        serve_standby_stream(h.clone(), ch, primary.clone())
    });
    handle
}

async fn serve_standby_stream<I: Image + Send + 'static>(
    h: Arc<StandbyHandle<I>>,
    ch: Channel,
    primary: Option<String>,
) {
    let Channel {
        peer,
        mut send,
        mut recv,
    } = ch;
    if let Some(expected) = primary.filter(|p| *p != peer) {
        warn!(%peer, %expected, "refused a replication stream: only the volume's primary may write it");
        send.reset(1);
        return;
    }
    let session = h.session.fetch_add(1, Ordering::SeqCst) + 1;
    info!(%peer, session, "replication stream from the primary");
    // Whatever an earlier stream had open is over.
    let earlier = h.clone();
    if tokio::task::spawn_blocking(move || earlier.lock().on_link_down())
        .await
        .is_err()
    {
        return;
    }
    loop {
        let msg = match read_frame(&mut recv).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                debug!(%peer, "the primary closed the replication stream");
                break;
            }
            Err(e) => {
                warn!(%peer, "replication stream lost: {e}");
                break;
            }
        };
        if h.session.load(Ordering::SeqCst) != session {
            debug!(%peer, session, "a newer replication stream replaced this one");
            return;
        }
        let sb = h.clone();
        // Checked again under the standby's lock: once `stop` returns, no
        // frame of this stream is applied.
        let handled = tokio::task::spawn_blocking(move || {
            let mut standby = sb.lock();
            (sb.session.load(Ordering::SeqCst) == session).then(|| standby.handle(msg))
        })
        .await;
        let replies = match handled {
            Ok(Some(r)) => r,
            Ok(None) => {
                debug!(%peer, session, "the standby stopped or a newer stream took over");
                return;
            }
            Err(e) => {
                warn!(%peer, "the standby's handler failed: {e}");
                break;
            }
        };
        let mut refused = false;
        for reply in replies {
            if let Message::Refused { reason } = &reply {
                warn!(%peer, "refused the primary: {reason}");
                refused = true;
            }
            let frame = match reply.to_frame() {
                Ok(f) => f,
                Err(e) => {
                    warn!(%peer, "cannot encode a reply: {e}");
                    refused = true;
                    break;
                }
            };
            if matches!(reply, Message::Ack { flushed: true, .. }) {
                // Marked before it leaves: the grant can only be later.
                *h.last_grant.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(crate::lease_clock::LeaseInstant::now());
            }
            if let Err(e) = write_frame(&mut send, &frame, h.write_timeout).await {
                warn!(%peer, "{e}");
                refused = true;
                break;
            }
        }
        if refused {
            // The session is over; the primary opens a new stream.
            let _ = send.finish().await;
            break;
        }
    }
    if h.session.load(Ordering::SeqCst) == session {
        let sb = h.clone();
        let _ = tokio::task::spawn_blocking(move || sb.lock().on_link_down()).await;
    }
}
