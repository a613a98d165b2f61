//! The messages between a primary and its standby, and their binary
//! encoding.
//!
//! A frame is `len: u32 LE` followed by `len` bytes of body; the body is
//! `version: u8`, `tag: u8`, then the message's fields (integers little
//! endian, byte strings as `u32 LE` length + bytes, names as `u8` length +
//! UTF-8). The decoder checks every length against a bound before it
//! allocates anything, refuses trailing bytes, and never panics: a peer
//! (or a bit flip the tunnel missed) can make it return an error, nothing
//! more. Integrity and confidentiality come from the mutual-TLS QUIC
//! tunnel underneath, so frames carry no checksum of their own.

use super::state::DiskState;

/// The version this code writes and the only one it reads.
pub const WIRE_VERSION: u8 = 1;
/// Largest data payload of one `Write` or `Block` (also the largest block
/// size a volume may use).
pub const MAX_DATA: usize = 1 << 20;
/// Largest number of checksums in one `BlockSums`.
pub const MAX_SUMS: usize = 4096;
/// Largest volume id or group name, in bytes.
pub const MAX_NAME: usize = 255;
/// Largest frame body: the biggest message is a `Write`/`Block` of
/// `MAX_DATA` bytes or a full `BlockSums`, plus a small header.
pub const MAX_FRAME_BODY: usize = MAX_DATA + 64;
/// Length of one block checksum (BLAKE3, 256 bits).
pub const SUM_LEN: usize = 32;

/// A block checksum.
pub type BlockSum = [u8; SUM_LEN];

/// Why a standby (or a primary) refused a message. Precise enough that an
/// operator reading it knows which side is misconfigured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// The sender's epoch is older than the receiver's: it was deposed.
    StaleEpoch { ours: u64, theirs: u64 },
    /// The image belongs to another volume.
    WrongVolume { ours: String, theirs: String },
    /// The image belongs to another failover group.
    WrongGroup { ours: String, theirs: String },
    /// The two images do not have the same size.
    SizeMismatch { ours: u64, theirs: u64 },
    /// The two sides disagree on the block size used for checksums.
    BlockSizeMismatch { ours: u32, theirs: u32 },
    /// A write, block or flush arrived out of sequence.
    OutOfOrder { expected: u64, got: u64 },
    /// A write or block outside the volume.
    OutOfRange { offset: u64, len: u64 },
    /// A data message before any accepted `Hello`.
    NoSession,
    /// The receiver failed to write or flush its image.
    Io { detail: String },
    /// A message that has no place in the receiver's role or state.
    Unexpected { what: String },
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StaleEpoch { ours, theirs } => {
                write!(f, "stale epoch {theirs}: this replica is at epoch {ours}")
            }
            Self::WrongVolume { ours, theirs } => {
                write!(f, "image is volume {ours:?}, not {theirs:?}")
            }
            Self::WrongGroup { ours, theirs } => {
                write!(f, "image belongs to group {ours:?}, not {theirs:?}")
            }
            Self::SizeMismatch { ours, theirs } => {
                write!(f, "image is {ours} bytes, the peer's is {theirs} bytes")
            }
            Self::BlockSizeMismatch { ours, theirs } => {
                write!(f, "block size {ours} here, {theirs} at the peer")
            }
            Self::OutOfOrder { expected, got } => {
                write!(
                    f,
                    "sequence number {got} out of order (expected {expected})"
                )
            }
            Self::OutOfRange { offset, len } => {
                write!(f, "{len} bytes at offset {offset} lie outside the volume")
            }
            Self::NoSession => write!(f, "no accepted Hello on this connection"),
            Self::Io { detail } => write!(f, "I/O error at the replica: {detail}"),
            Self::Unexpected { what } => write!(f, "unexpected message: {what}"),
        }
    }
}

/// One message between primary and standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Primary -> standby: opens a session. `next_seq` is the sequence
    /// number of the first write the session will carry.
    Hello {
        volume_id: String,
        group: String,
        size_bytes: u64,
        epoch: u64,
        block_size: u32,
        next_seq: u64,
    },
    /// Standby -> primary: the session is accepted. `fresh_image` says the
    /// standby's image was just created (all zeros), so a full sync can
    /// skip the checksum pass and every all-zero block.
    HelloAck {
        epoch: u64,
        disk: DiskState,
        fresh_image: bool,
    },
    /// Primary -> standby: write `data` at `offset`.
    Write {
        epoch: u64,
        seq: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// Primary -> standby: fdatasync everything up to and including `seq`,
    /// then acknowledge with `flushed: true`.
    Flush { epoch: u64, seq: u64 },
    /// Standby -> primary: everything up to `seq` is written (and, with
    /// `flushed`, fdatasync'ed).
    Ack { seq: u64, flushed: bool },
    /// Either way: the message was refused; the session is over.
    Refused { reason: RefuseReason },
    /// Standby -> primary during a resync: the checksums of its blocks
    /// `start..start + sums.len()`.
    BlockSums { start: u64, sums: Vec<BlockSum> },
    /// Primary -> standby during a resync: the primary's content of block
    /// `index` (shorter than the block size only for the last block).
    Block {
        epoch: u64,
        seq: u64,
        index: u64,
        data: Vec<u8>,
    },
    /// Primary -> standby: every block below `done_blocks` now matches.
    ResyncProgress {
        epoch: u64,
        seq: u64,
        done_blocks: u64,
    },
    /// Primary -> standby: the resync is complete; flush, mark UpToDate,
    /// then acknowledge `seq` with `flushed: true`.
    ResyncDone { epoch: u64, seq: u64 },
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the bound of {max}")]
    FrameTooLong { len: usize, max: usize },
    #[error("frame body ends early")]
    Truncated,
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
    #[error("unsupported wire version {0} (this side speaks {WIRE_VERSION})")]
    Version(u8),
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("{what} of {len} exceeds the bound of {max}")]
    FieldTooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("a name is not valid UTF-8")]
    BadUtf8,
    #[error("unknown {what} code {code}")]
    BadCode { what: &'static str, code: u8 },
}

// Message tags on the wire.
const T_HELLO: u8 = 1;
const T_HELLO_ACK: u8 = 2;
const T_WRITE: u8 = 3;
const T_FLUSH: u8 = 4;
const T_ACK: u8 = 5;
const T_REFUSED: u8 = 6;
const T_BLOCK_SUMS: u8 = 7;
const T_BLOCK: u8 = 8;
const T_RESYNC_PROGRESS: u8 = 9;
const T_RESYNC_DONE: u8 = 10;

mod decode;
mod encode;
pub use decode::{decode_body, decode_frame, frame_len, Decoded};

#[cfg(test)]
mod tests;
