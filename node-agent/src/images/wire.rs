//! The image-export channel's framing, after the tunnel's opening exchange: the receiver asks
//! for one image by name; the sender answers with its size, the archive in chunks, and an end
//! frame with the byte count and SHA-256 of everything it sent, or an error frame.
//!
//! ```text
//! request:  u32 len, image name (UTF-8)
//! answer:   'S' u64 size            Podman's size of the image (for progress; an estimate)
//!           'D' u32 len, bytes      a chunk of the archive, at most MAX_CHUNK
//!           'E' u64 total, [u8;32]  the end: bytes sent and their SHA-256
//!           'X' u32 len, reason     the sender failed; nothing more follows
//! ```

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The channel's name on the tunnel.
pub const CHANNEL: &str = "image-export/1";
/// The largest chunk either side sends or accepts.
pub const MAX_CHUNK: usize = 1024 * 1024;
/// The longest image name accepted.
const MAX_NAME: usize = 1024;
/// The longest error reason accepted.
const MAX_REASON: usize = 16 * 1024;

/// One frame of the answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Size(u64),
    Data(Vec<u8>),
    End { total: u64, sha256: [u8; 32] },
    Failed(String),
}

/// What makes a frame unreadable.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unknown frame tag {0:#04x}")]
    Tag(u8),
    #[error("a {what} of {len} bytes is more than the {max} allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the {0} is not UTF-8")]
    Utf8(&'static str),
}

pub async fn write_request<W: AsyncWrite + Unpin>(w: &mut W, image: &str) -> std::io::Result<()> {
    w.write_u32(image.len() as u32).await?;
    w.write_all(image.as_bytes()).await?;
    w.flush().await
}

pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, WireError> {
    let len = r.read_u32().await? as usize;
    let bytes = read_bounded(r, len, MAX_NAME, "image name").await?;
    String::from_utf8(bytes).map_err(|_| WireError::Utf8("image name"))
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    match frame {
        Frame::Size(n) => {
            w.write_u8(b'S').await?;
            w.write_u64(*n).await?;
        }
        Frame::Data(d) => {
            w.write_u8(b'D').await?;
            w.write_u32(d.len() as u32).await?;
            w.write_all(d).await?;
        }
        Frame::End { total, sha256 } => {
            w.write_u8(b'E').await?;
            w.write_u64(*total).await?;
            w.write_all(sha256).await?;
        }
        Frame::Failed(reason) => {
            let reason = &reason.as_bytes()[..reason.len().min(MAX_REASON)];
            w.write_u8(b'X').await?;
            w.write_u32(reason.len() as u32).await?;
            w.write_all(reason).await?;
        }
    }
    Ok(())
}

/// The next frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, WireError> {
    let mut tag = [0u8; 1];
    if r.read(&mut tag).await? == 0 {
        return Ok(None);
    }
    Ok(Some(match tag[0] {
        b'S' => Frame::Size(r.read_u64().await?),
        b'D' => {
            let len = r.read_u32().await? as usize;
            Frame::Data(read_bounded(r, len, MAX_CHUNK, "chunk").await?)
        }
        b'E' => {
            let total = r.read_u64().await?;
            let mut sha256 = [0u8; 32];
            r.read_exact(&mut sha256).await?;
            Frame::End { total, sha256 }
        }
        b'X' => {
            let len = r.read_u32().await? as usize;
            let bytes = read_bounded(r, len, MAX_REASON, "reason").await?;
            Frame::Failed(String::from_utf8_lossy(&bytes).into_owned())
        }
        other => return Err(WireError::Tag(other)),
    }))
}

async fn read_bounded<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, WireError> {
    if len > max {
        return Err(WireError::TooLong { what, len, max });
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::Size(1 << 40),
            Frame::Data(vec![7; 1000]),
            Frame::Data(Vec::new()),
            Frame::End {
                total: 1000,
                sha256: [9; 32],
            },
            Frame::Failed("no such image".into()),
        ];
        let mut buf = Vec::new();
        write_request(&mut buf, "localhost/x:latest").await.unwrap();
        for f in &frames {
            write_frame(&mut buf, f).await.unwrap();
        }
        let mut r = buf.as_slice();
        assert_eq!(read_request(&mut r).await.unwrap(), "localhost/x:latest");
        for f in frames {
            assert_eq!(read_frame(&mut r).await.unwrap(), Some(f));
        }
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_and_unknown_frames_are_refused_without_allocating() {
        let mut buf = vec![b'D'];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = read_frame(&mut buf.as_slice()).await.unwrap_err();
        assert!(
            matches!(err, WireError::TooLong { what: "chunk", .. }),
            "{err}"
        );
        let err = read_frame(&mut [b'Q'].as_slice()).await.unwrap_err();
        assert!(matches!(err, WireError::Tag(b'Q')));
        let mut buf = Vec::new();
        buf.extend_from_slice(&(MAX_NAME as u32 + 1).to_be_bytes());
        assert!(read_request(&mut buf.as_slice()).await.is_err());
        // A frame cut short is an I/O error, not a clean end.
        let mut buf = vec![b'D'];
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            read_frame(&mut buf.as_slice()).await,
            Err(WireError::Io(_))
        ));
    }
}
