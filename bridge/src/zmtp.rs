//! A lean ZMTP 3.0 (NULL mechanism) for the REQ/REP bridge's own two ends: the ROUTER that
//! local clients connect to and the DEALERs that connect to the service. Both ends are on one
//! host (loopback or a container network), so there is nothing to encrypt there; the tunnel
//! between hosts carries the traffic encrypted.
//!
//! Why not the zeromq crate here (it stays for the other patterns): it writes every message
//! with a system call of its own and moves each through several tasks and channels; the
//! profile of the bridged path (`BENCHMARKS.md`, "Bridge speed") put those costs first. Here
//! a connection has one reader, which parses every message a read returned, and one writer,
//! which sends everything queued in one vectored write.
//!
//! What it speaks (RFC 23/ZMTP 3.0): the 64-byte greeting, the READY command with
//! `Socket-Type` and `Identity`, and frames (MORE, LONG); other commands are skipped. Peers
//! asking for another mechanism (PLAIN, CURVE) are refused with a reason.

mod sockets;

use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) use sockets::{connect_dealer, DealerSend, Router, RouterEvent};

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;
const GREETING: usize = 64;
/// Frames up to this size are copied into the write buffer with the headers; larger ones are
/// written from where they are.
const INLINE_FRAME: usize = 4 * 1024;
/// The writer gathers queued messages up to this many bytes into one write.
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

/// Why a ZMTP connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZmtpError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a ZMTP 3 peer: {0}")]
    Protocol(String),
    #[error("a frame of {size} bytes is over the limit of {max}")]
    TooLarge { size: u64, max: usize },
}

/// What the peer said about itself in its READY command.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PeerInfo {
    pub(crate) socket_type: String,
    pub(crate) identity: Bytes,
}

fn greeting(as_server: bool) -> [u8; GREETING] {
    let mut g = [0u8; GREETING];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = u8::from(as_server);
    g
}

fn check_greeting(g: &[u8; GREETING]) -> Result<(), ZmtpError> {
    if g[0] != 0xff || g[9] & 0x01 != 0x01 {
        return Err(ZmtpError::Protocol("bad greeting signature".into()));
    }
    if g[10] < 3 {
        return Err(ZmtpError::Protocol(format!(
            "the peer speaks ZMTP {}.x; 3.0 or later is needed (libzmq 4 and later)",
            g[10]
        )));
    }
    let mechanism = &g[12..32];
    let name_len = mechanism.iter().position(|b| *b == 0).unwrap_or(20);
    if &mechanism[..name_len] != b"NULL" {
        return Err(ZmtpError::Protocol(format!(
            "the peer asks for the {} mechanism; a bridge endpoint speaks NULL only (the \
             tunnel between hosts is what encrypts)",
            String::from_utf8_lossy(&mechanism[..name_len])
        )));
    }
    Ok(())
}

/// The READY command: our socket type and, for a connecting DEALER, its identity.
fn ready(socket_type: &str, identity: &[u8]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u8(5);
    body.put_slice(b"READY");
    let mut prop = |name: &str, value: &[u8]| {
        body.put_u8(name.len() as u8);
        body.put_slice(name.as_bytes());
        body.put_u32(value.len() as u32);
        body.put_slice(value);
    };
    prop("Socket-Type", socket_type.as_bytes());
    if !identity.is_empty() {
        prop("Identity", identity);
    }
    let mut out = BytesMut::with_capacity(body.len() + 9);
    put_header(&mut out, FLAG_COMMAND, body.len());
    out.put_slice(&body);
    out
}

fn parse_ready(body: &[u8]) -> Result<PeerInfo, ZmtpError> {
    let bad = |what: &str| ZmtpError::Protocol(format!("bad READY command: {what}"));
    let mut b = body;
    let name_len = usize::from(*b.first().ok_or_else(|| bad("empty"))?);
    b = &b[1..];
    if b.len() < name_len {
        return Err(bad("short name"));
    }
    let (name, mut props) = b.split_at(name_len);
    if name == b"ERROR" {
        let reason = props.get(1..).unwrap_or_default();
        return Err(ZmtpError::Protocol(format!(
            "the peer refused the connection: {}",
            String::from_utf8_lossy(reason)
        )));
    }
    if name != b"READY" {
        return Err(bad(&format!(
            "expected READY, got {}",
            String::from_utf8_lossy(name)
        )));
    }
    let mut info = PeerInfo::default();
    while !props.is_empty() {
        let n = usize::from(props[0]);
        if props.len() < 1 + n + 4 {
            return Err(bad("short property"));
        }
        let key = &props[1..1 + n];
        let len_at = 1 + n;
        let len = u32::from_be_bytes([
            props[len_at],
            props[len_at + 1],
            props[len_at + 2],
            props[len_at + 3],
        ]) as usize;
        let value_at = len_at + 4;
        if props.len() < value_at + len {
            return Err(bad("short property value"));
        }
        let value = &props[value_at..value_at + len];
        if key.eq_ignore_ascii_case(b"Socket-Type") {
            info.socket_type = String::from_utf8_lossy(value).into_owned();
        } else if key.eq_ignore_ascii_case(b"Identity") {
            info.identity = Bytes::copy_from_slice(value);
        }
        props = &props[value_at + len..];
    }
    Ok(info)
}

fn put_header(out: &mut BytesMut, flags: u8, len: usize) {
    if len > 255 {
        out.put_u8(flags | FLAG_LONG);
        out.put_u64(len as u64);
    } else {
        out.put_u8(flags);
        out.put_u8(len as u8);
    }
}

/// Greeting and READY both ways. `identity` is sent when not empty.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    socket_type: &str,
    identity: &[u8],
    as_server: bool,
    max: usize,
) -> Result<(PeerInfo, BytesMut), ZmtpError> {
    io.write_all(&greeting(as_server)).await?;
    io.flush().await?;
    let mut theirs = [0u8; GREETING];
    io.read_exact(&mut theirs).await?;
    check_greeting(&theirs)?;
    io.write_all(&ready(socket_type, identity)).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if let Some((flags, body)) = parse_frame(&mut buf, max)? {
            if flags & FLAG_COMMAND == 0 {
                return Err(ZmtpError::Protocol("a message before READY".into()));
            }
            return Ok((parse_ready(&body)?, buf));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(ZmtpError::Protocol(
                "the peer closed the connection during the handshake".into(),
            ));
        }
    }
}

/// One frame off the front of `buf`, if it holds a whole one.
fn parse_frame(buf: &mut BytesMut, max: usize) -> Result<Option<(u8, Bytes)>, ZmtpError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    let (head, len) = if flags & FLAG_LONG != 0 {
        if buf.len() < 9 {
            return Ok(None);
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&buf[1..9]);
        (9, u64::from_be_bytes(size))
    } else {
        if buf.len() < 2 {
            return Ok(None);
        }
        (2, u64::from(buf[1]))
    };
    if len > max as u64 {
        return Err(ZmtpError::TooLarge { size: len, max });
    }
    let len = len as usize;
    if buf.len() < head + len {
        buf.reserve(head + len - buf.len());
        return Ok(None);
    }
    buf.advance(head);
    Ok(Some((flags, buf.split_to(len).freeze())))
}

/// Reads whole messages from a connection after its handshake.
pub(crate) struct MessageReader<R> {
    io: R,
    buf: BytesMut,
    max: usize,
    partial: Vec<Bytes>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// `buf` holds what the handshake read past the peer's READY.
    pub(crate) fn new(io: R, buf: BytesMut, max: usize) -> MessageReader<R> {
        MessageReader {
            io,
            buf,
            max,
            partial: Vec::new(),
        }
    }

    /// A whole message already read, if there is one (no I/O).
    pub(crate) fn buffered(&mut self) -> Result<Option<Vec<Bytes>>, ZmtpError> {
        while let Some((flags, body)) = parse_frame(&mut self.buf, self.max)? {
            if flags & FLAG_COMMAND != 0 {
                continue;
            }
            self.partial.push(body);
            if flags & FLAG_MORE == 0 {
                return Ok(Some(std::mem::take(&mut self.partial)));
            }
        }
        Ok(None)
    }

    /// The next message, or `None` when the peer closed the connection between messages.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Bytes>>, ZmtpError> {
        loop {
            if let Some(message) = self.buffered()? {
                return Ok(Some(message));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() && self.partial.is_empty() {
                    return Ok(None);
                }
                return Err(ZmtpError::Protocol(
                    "the peer closed the connection inside a message".into(),
                ));
            }
        }
    }
}

/// Messages encoded for one write: headers and small frames in one buffer, large frames by
/// reference, in order.
#[derive(Default)]
pub(crate) struct WriteBatch {
    buf: BytesMut,
    chunks: VecDeque<Bytes>,
    pub(crate) bytes: usize,
}

impl WriteBatch {
    pub(crate) fn push(&mut self, frames: &[Bytes]) {
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            let flags = if i + 1 < n { FLAG_MORE } else { 0 };
            if self.buf.capacity() - self.buf.len() < 9 + INLINE_FRAME {
                self.buf.reserve(64 * 1024);
            }
            put_header(&mut self.buf, flags, f.len());
            if f.len() <= INLINE_FRAME {
                self.buf.put_slice(f);
            } else {
                self.seal();
                self.chunks.push_back(f.clone());
            }
            self.bytes += 9 + f.len();
        }
    }

    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.chunks.push_back(self.buf.split().freeze());
        }
    }

    /// Writes everything batched (vectored writes) and empties the batch.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        self.seal();
        while !self.chunks.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .chunks
                .iter()
                .take(64)
                .map(|c| IoSlice::new(c))
                .collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let Some(front) = self.chunks.front_mut() else {
                    break;
                };
                if n >= front.len() {
                    n -= front.len();
                    self.chunks.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        self.bytes = 0;
        w.flush().await
    }
}

#[cfg(test)]
mod tests;
