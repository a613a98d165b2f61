//! The two halves of a tunnel stream, whichever transport carries it: a QUIC stream on the
//! peer's connection, or a TCP connection of its own with TLS 1.3 on it
//! ([`Transport::Tls`](crate::Transport)). Bridges, channels and volume replication see only
//! these types.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A TLS session on TCP, either side.
pub(crate) type TlsTcp = tokio_rustls::TlsStream<TcpStream>;

/// How long finishing a TLS stream may wait for the peer to take what is still queued.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What both halves of one TLS connection share: a second handle on the socket, to abort it,
/// and a token cancelled once both halves are gone (the revocation watcher ends with it).
pub(crate) struct TcpShared {
    socket: socket2::Socket,
    gone: CancellationToken,
}

impl TcpShared {
    /// Shares `tcp`'s socket (a duplicate descriptor, so aborting needs no access to the
    /// halves).
    pub(crate) fn new(tcp: &TcpStream) -> io::Result<Arc<TcpShared>> {
        use std::os::fd::AsFd;
        let fd = tcp.as_fd().try_clone_to_owned()?;
        Ok(Arc::new(TcpShared {
            socket: socket2::Socket::from(fd),
            gone: CancellationToken::new(),
        }))
    }

    /// Ends the connection at once in both directions; both halves see an error or the end.
    pub(crate) fn abort(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Cancelled once both halves are dropped.
    pub(crate) fn gone(&self) -> CancellationToken {
        self.gone.clone()
    }
}

impl Drop for TcpShared {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

/// Splits a TLS connection into tunnel stream halves.
pub(crate) fn tls_pair(tls: TlsTcp, shared: Arc<TcpShared>) -> (SendStream, RecvStream) {
    let (read, write) = tokio::io::split(tls);
    (
        SendStream(Send::Tls {
            half: write,
            shared: shared.clone(),
            finished: false,
        }),
        RecvStream(Recv::Tls {
            half: read,
            _shared: shared,
        }),
    )
}

/// The sending half of a tunnel stream.
pub struct SendStream(Send);

enum Send {
    Quic(quinn::SendStream),
    Tls {
        half: WriteHalf<TlsTcp>,
        shared: Arc<TcpShared>,
        finished: bool,
    },
}

impl From<quinn::SendStream> for SendStream {
    fn from(s: quinn::SendStream) -> SendStream {
        SendStream(Send::Quic(s))
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Send::Quic(_) => "SendStream(quic)",
            Send::Tls { .. } => "SendStream(tls)",
        })
    }
}

impl SendStream {
    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Send::Quic(s) => s.write_all(buf).await.map_err(io::Error::from),
            Send::Tls { half, .. } => {
                half.write_all(buf).await?;
                half.flush().await
            }
        }
    }

    /// Writes every chunk, in order, and pushes them out.
    pub async fn write_all_chunks(&mut self, chunks: &mut [Bytes]) -> io::Result<()> {
        match &mut self.0 {
            Send::Quic(s) => s
                .write_all_chunks(chunks)
                .await
                .map_err(|e| io::Error::other(e.to_string())),
            Send::Tls { half, .. } => {
                for chunk in chunks.iter() {
                    half.write_all(chunk).await?;
                }
                half.flush().await
            }
        }
    }

    /// Ends the stream after what was written: the peer reads to the end, then sees it end.
    pub async fn finish(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Send::Quic(s) => s
                .finish()
                .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e)),
            Send::Tls { half, finished, .. } => {
                if *finished {
                    return Ok(());
                }
                *finished = true;
                match tokio::time::timeout(FINISH_TIMEOUT, half.shutdown()).await {
                    Ok(result) => result,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer took nothing for 5 s while the stream was finishing",
                    )),
                }
            }
        }
    }

    /// Abandons the stream: the peer's reads fail instead of ending cleanly.
    pub fn reset(&mut self, code: u32) {
        match &mut self.0 {
            Send::Quic(s) => {
                let _ = s.reset(quinn::VarInt::from_u32(code));
            }
            Send::Tls {
                shared, finished, ..
            } => {
                *finished = true;
                shared.abort();
            }
        }
    }

    /// Waits until the peer no longer needs the stream (QUIC: it read or stopped it; TLS:
    /// what was written is with the kernel already, so at once).
    pub async fn stopped(&mut self) {
        if let Send::Quic(s) = &mut self.0 {
            let _ = s.stopped().await;
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Send::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
            Send::Tls { half, .. } => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Send::Quic(s) => Pin::new(s).poll_flush(cx),
            Send::Tls { half, .. } => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Send::Quic(s) => Pin::new(s).poll_shutdown(cx),
            Send::Tls { half, finished, .. } => {
                let done = Pin::new(half).poll_shutdown(cx);
                if done.is_ready() {
                    *finished = true;
                }
                done
            }
        }
    }
}

impl Drop for SendStream {
    /// A TLS stream dropped without [`SendStream::finish`] ends its direction of the
    /// connection without a TLS close, which the peer reads as an error (a QUIC stream dropped
    /// unfinished is finished by quinn).
    fn drop(&mut self) {
        if let Send::Tls {
            shared, finished, ..
        } = &self.0
        {
            if !*finished {
                let _ = shared.socket.shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

/// The receiving half of a tunnel stream.
pub struct RecvStream(Recv);

enum Recv {
    Quic(quinn::RecvStream),
    Tls {
        half: ReadHalf<TlsTcp>,
        _shared: Arc<TcpShared>,
    },
}

impl From<quinn::RecvStream> for RecvStream {
    fn from(s: quinn::RecvStream) -> RecvStream {
        RecvStream(Recv::Quic(s))
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Recv::Quic(_) => "RecvStream(quic)",
            Recv::Tls { .. } => "RecvStream(tls)",
        })
    }
}

/// Why [`RecvStream::read_exact`] could not fill its buffer.
#[derive(Debug, thiserror::Error)]
pub enum ReadExactError {
    /// The stream ended cleanly after this many of the bytes (0: at a boundary).
    #[error("the stream ended after {0} bytes of a read")]
    FinishedEarly(usize),
    /// The stream failed.
    #[error(transparent)]
    Read(#[from] io::Error),
}

impl RecvStream {
    /// Fills `buf`, or says how far it got before the stream ended.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadExactError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read(&mut buf[filled..]).await {
                Ok(0) => return Err(ReadExactError::FinishedEarly(filled)),
                Ok(n) => filled += n,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl RecvStream {
    /// Everything up to the end of the stream, refused beyond `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let read = AsyncReadExt::take(&mut *self, limit as u64 + 1)
            .read_to_end(&mut out)
            .await?;
        if read > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the stream holds more than {limit} bytes"),
            ));
        }
        Ok(out)
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Recv::Quic(s) => Pin::new(s).poll_read(cx, buf),
            Recv::Tls { half, .. } => Pin::new(half).poll_read(cx, buf),
        }
    }
}
