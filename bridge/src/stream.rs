//! Records on a QUIC stream: a writer task that batches records and sends frames without
//! copying them, a reader, and the hello exchange that opens every bridge stream.

use bytes::Bytes;
use futures::StreamExt;
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::error::{Error, Result};
use crate::frame::{self, FrameError, Kind, Record, RecordCodec};
use crate::tunnel::{PeerAddr, Tunnels, ALPN};
use crate::Pattern;

/// Records read from a stream.
pub(crate) type Reader = FramedRead<RecvStream, RecordCodec>;

/// A record whose header is already built, so its size was checked before it was queued.
pub(crate) struct Outgoing {
    header: Bytes,
    record: Record,
}

impl Outgoing {
    /// Checks `record` against the size limit `max`.
    pub(crate) fn new(record: Record, max: usize) -> std::result::Result<Outgoing, FrameError> {
        Ok(Outgoing {
            header: frame::header(&record, max)?,
            record,
        })
    }

    /// The record to be sent.
    pub(crate) fn record(&self) -> &Record {
        &self.record
    }
}

/// How many queued records the writer may hold; the queue is the stream's backpressure.
const WRITE_QUEUE: usize = 1024;
/// The writer gathers queued records up to this many bytes into one write.
const BATCH_BYTES: usize = 256 * 1024;

/// Starts a writer task for `send`. Dropping every sender finishes the stream; the task's
/// result says why writing stopped, if it failed.
pub(crate) fn spawn_writer(
    send: SendStream,
) -> (
    mpsc::Sender<Outgoing>,
    tokio::task::JoinHandle<std::result::Result<(), String>>,
) {
    let (tx, rx) = channel();
    (tx, spawn_writer_with(send, rx))
}

/// A queue of records for a writer.
pub(crate) fn channel() -> (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
    mpsc::channel(WRITE_QUEUE)
}

/// [`spawn_writer`] for a queue made beforehand (records may be queued while the stream is
/// still being opened).
pub(crate) fn spawn_writer_with(
    send: SendStream,
    rx: mpsc::Receiver<Outgoing>,
) -> tokio::task::JoinHandle<std::result::Result<(), String>> {
    tokio::spawn(write_loop(send, rx))
}

async fn write_loop(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Outgoing>,
) -> std::result::Result<(), String> {
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = push(first, &mut chunks);
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(out) => bytes += push(out, &mut chunks),
                Err(_) => break,
            }
        }
        send.write_all_chunks(&mut chunks)
            .await
            .map_err(|e| e.to_string())?;
        chunks.clear();
    }
    let _ = send.finish();
    Ok(())
}

/// Appends the chunks of `out` to `chunks`; returns its size.
fn push(out: Outgoing, chunks: &mut Vec<Bytes>) -> usize {
    let size = out.header.len() + out.record.payload_len();
    chunks.push(out.header);
    chunks.extend(out.record.frames.into_iter().filter(|f| !f.is_empty()));
    size
}

/// Writes one record directly (the hello and its answer).
pub(crate) async fn write_record(send: &mut SendStream, record: Record, max: usize) -> Result<()> {
    let out = Outgoing::new(record, max)?;
    let mut chunks = vec![out.header];
    chunks.extend(out.record.frames);
    send.write_all_chunks(&mut chunks)
        .await
        .map_err(|e| Error::Frame(FrameError::Io(std::io::Error::other(e))))
}

/// A reader of records from `recv`.
pub(crate) fn reader(recv: RecvStream, max: usize) -> Reader {
    FramedRead::with_capacity(recv, RecordCodec::new(max), 64 * 1024)
}

/// Next record, or `None` at the end of the stream.
pub(crate) async fn next(reader: &mut Reader) -> std::result::Result<Option<Record>, FrameError> {
    reader.next().await.transpose()
}

/// The first record on a bridge stream.
pub(crate) fn hello(bridge: &str, service: &str, pattern: Pattern) -> Record {
    Record::new(
        Kind::Hello,
        vec![
            Bytes::from_static(ALPN),
            Bytes::copy_from_slice(bridge.as_bytes()),
            Bytes::copy_from_slice(service.as_bytes()),
            Bytes::from_static(pattern.as_str().as_bytes()),
        ],
    )
}

/// Opens a bridge stream to `peer` for `service`, and waits until the peer accepts it.
pub(crate) async fn open(
    tunnels: &Tunnels,
    peer: &PeerAddr,
    bridge: &str,
    service: &str,
    pattern: Pattern,
) -> Result<(SendStream, Reader)> {
    let (mut send, recv) = tunnels.open_stream(peer).await?;
    let max = tunnels.max_record();
    write_record(&mut send, hello(bridge, service, pattern), max).await?;
    let mut reader = reader(recv, max);
    match next(&mut reader).await {
        Ok(Some(r)) if r.kind == Kind::Ready => Ok((send, reader)),
        Ok(Some(r)) if r.kind == Kind::Refused => Err(Error::Refused {
            peer: peer.node.clone(),
            bridge: bridge.to_string(),
            reason: r.reason(),
        }),
        Ok(Some(r)) => Err(Error::stream(
            &peer.node,
            format!("expected Ready, got {:?}", r.kind),
        )),
        Ok(None) => Err(Error::stream(
            &peer.node,
            "the stream ended before the peer answered",
        )),
        Err(e) => Err(Error::stream(&peer.node, e)),
    }
}
