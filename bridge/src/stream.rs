//! Records on a tunnel stream: a writer task that batches records (headers and small frames
//! copied into one buffer, large frames sent without a copy), a reader, and the hello exchange
//! that opens every bridge stream.

use crate::{RecvStream, SendStream};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::error::{Error, Result};
use crate::frame::{self, FrameError, Kind, Record, RecordCodec};
use crate::tunnel::{PeerAddr, Tunnels, ALPN};
use crate::Pattern;

/// Records read from a stream.
pub(crate) type Reader = FramedRead<RecvStream, RecordCodec>;

/// A record whose size was checked before it was queued, so the writer cannot fail on it.
pub(crate) struct Outgoing {
    record: Record,
}

impl Outgoing {
    /// Checks `record` against the size limit `max`.
    pub(crate) fn new(record: Record, max: usize) -> std::result::Result<Outgoing, FrameError> {
        frame::check(&record, max)?;
        Ok(Outgoing { record })
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
/// Frames up to this size are copied into the writer's batch buffer with the headers; larger
/// ones are handed to QUIC as they are, without a copy. quinn keeps every chunk written to a
/// stream as a segment until it is acknowledged and looks segments up linearly when it builds
/// packets, so a header and a frame per message as separate chunks made its packet building a
/// hot spot under pipelined small messages.
const INLINE_FRAME: usize = 4 * 1024;
/// The batch buffer grows by at least this much at a time.
const BUFFER_BLOCK: usize = 64 * 1024;

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
    let mut batch = Batch::default();
    while let Some(first) = rx.recv().await {
        batch.push(first.record);
        while batch.bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(out) => batch.push(out.record),
                Err(_) => break,
            }
        }
        let chunks = batch.take();
        send.write_all_chunks(chunks)
            .await
            .map_err(|e| e.to_string())?;
        chunks.clear();
    }
    let _ = send.finish().await;
    Ok(())
}

/// Records encoded for one write: headers and small frames copied into one buffer, large
/// frames by reference, in stream order.
#[derive(Default)]
struct Batch {
    buf: BytesMut,
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    /// Appends `record`, which passed [`frame::check`].
    fn push(&mut self, record: Record) {
        let head = frame::header_len(&record);
        self.bytes += head + record.payload_len();
        let inline = head
            + record
                .frames
                .iter()
                .map(Bytes::len)
                .filter(|l| *l <= INLINE_FRAME)
                .sum::<usize>();
        if self.buf.capacity() - self.buf.len() < inline {
            // Whole blocks, so that small records do not each allocate.
            self.buf.reserve(inline.max(BUFFER_BLOCK));
        }
        frame::put_header(&record, &mut self.buf);
        for f in record.frames {
            if f.len() <= INLINE_FRAME {
                self.buf.extend_from_slice(&f);
            } else {
                self.seal();
                self.chunks.push(f);
            }
        }
    }

    /// Moves the buffered bytes into a chunk of their own.
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
    }

    /// The chunks to write; the caller clears them after writing.
    fn take(&mut self) -> &mut Vec<Bytes> {
        self.seal();
        self.bytes = 0;
        &mut self.chunks
    }
}

/// Writes one record directly (the hello and its answer).
pub(crate) async fn write_record(send: &mut SendStream, record: Record, max: usize) -> Result<()> {
    let mut chunks = vec![frame::header(&record, max)?];
    chunks.extend(record.frames);
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

#[cfg(test)]
mod tests {
    use super::{Batch, INLINE_FRAME};
    use crate::frame::{Kind, Record, RecordCodec, DEFAULT_MAX_RECORD};
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;
    use tokio_util::codec::Encoder;

    fn frame_sizes() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..100usize,
            Just(INLINE_FRAME),
            Just(INLINE_FRAME + 1),
            INLINE_FRAME..3 * INLINE_FRAME,
        ]
    }

    proptest! {
        /// A batch's chunks, concatenated, are exactly the codec's encoding of its records in
        /// order, whichever frames were copied and whichever went by reference.
        #[test]
        fn batch_is_the_codec_encoding(
            records in prop::collection::vec(
                (any::<u64>(), prop::collection::vec(frame_sizes(), 0..5)),
                1..20,
            ),
        ) {
            let records: Vec<Record> = records
                .into_iter()
                .enumerate()
                .map(|(i, (id, sizes))| Record {
                    kind: Kind::Request,
                    id,
                    client: i as u64,
                    frames: sizes
                        .into_iter()
                        .map(|n| Bytes::from(vec![i as u8; n]))
                        .collect(),
                })
                .collect();
            let mut expected = BytesMut::new();
            let mut batch = Batch::default();
            for r in &records {
                RecordCodec::new(DEFAULT_MAX_RECORD)
                    .encode(r.clone(), &mut expected)
                    .expect("encode");
                batch.push(r.clone());
            }
            let chunks = batch.take();
            let large = records
                .iter()
                .flat_map(|r| &r.frames)
                .filter(|f| f.len() > INLINE_FRAME)
                .count();
            // Large frames by reference, everything between them in one chunk each.
            prop_assert!(chunks.len() <= 2 * large + 1);
            let got: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            prop_assert_eq!(got, expected.to_vec());
            chunks.clear();
            prop_assert_eq!(batch.bytes, 0);
        }
    }
}
