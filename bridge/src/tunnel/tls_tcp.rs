//! The tunnel over TLS 1.3 on TCP ([`Transport::Tls`]): the same mesh certificates and
//! identity checks as QUIC, one TCP connection per stream (bridges hold one long-lived stream
//! each), the kernel's TCP doing segmentation, acknowledgements and congestion control.
//!
//! Opening: TCP connect, TLS handshake (the server must be an agent of our mesh, its name the
//! one we dialled), then one status byte from the server once it has checked our identity:
//! [`ACCEPTED`], or [`REFUSED`] followed by the reason. TLS 1.3 finishes on the client before
//! the server has looked at the client's certificate, so a refusal arrives on that read.
//!
//! Dead peers: TCP keep-alive at the tunnel's keep-alive interval and `TCP_USER_TIMEOUT` at its
//! idle timeout end a connection to a silent peer about as fast as QUIC's idle timeout does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_certs::{PeerExpectation, Role};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info_span, warn, Instrument};

use super::handshake::{self, alert_name, ALPN};
use super::streams::{tls_pair, TcpShared};
use super::{Inner, PeerAddr, TunnelConfig};
use crate::error::{ConnectCause, Error, Result};
use crate::service;
use crate::{RecvStream, SendStream};

/// The server accepted our identity.
const ACCEPTED: u8 = b'+';
/// The server refused our identity; the reason follows.
const REFUSED: u8 = b'-';
/// The longest refusal reason read back.
const MAX_REASON: u64 = 512;

/// Which transport carries a host's tunnels to its peers. Every endpoint listens on both (UDP
/// and TCP, same port number), so hosts set to different transports still reach each other;
/// the setting picks what this host dials with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// QUIC over UDP (quinn): one connection per peer, a stream per bridge.
    Quic,
    /// TLS 1.3 over TCP (tokio-rustls): a connection per bridge stream. Faster on a LAN
    /// (`BENCHMARKS.md`, "Bridge speed"), hence the default.
    #[default]
    Tls,
}

impl Transport {
    /// The setting's value as written in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tls => "tls",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Transport, String> {
        match s {
            "quic" => Ok(Transport::Quic),
            "tls" => Ok(Transport::Tls),
            other => Err(format!(
                "unknown tunnel transport '{other}': use \"tls\" (TLS 1.3 over TCP) or \"quic\""
            )),
        }
    }
}

/// The TLS configurations of an endpoint, from the mesh certificates.
pub(crate) struct TlsSide {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

impl TlsSide {
    pub(crate) fn new(tls: &mesh_certs::MeshTls) -> Result<TlsSide> {
        let expect = PeerExpectation {
            mesh: tls.identity().mesh.clone(),
            role: Role::Agent,
        };
        Ok(TlsSide {
            acceptor: TlsAcceptor::from(tls.server_config(&[ALPN])?),
            connector: TlsConnector::from(tls.client_config(expect, &[ALPN])?),
        })
    }
}

/// The TCP listener beside the UDP endpoint, on the same port number.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// No Nagle delay; keep-alive and a user timeout from the tunnel's settings.
fn tune(tcp: &TcpStream, config: &TunnelConfig) {
    if let Err(e) = tcp.set_nodelay(true) {
        debug!("cannot set TCP_NODELAY on a tunnel: {e}");
    }
    let sock = socket2::SockRef::from(tcp);
    let interval = (config.keep_alive / 2).max(Duration::from_millis(100));
    let probes = (config
        .idle_timeout
        .saturating_sub(config.keep_alive)
        .as_millis()
        / interval.as_millis().max(1))
    .clamp(1, 32) as u32;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(config.keep_alive)
        .with_interval(interval)
        .with_retries(probes);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        debug!("cannot set TCP keep-alive on a tunnel: {e}");
    }
    if let Err(e) = sock.set_tcp_user_timeout(Some(config.idle_timeout)) {
        debug!("cannot set TCP_USER_TIMEOUT on a tunnel: {e}");
    }
}

/// Why a TLS handshake or its acceptance read failed.
fn classify(e: &io::Error, after: Duration, port: u16) -> ConnectCause {
    let rustls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls {
        Some(rustls::Error::AlertReceived(alert)) => ConnectCause::RejectedByPeer {
            detail: alert_name(u64::from(u8::from(*alert))),
        },
        Some(rustls::Error::InvalidCertificate(reason)) => ConnectCause::PeerCertificate {
            detail: format!("{reason:?}"),
        },
        Some(rustls::Error::NoCertificatesPresented) => ConnectCause::PeerCertificate {
            detail: "the peer presented no certificate".to_string(),
        },
        Some(other) => ConnectCause::Other(format!("TLS: {other}")),
        None if e.kind() == io::ErrorKind::TimedOut => ConnectCause::Unreachable {
            after,
            port,
            transport: "TCP",
        },
        None => ConnectCause::Other(e.to_string()),
    }
}

/// The identity in the certificates a TLS peer presented.
fn identity(
    certs: Option<&[CertificateDer<'static>]>,
) -> std::result::Result<(CertificateDer<'static>, mesh_certs::Identity), String> {
    let certs = certs.ok_or_else(|| "the peer presented no certificate".to_string())?;
    let leaf = certs
        .first()
        .cloned()
        .ok_or_else(|| "the peer presented no certificate".to_string())?;
    let id = mesh_certs::peer_identity(certs).map_err(|e| e.to_string())?;
    Ok((leaf, id))
}

/// Opens a stream to `peer` on a TCP connection of its own. Returns the halves and the TCP
/// connect time (one network round trip, for the tunnel's RTT figure).
pub(crate) async fn dial(
    inner: &Arc<Inner>,
    peer: &PeerAddr,
) -> Result<(SendStream, RecvStream, Duration)> {
    let timeout = inner.config.connect_timeout;
    let port = peer.addr.port();
    let fail = |cause: ConnectCause| Error::Connect {
        peer: peer.node.clone(),
        addr: peer.addr,
        cause,
    };
    let unreachable = || ConnectCause::Unreachable {
        after: timeout,
        port,
        transport: "TCP",
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(peer.addr)).await {
        Err(_) => return Err(fail(unreachable())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(fail(ConnectCause::Other(format!(
                "connection refused on TCP port {port}: is its agent running (and new enough \
                 for TLS tunnels; else set tunnel_transport = \"quic\")?"
            ))))
        }
        Ok(Err(e)) => return Err(fail(ConnectCause::Other(e.to_string()))),
        Ok(Ok(tcp)) => tcp,
    };
    let rtt = started.elapsed();
    tune(&tcp, &inner.config);
    let shared = TcpShared::new(&tcp).map_err(|e| fail(ConnectCause::Other(e.to_string())))?;
    let name = ServerName::try_from(peer.node.clone())
        .unwrap_or_else(|_| ServerName::IpAddress(peer.addr.ip().into()));
    let mut tls =
        match tokio::time::timeout_at(deadline, inner.tls.connector.connect(name, tcp)).await {
            Err(_) => return Err(fail(unreachable())),
            Ok(Err(e)) => return Err(fail(classify(&e, started.elapsed(), port))),
            Ok(Ok(tls)) => tls,
        };
    let (leaf, theirs) = identity(tls.get_ref().1.peer_certificates())
        .map_err(|detail| fail(ConnectCause::PeerCertificate { detail }))?;
    handshake::check_server_name(&theirs, &peer.node).map_err(fail)?;
    let mut status = [0u8; 1];
    match tokio::time::timeout_at(deadline, tls.read_exact(&mut status)).await {
        Err(_) => return Err(fail(unreachable())),
        Ok(Err(e)) => return Err(fail(classify(&e, started.elapsed(), port))),
        Ok(Ok(_)) if status[0] == ACCEPTED => {}
        Ok(Ok(_)) => {
            let mut reason = Vec::new();
            let mut limited = (&mut tls).take(MAX_REASON);
            let _ = tokio::time::timeout_at(deadline, limited.read_to_end(&mut reason)).await;
            return Err(fail(ConnectCause::IdentityRefused {
                reason: String::from_utf8_lossy(&reason).into_owned(),
            }));
        }
    }
    watch(inner, &shared, leaf);
    let (send, recv) = tls_pair(TlsStream::Client(tls), shared);
    Ok((send, recv, rtt))
}

/// Accepts TLS tunnel connections until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                warn!("cannot accept a TLS tunnel connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = super::handshake_slot(&inner, remote) else {
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(
            async move { accept_one(inner, tcp, remote, slot).await }
                .instrument(info_span!("accept", remote = %remote, transport = "tls")),
        );
    }
}

async fn accept_one(inner: Arc<Inner>, tcp: TcpStream, remote: SocketAddr, slot: mesh_certs::Slot) {
    tune(&tcp, &inner.config);
    let shared = match TcpShared::new(&tcp) {
        Ok(shared) => shared,
        Err(e) => {
            warn!(%remote, "cannot take a TLS tunnel connection: {e}");
            return;
        }
    };
    let timeout = inner.config.connect_timeout;
    let handshake = tokio::time::timeout(timeout, inner.tls.acceptor.accept(tcp)).await;
    drop(slot);
    let mut tls = match handshake {
        Err(_) => {
            warn!(%remote, "refused a tunnel: no TLS handshake within {timeout:?}");
            return;
        }
        Ok(Err(e)) => {
            warn!(%remote, "refused a tunnel: {}", classify(&e, Duration::ZERO, remote.port()));
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let checked = match identity(tls.get_ref().1.peer_certificates()) {
        Ok((leaf, theirs)) => match handshake::check_client(&inner.identity, &theirs) {
            Ok(()) => Ok((leaf, theirs)),
            Err(reason) => Err(reason),
        },
        Err(reason) => Err(reason),
    };
    let (leaf, theirs) = match checked {
        Ok(pair) => pair,
        Err(reason) => {
            warn!(%remote, "refused a tunnel: {reason}");
            let mut answer = vec![REFUSED];
            answer.extend_from_slice(reason.as_bytes());
            let _ = tokio::time::timeout(timeout, async {
                tls.write_all(&answer).await?;
                tls.shutdown().await
            })
            .await;
            return;
        }
    };
    let accepted = async {
        tls.write_all(&[ACCEPTED]).await?;
        tls.flush().await
    };
    if let Err(e) = accepted.await {
        debug!(%remote, peer = %theirs.name, "tunnel lost while accepting: {e}");
        return;
    }
    watch(&inner, &shared, leaf);
    let (send, recv) = tls_pair(TlsStream::Server(tls), shared);
    service::serve_stream(inner.serve.clone(), theirs.name, send, recv).await;
}

/// Aborts the connection when the endpoint closes or the peer's certificate is revoked
/// (checked every half second, as for QUIC connections); ends with the connection.
fn watch(inner: &Arc<Inner>, shared: &Arc<TcpShared>, leaf: CertificateDer<'static>) {
    let gone = shared.gone();
    let weak = Arc::downgrade(shared);
    let shutdown = inner.shutdown.clone();
    let revoked = inner.revoked.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = gone.cancelled() => return,
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if revoked.refuses_cert(&leaf) {
                        warn!("closing a tunnel: the peer's certificate was revoked");
                        break;
                    }
                }
            }
        }
        if let Some(shared) = weak.upgrade() {
            shared.abort();
        }
    });
}
