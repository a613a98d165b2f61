//! The replication layer's one error type.

use std::path::PathBuf;

use super::wire::{RefuseReason, WireError};

/// Everything the replication layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame from the peer could not be decoded, or a message could not
    /// be encoded within the protocol's bounds.
    #[error("replication wire: {0}")]
    Wire(#[from] WireError),

    /// The peer refused what we sent, with its reason.
    #[error("refused by the peer: {0}")]
    Refused(RefuseReason),

    /// The disk-state file exists but cannot be trusted. The replica must
    /// not be promoted and must not accept writes until an operator or a
    /// full resync decides; it is never silently replaced by a default.
    #[error("disk-state file {path}: {reason}")]
    CorruptState { path: PathBuf, reason: String },

    /// A newer epoch fenced this primary: it must stop accepting writes.
    #[error("fenced: a newer epoch {newer} exists (ours is {ours})")]
    Fenced { ours: u64, newer: u64 },

    /// The call does not fit the state it was made in (a caller bug or a
    /// peer that does not follow the protocol).
    #[error("protocol: {0}")]
    Protocol(String),

    /// A volume identity or bound that cannot work (names the field).
    #[error("invalid volume configuration: {0}")]
    Config(String),

    /// A write outside the volume.
    #[error("write at offset {offset} of {len} bytes is outside the volume of {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an io::Error with what we were doing, for messages that say
/// which file and which step failed.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
