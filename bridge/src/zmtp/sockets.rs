//! The two sockets the REQ/REP bridge needs, over [`super`]'s framing: a ROUTER that binds
//! (the bridge's local endpoint) and a DEALER that connects (to the service).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use super::{handshake, MessageReader, WriteBatch, ZmtpError, BATCH_BYTES};

/// How long a local peer may take over its greeting and READY.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one connection's writer.
const QUEUE: usize = 1024;

/// Socket types a ROUTER talks to.
const ROUTER_PEERS: [&str; 3] = ["REQ", "DEALER", "ROUTER"];
/// Socket types a DEALER talks to.
const DEALER_PEERS: [&str; 3] = ["REP", "DEALER", "ROUTER"];

type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// What the ROUTER reports.
pub(crate) enum RouterEvent {
    /// A message from a local client, its routing identity first.
    Message(Vec<Bytes>),
    /// The client with this identity disconnected.
    Gone(Bytes),
}

struct PeerSlot {
    conn: u64,
    tx: mpsc::Sender<Vec<Bytes>>,
}

/// The sending side of a bound ROUTER. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Router {
    peers: Arc<Mutex<HashMap<Bytes, PeerSlot>>>,
}

impl Router {
    /// Binds `endpoint` (`tcp://IP:PORT`, port 0 for any) and accepts local clients until
    /// `shutdown`; their messages and departures go to `events`. Returns the bound endpoint.
    pub(crate) async fn bind(
        endpoint: &str,
        events: mpsc::Sender<RouterEvent>,
        shutdown: CancellationToken,
        max: usize,
    ) -> Result<(Router, String), String> {
        let addr = endpoint
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("'{endpoint}' is not tcp://IP:PORT"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("'{endpoint}' is not tcp://IP:PORT ({e})"))?;
        let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let router = Router {
            peers: Arc::default(),
        };
        tokio::spawn(
            accept_loop(router.clone(), listener, events, shutdown, max).in_current_span(),
        );
        Ok((router, format!("tcp://{bound}")))
    }

    /// Sends `frames` (routing identity first) to that client. An unknown identity (the
    /// client left) is an error.
    pub(crate) async fn send(&self, mut frames: Vec<Bytes>) -> Result<(), String> {
        if frames.len() < 2 {
            return Err("a message needs an identity and a body".into());
        }
        let identity = frames.remove(0);
        let tx = {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.get(&identity).map(|slot| slot.tx.clone())
        };
        let tx = tx.ok_or_else(|| {
            format!(
                "no local client with identity {:?}",
                String::from_utf8_lossy(&identity)
            )
        })?;
        tx.send(frames)
            .await
            .map_err(|_| "the local client disconnected".to_string())
    }
}

async fn accept_loop(
    router: Router,
    listener: TcpListener,
    events: mpsc::Sender<RouterEvent>,
    shutdown: CancellationToken,
    max: usize,
) {
    let next_id = Arc::new(AtomicU32::new(1));
    let mut conn = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!("local endpoint: cannot accept a client: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        conn += 1;
        let (router, events, shutdown, next_id) = (
            router.clone(),
            events.clone(),
            shutdown.clone(),
            next_id.clone(),
        );
        tokio::spawn(
            async move {
                if let Err(e) =
                    serve_client(router, tcp, conn, events, shutdown, next_id, max).await
                {
                    debug!(%remote, "local client connection ended: {e}");
                }
            }
            .in_current_span(),
        );
    }
}

async fn serve_client(
    router: Router,
    mut tcp: TcpStream,
    conn: u64,
    events: mpsc::Sender<RouterEvent>,
    shutdown: CancellationToken,
    next_id: Arc<AtomicU32>,
    max: usize,
) -> Result<(), ZmtpError> {
    let _ = tcp.set_nodelay(true);
    let (peer, buf) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut tcp, "ROUTER", &[], true, max),
    )
    .await
    .map_err(|_| ZmtpError::Protocol("no handshake within 5 s".into()))??;
    if !ROUTER_PEERS.contains(&peer.socket_type.as_str()) {
        return Err(ZmtpError::Protocol(format!(
            "a {} socket cannot talk to a ROUTER (REQ, DEALER or ROUTER can)",
            peer.socket_type
        )));
    }
    // libzmq's ROUTER names anonymous peers with a zero byte and a counter.
    let identity = if peer.identity.is_empty() || peer.identity[0] == 0 {
        let n = next_id.fetch_add(1, Ordering::Relaxed);
        let mut id = vec![0u8];
        id.extend_from_slice(&n.to_be_bytes());
        Bytes::from(id)
    } else {
        peer.identity.clone()
    };
    let (read, write) = tcp.into_split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let replaced = {
        let mut peers = router.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .insert(identity.clone(), PeerSlot { conn, tx })
            .is_some()
    };
    if replaced {
        warn!(
            identity = %String::from_utf8_lossy(&identity),
            "a second local client connected with an identity already in use; it now receives \
             that identity's replies"
        );
    }
    tokio::spawn(write_loop(Box::pin(write), rx).in_current_span());
    let mut reader = MessageReader::new(read, buf, max);
    let result = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = reader.next() => next,
        };
        match next {
            Ok(Some(frames)) => {
                let mut msg = Vec::with_capacity(frames.len() + 1);
                msg.push(identity.clone());
                msg.extend(frames);
                if events.send(RouterEvent::Message(msg)).await.is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let ours = {
        let mut peers = router.peers.lock().unwrap_or_else(|p| p.into_inner());
        let ours = peers.get(&identity).is_some_and(|slot| slot.conn == conn);
        if ours {
            peers.remove(&identity);
        }
        ours
    };
    if ours {
        let _ = events.send(RouterEvent::Gone(identity)).await;
    }
    result
}

/// Writes what is queued, batching every message waiting into one write; ends when the queue
/// closes or a write fails.
async fn write_loop(mut w: BoxWrite, mut rx: mpsc::Receiver<Vec<Bytes>>) {
    let mut batch = WriteBatch::default();
    while let Some(first) = rx.recv().await {
        batch.push(&first);
        while batch.bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => batch.push(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = batch.write_to(&mut w).await {
            debug!("ZMTP write failed: {e}");
            return;
        }
    }
}

/// The sending side of a DEALER; dropping it closes the connection's sending direction.
pub(crate) struct DealerSend {
    tx: mpsc::Sender<Vec<Bytes>>,
}

impl DealerSend {
    pub(crate) async fn send(&self, frames: Vec<Bytes>) -> Result<(), String> {
        self.tx
            .send(frames)
            .await
            .map_err(|_| "the connection to the service is closed".to_string())
    }
}

/// A DEALER with routing identity `identity`, connected to `endpoint` (`tcp://HOST:PORT` or
/// `ipc://PATH`): its sending side and its reader.
pub(crate) async fn connect_dealer(
    endpoint: &str,
    identity: &[u8],
    timeout: Duration,
    max: usize,
) -> Result<(DealerSend, MessageReader<BoxRead>), String> {
    let connected = tokio::time::timeout(timeout, async {
        let (mut read, mut write): (BoxRead, BoxWrite) =
            if let Some(addr) = endpoint.strip_prefix("tcp://") {
                let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let _ = tcp.set_nodelay(true);
                let (r, w) = tcp.into_split();
                (Box::pin(r), Box::pin(w))
            } else if let Some(path) = endpoint.strip_prefix("ipc://") {
                let unix = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| e.to_string())?;
                let (r, w) = unix.into_split();
                (Box::pin(r), Box::pin(w))
            } else {
                return Err(format!(
                    "'{endpoint}' is neither tcp://HOST:PORT nor ipc://PATH"
                ));
            };
        let (peer, buf) = handshake(
            &mut tokio::io::join(&mut read, &mut write),
            "DEALER",
            identity,
            false,
            max,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok((read, write, peer, buf))
    })
    .await
    .map_err(|_| format!("no ZMTP handshake within {timeout:?}"))?;
    let (read, write, peer, buf) = connected?;
    if !DEALER_PEERS.contains(&peer.socket_type.as_str()) {
        return Err(format!(
            "the service is a {} socket; a REQ/REP bridge needs REP, DEALER or ROUTER",
            peer.socket_type
        ));
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(write_loop(write, rx).in_current_span());
    Ok((DealerSend { tx }, MessageReader::new(read, buf, max)))
}
