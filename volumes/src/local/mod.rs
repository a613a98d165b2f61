//! One host's volume stack: image file, FUSE server, loop device, ext4.
//!
//! So far: the FUSE server that serves a sparse image as one file, and the
//! [`WriteSink`] seam through which every write and fsync it accepts also
//! goes (replication hooks in there).

mod error;
mod fuse_image;
mod sink;

pub use error::LocalError;
pub use fuse_image::{ImageServer, ServerStats, IMAGE_FILE_NAME};
pub use sink::{LocalSink, RecordingSink, SinkEvent, WriteSink};
