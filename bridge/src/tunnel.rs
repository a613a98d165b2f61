//! The tunnel between agents: one QUIC endpoint per agent, mutual TLS with the mesh
//! certificates, and at most one live connection per peer agent, reconnected on demand with
//! capped backoff.
//!
//! Both sides of a connection serve streams: an agent that dialled a peer also answers bridge
//! streams the peer opens on that connection, and a connection accepted from a peer is reused
//! when we need to reach that peer. So two agents normally share one connection, whoever
//! dialled first.

mod handshake;
mod streams;
mod tls_tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_backoff::Backoff;
use mesh_certs::{Identity, MeshTls, Role};
use quinn::{Connection, VarInt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::channel::Channels;
use crate::error::{ConnectCause, Error, Result};
use crate::frame::DEFAULT_MAX_RECORD;
use crate::service::{self, Exports, ServeCtx};

pub use handshake::ALPN;
use handshake::{CLOSE_REFUSED, CLOSE_SHUTDOWN};
pub use streams::{ReadExactError, RecvStream, SendStream};
pub use tls_tcp::Transport;

/// Settings of a tunnel endpoint.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    /// UDP address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// How often an idle connection sends a keep-alive.
    pub keep_alive: Duration,
    /// A connection with no traffic (keep-alives included) for this long is dead.
    pub idle_timeout: Duration,
    /// How long a connection attempt may take, handshake and identity checks included.
    pub connect_timeout: Duration,
    /// Delay between failed connection attempts to the same peer.
    pub backoff: Backoff,
    /// Largest record on a stream (bounds the largest ZeroMQ message).
    pub max_record: usize,
    /// What this endpoint dials peers with (it accepts both).
    pub transport: Transport,
}

impl TunnelConfig {
    /// Defaults for a LAN: keep-alive every 2 s, dead after 10 s of silence.
    pub fn new(bind: SocketAddr) -> TunnelConfig {
        TunnelConfig {
            bind,
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            max_record: DEFAULT_MAX_RECORD,
            transport: Transport::default(),
        }
    }
}

/// Where to reach a peer agent: its node name (checked against its certificate) and the UDP
/// address of its tunnel endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The peer's node name, the NAME of `spiffe://MESH/agent/NAME`.
    pub node: String,
    /// The peer's tunnel endpoint.
    pub addr: SocketAddr,
}

/// One peer's connection state; its async mutex makes connection attempts single-flight.
#[derive(Default)]
struct Slot {
    conn: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    last_kind: crate::error::FailureKind,
    /// Connections dialled successfully to this peer (TLS: counted when the last dial to it
    /// had failed or there was none).
    connects: u64,
    /// TLS transport: the last dial to this peer worked, and its TCP connect time.
    tls_up: Option<Duration>,
}

impl Slot {
    /// While a failed attempt's backoff runs: the error saying so, naming the last failure.
    fn check_backoff(&self, peer: &PeerAddr) -> Result<()> {
        let now = Instant::now();
        match self.retry_at.filter(|at| *at > now) {
            Some(at) => Err(Error::BackingOff {
                peer: peer.node.clone(),
                addr: peer.addr,
                last: self.last_error.clone(),
                last_kind: self.last_kind,
                retry_in: at - now,
            }),
            None => Ok(()),
        }
    }

    /// Records a failed attempt and when the next may be made.
    fn failed(&mut self, e: &Error, backoff: &Backoff) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(Instant::now() + backoff.delay(self.failures));
        self.last_error = e.to_string();
        self.last_kind = e.kind();
    }

    /// The live QUIC connection's round trip, else the last TLS dial's TCP connect time.
    fn rtt(&self) -> Option<Duration> {
        self.conn
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .map(Connection::rtt)
            .or(self.tls_up)
    }
}

/// One peer's tunnel as this host dials it, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelStat {
    pub peer: String,
    /// The live connection's round trip (none without one).
    pub rtt: Option<Duration>,
    /// Connections dialled after the first: each one replaced a lost one.
    pub reconnects: u64,
    /// Dial attempts that failed since the last one that worked.
    pub failures: u32,
}

struct Inner {
    endpoint: quinn::Endpoint,
    identity: Identity,
    client: quinn::ClientConfig,
    /// TLS-over-TCP configurations (the TCP listener beside the UDP endpoint).
    tls: tls_tcp::TlsSide,
    config: TunnelConfig,
    peers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    serve: Arc<ServeCtx>,
    shutdown: CancellationToken,
    /// QUIC handshakes under way, bounded in all and per peer address.
    handshakes: mesh_certs::HandshakeSlots,
    /// Handshakes refused by those bounds.
    handshakes_refused: std::sync::atomic::AtomicU64,
    /// Revoked serials (from the directory): new handshakes refuse them in
    /// TLS; connections already open to or from them are closed.
    revoked: Arc<mesh_certs::Revocations>,
}

/// This agent's tunnel endpoint and its connections to peer agents. Cheap to clone.
#[derive(Clone)]
pub struct Tunnels {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("identity", &self.inner.identity.uri())
            .field("addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Tunnels {
    /// Binds the endpoint and starts accepting tunnels from peer agents. Needs an agent
    /// certificate. Must be called inside a tokio runtime.
    pub fn bind(tls: &MeshTls, config: TunnelConfig) -> Result<Tunnels> {
        let identity = tls.identity().clone();
        if identity.role != Role::Agent {
            return Err(Error::NotAnAgent {
                identity: identity.uri(),
            });
        }
        let server = handshake::server_config(tls, &config)?;
        let client = handshake::client_config(tls, &config)?;
        let bind_error = |source| Error::Bind {
            addr: config.bind,
            source,
        };
        let tls_side = tls_tcp::TlsSide::new(tls)?;
        let (socket, listener) = bind_pair(config.bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_error(std::io::Error::other("no tokio runtime")))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(bind_error)?;
        let serve = Arc::new(ServeCtx {
            exports: Exports::default(),
            max_record: config.max_record,
            node: identity.name.clone(),
            channels: Channels::default(),
        });
        let inner = Arc::new(Inner {
            endpoint,
            identity,
            client,
            tls: tls_side,
            config,
            peers: Mutex::new(HashMap::new()),
            serve,
            shutdown: CancellationToken::new(),
            handshakes: mesh_certs::HandshakeSlots::default(),
            handshakes_refused: Default::default(),
            revoked: tls.revocations().clone(),
        });
        let span = info_span!("tunnel", node = %inner.identity.name);
        tokio::spawn(accept_loop(inner.clone()).instrument(span.clone()));
        tokio::spawn(tls_tcp::accept_loop(inner.clone(), listener).instrument(span));
        Ok(Tunnels { inner })
    }

    /// The UDP address the endpoint listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|source| Error::Bind {
                addr: self.inner.config.bind,
                source,
            })
    }

    /// Our own node name.
    pub fn node(&self) -> &str {
        &self.inner.identity.name
    }

    /// The services this agent serves to bridges on other agents.
    pub fn exports(&self) -> &Exports {
        &self.inner.serve.exports
    }

    /// The channel handlers served on this endpoint.
    pub(crate) fn channels(&self) -> &Channels {
        &self.inner.serve.channels
    }

    /// The largest record on a stream.
    pub fn max_record(&self) -> usize {
        self.inner.config.max_record
    }

    /// The live connection to `peer`, dialling it if there is none. While a previous attempt's
    /// backoff runs, fails at once with [`Error::BackingOff`].
    pub async fn connect(&self, peer: &PeerAddr) -> Result<Connection> {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        slot.check_backoff(peer)?;
        match self.dial(peer).await {
            Ok(conn) => {
                tokio::spawn(close_when_revoked(conn.clone(), self.inner.revoked.clone()));
                slot.conn = Some(conn.clone());
                slot.connects += 1;
                slot.failures = 0;
                slot.retry_at = None;
                Ok(conn)
            }
            Err(e) => {
                slot.failed(&e, &self.inner.config.backoff);
                Err(e)
            }
        }
    }

    /// What this endpoint dials peers with.
    pub fn transport(&self) -> Transport {
        self.inner.config.transport
    }

    /// The protocol and port a peer's tunnel endpoint must have open, for messages:
    /// "UDP" (QUIC) or "TCP" (TLS).
    pub fn port_protocol(&self) -> &'static str {
        match self.inner.config.transport {
            Transport::Quic => "UDP",
            Transport::Tls => "TCP",
        }
    }

    /// Checks that a tunnel to `peer` opens with this endpoint's transport, as bridges would
    /// open it; returns its round trip (QUIC's estimate, or the TCP connect time).
    pub async fn check(&self, peer: &PeerAddr) -> Result<Duration> {
        let started = Instant::now();
        match self.inner.config.transport {
            Transport::Quic => {
                let conn = self.connect(peer).await?;
                Ok(conn.rtt())
            }
            Transport::Tls => {
                let (mut send, _recv) = self.open_tls_stream(peer).await?;
                let _ = send.finish().await;
                Ok(self.rtt(&peer.node).unwrap_or_else(|| started.elapsed()))
            }
        }
    }

    /// This peer's connection slot.
    fn slot(&self, peer: &PeerAddr) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut peers = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.entry(peer.node.clone()).or_default().clone()
    }

    /// A new bidirectional stream to `peer`: with QUIC on the existing connection or a new
    /// one, with TLS on a TCP connection of its own.
    pub async fn open_stream(&self, peer: &PeerAddr) -> Result<(SendStream, RecvStream)> {
        if self.inner.config.transport == Transport::Tls {
            return self.open_tls_stream(peer).await;
        }
        let conn = self.connect(peer).await?;
        let (send, recv) = match conn.open_bi().await {
            Ok(pair) => pair,
            // The connection died between the check and the open: one fresh attempt.
            Err(_) => {
                let conn = self.connect(peer).await?;
                conn.open_bi()
                    .await
                    .map_err(|e| Error::stream(&peer.node, format!("cannot open a stream: {e}")))?
            }
        };
        Ok((send.into(), recv.into()))
    }

    /// [`Tunnels::open_stream`] over TLS on TCP, with the same backoff as QUIC dials.
    async fn open_tls_stream(&self, peer: &PeerAddr) -> Result<(SendStream, RecvStream)> {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        slot.check_backoff(peer)?;
        match tls_tcp::dial(&self.inner, peer).await {
            Ok((send, recv, rtt)) => {
                if slot.tls_up.is_none() {
                    info!(peer = %peer.node, addr = %peer.addr, "tunnel up (TLS over TCP)");
                    slot.connects += 1;
                }
                slot.tls_up = Some(rtt);
                slot.failures = 0;
                slot.retry_at = None;
                Ok((send, recv))
            }
            Err(e) => {
                slot.tls_up = None;
                slot.failed(&e, &self.inner.config.backoff);
                Err(e)
            }
        }
    }

    /// Round-trip time of the live connection to `peer`, if there is one.
    pub fn rtt(&self, node: &str) -> Option<Duration> {
        let peers = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = peers.get(node)?.try_lock().ok()?;
        slot.rtt()
    }

    /// Every peer this host has dialled: round trip, reconnects, failures.
    /// A peer whose slot is busy (a dial under way) is left out this time.
    pub fn stats(&self) -> Vec<TunnelStat> {
        let peers = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out: Vec<TunnelStat> = peers
            .iter()
            .filter_map(|(peer, slot)| {
                let slot = slot.try_lock().ok()?;
                Some(TunnelStat {
                    peer: peer.clone(),
                    rtt: slot.rtt(),
                    reconnects: slot.connects.saturating_sub(1),
                    failures: slot.failures,
                })
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
        self.inner
            .endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"agent shutting down");
    }

    /// Waits until every connection has finished closing after [`Tunnels::close`].
    pub async fn wait_closed(&self) {
        self.inner.endpoint.wait_idle().await;
    }

    async fn dial(&self, peer: &PeerAddr) -> Result<Connection> {
        let inner = &self.inner;
        let timeout = inner.config.connect_timeout;
        let fail = |cause: ConnectCause| Error::Connect {
            peer: peer.node.clone(),
            addr: peer.addr,
            cause,
        };
        let connecting = inner
            .endpoint
            .connect_with(inner.client.clone(), peer.addr, &peer.node)
            .map_err(|e| fail(ConnectCause::Other(e.to_string())))?;
        let started = Instant::now();
        let unreachable = || ConnectCause::Unreachable {
            after: timeout,
            port: peer.addr.port(),
            transport: "UDP",
        };
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(fail(unreachable())),
            Ok(Err(e)) => {
                return Err(fail(handshake::classify(
                    &e,
                    started.elapsed(),
                    peer.addr.port(),
                )))
            }
            Ok(Ok(conn)) => conn,
        };
        let theirs = handshake::peer_identity(&conn)
            .map_err(|detail| fail(ConnectCause::PeerCertificate { detail }))?;
        if let Err(cause) = handshake::check_server_name(&theirs, &peer.node) {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"not the agent we dialled");
            return Err(fail(cause));
        }
        // TLS 1.3 finishes on the client before the server has checked our certificate: wait
        // for the server's explicit acceptance so a refusal surfaces here, with its reason.
        let accepted = async {
            let mut uni = conn.accept_uni().await?;
            let _ = uni.read_to_end(64).await;
            Ok::<(), quinn::ConnectionError>(())
        };
        match tokio::time::timeout(timeout, accepted).await {
            Err(_) => {
                conn.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"no acceptance");
                return Err(fail(unreachable()));
            }
            Ok(Err(e)) => {
                return Err(fail(handshake::classify(
                    &e,
                    started.elapsed(),
                    peer.addr.port(),
                )))
            }
            Ok(Ok(())) => {}
        }
        info!(peer = %peer.node, addr = %peer.addr, "tunnel up");
        spawn_serving(self.inner.clone(), conn.clone(), peer.node.clone());
        Ok(conn)
    }
}

/// Socket buffers asked for on the tunnel's UDP socket. The kernel's default (about 200 KiB)
/// overflows while a burst of 64 KiB messages arrives faster than the endpoint task drains it,
/// and every datagram dropped there costs a retransmission and a congestion-window cut
/// (`bridge/bench-netns.sh`: about 200 `RcvbufErrors` per host per round with the default
/// buffers, none with these; 64 KiB pipelined throughput up by about 30%). The kernel caps the
/// request at `net.core.rmem_max` / `wmem_max`; with the stock 208 KiB cap (416 KiB granted)
/// drops remain and about half of that gain is had.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// Below this (as the kernel reports it, twice what was granted), say how to allow more.
const SOCKET_BUFFER_LOW: usize = 1024 * 1024;

/// The UDP socket and the TCP listener on the same port number: the port picked for UDP
/// when `bind` asks for any (a few tries, in case that number is taken on TCP).
fn bind_pair(bind: SocketAddr) -> Result<(std::net::UdpSocket, tokio::net::TcpListener)> {
    let tries = if bind.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let socket = udp_socket(bind).map_err(|source| Error::Bind { addr: bind, source })?;
        let addr = socket
            .local_addr()
            .map_err(|source| Error::Bind { addr: bind, source })?;
        match tls_tcp::listen(addr) {
            Ok(listener) => return Ok((socket, listener)),
            Err(source) => last = Some(Error::BindTcp { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| Error::BindTcp {
        addr: bind,
        source: std::io::Error::other("no port"),
    }))
}

/// The tunnel's UDP socket, bound to `bind`, with large send and receive buffers where the
/// kernel allows them.
fn udp_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Best effort: a smaller buffer only costs throughput.
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER) {
        debug!("cannot enlarge the tunnel's UDP receive buffer: {e}");
    }
    if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER) {
        debug!("cannot enlarge the tunnel's UDP send buffer: {e}");
    }
    match state.recv_buffer_size((&socket).into()) {
        Ok(recv) if recv < SOCKET_BUFFER_LOW => info!(
            "the tunnel's UDP receive buffer is {} KiB: bursts of large messages may be dropped \
             and resent; allow more with sysctl -w net.core.rmem_max={SOCKET_BUFFER}",
            recv / 1024
        ),
        Ok(recv) => debug!(recv, "tunnel UDP receive buffer"),
        Err(e) => debug!("cannot read the tunnel's UDP receive buffer size: {e}"),
    }
    Ok(socket)
}

/// Closes `conn` within half a second of its peer's certificate being
/// revoked (the list arrives with the directory).
async fn close_when_revoked(conn: Connection, revoked: Arc<mesh_certs::Revocations>) {
    let leaf = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().cloned());
    let Some(leaf) = leaf else { return };
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if revoked.refuses_cert(&leaf) {
            warn!(remote = %conn.remote_address(), "closing a tunnel: the peer's certificate was revoked");
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"certificate revoked");
            return;
        }
    }
}

/// A slot for a handshake from `remote` within the bounds, or `None` (counted, and logged
/// at each power of two).
fn handshake_slot(inner: &Inner, remote: SocketAddr) -> Option<mesh_certs::Slot> {
    match inner.handshakes.take(remote.ip()) {
        Ok(slot) => Some(slot),
        Err(hit) => {
            let n = inner
                .handshakes_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_power_of_two() {
                warn!(%remote, limit = hit.label(), refused = n + 1, "refusing tunnel handshakes beyond the limits");
            }
            None
        }
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            incoming = inner.endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        let remote = incoming.remote_address();
        let Some(slot) = handshake_slot(&inner, remote) else {
            incoming.refuse();
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(
            async move { accept_one(inner, incoming, slot).await }
                .instrument(info_span!("accept", remote = %remote)),
        );
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming, slot: mesh_certs::Slot) {
    let remote = incoming.remote_address();
    let handshake = incoming.await;
    drop(slot);
    let conn = match handshake {
        Ok(conn) => conn,
        Err(e) => {
            let cause = handshake::classify(&e, Duration::ZERO, remote.port());
            warn!(%remote, "refused a tunnel: {cause}");
            return;
        }
    };
    let theirs = match handshake::peer_identity(&conn) {
        Ok(id) => id,
        Err(reason) => {
            warn!(%remote, "refused a tunnel: {reason}");
            conn.close(VarInt::from_u32(CLOSE_REFUSED), reason.as_bytes());
            return;
        }
    };
    if let Err(reason) = handshake::check_client(&inner.identity, &theirs) {
        warn!(%remote, peer = %theirs, "refused a tunnel: {reason}");
        conn.close(VarInt::from_u32(CLOSE_REFUSED), reason.as_bytes());
        return;
    }
    let accepted = async {
        let mut uni = conn.open_uni().await.map_err(|e| e.to_string())?;
        uni.write_all(b"ok").await.map_err(|e| e.to_string())?;
        uni.finish().map_err(|e| e.to_string())
    };
    if let Err(e) = accepted.await {
        debug!(%remote, peer = %theirs.name, "tunnel lost while accepting: {e}");
        return;
    }
    info!(%remote, peer = %theirs.name, "tunnel accepted");
    tokio::spawn(close_when_revoked(conn.clone(), inner.revoked.clone()));
    // Reuse this connection for our own streams to that peer unless we already have one.
    let slot = {
        let mut peers = inner
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.entry(theirs.name.clone()).or_default().clone()
    };
    if let Ok(mut slot) = slot.try_lock() {
        if slot
            .conn
            .as_ref()
            .is_none_or(|c| c.close_reason().is_some())
        {
            slot.conn = Some(conn.clone());
            slot.failures = 0;
            slot.retry_at = None;
        }
    }
    spawn_serving(inner, conn, theirs.name);
}

/// Answers the bridge streams `peer` opens on `conn` until the connection ends.
fn spawn_serving(inner: Arc<Inner>, conn: Connection, peer: String) {
    let span = info_span!("tunnel", peer = %peer);
    tokio::spawn(
        async move {
            loop {
                let (send, recv) = tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    next = conn.accept_bi() => match next {
                        Ok(pair) => pair,
                        Err(e) => {
                            info!("tunnel closed: {e}");
                            return;
                        }
                    },
                };
                let ctx = inner.serve.clone();
                let peer = peer.clone();
                tokio::spawn(service::serve_stream(ctx, peer, send.into(), recv.into()));
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::handshake::*;
    use mesh_certs::{Identity, Role};

    #[test]
    fn client_checks() {
        let ours = Identity::new("home", Role::Agent, "mainpc").expect("id");
        let ok = Identity::new("home", Role::Agent, "pc2").expect("id");
        assert!(check_client(&ours, &ok).is_ok());
        let other_mesh = Identity::new("lab", Role::Agent, "pc2").expect("id");
        let e = check_client(&ours, &other_mesh).expect_err("mesh");
        assert!(e.contains("mesh 'lab'"), "{e}");
        let admin = Identity::new("home", Role::Admin, "ops").expect("id");
        let e = check_client(&ours, &admin).expect_err("role");
        assert!(e.contains("only agents"), "{e}");
        let e = check_server_name(&ok, "pc3").expect_err("name");
        assert!(e.to_string().contains("expected pc3"), "{e}");
    }
}
