//! Shared test fixtures: a mesh CA and agent certificates made in memory, tunnel endpoints on
//! loopback (port 0), and small ZeroMQ services.

#![allow(dead_code, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_bridge::{
    Bridge, BridgeSpec, Bytes, Export, InFlightPolicy, Pattern, PeerAddr, ServiceTarget, Target,
    Transport, TunnelConfig, Tunnels,
};
use mesh_certs::{CertificateAuthority, Identity, MeshTls, Role, Validity};
use zeromq::{RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// A mesh CA in memory.
pub struct Mesh {
    pub name: String,
    ca: CertificateAuthority,
}

impl Mesh {
    pub fn new(name: &str) -> Mesh {
        Mesh {
            name: name.to_string(),
            ca: CertificateAuthority::generate(name, Validity::days(1)).expect("generate CA"),
        }
    }

    /// TLS material for `role`/`name` in this mesh (identity mesh = `mesh`).
    pub fn tls_as(&self, mesh: &str, role: Role, name: &str) -> MeshTls {
        self.tls_trusting(self.ca.cert_pem(), mesh, role, name)
    }

    /// A certificate from this CA, with `trusted_pem` as the trust anchors.
    pub fn tls_trusting(&self, trusted_pem: &str, mesh: &str, role: Role, name: &str) -> MeshTls {
        let id = Identity::new(mesh, role, name).expect("identity");
        let leaf = self.ca.issue(&id, &[], Validity::days(1)).expect("issue");
        MeshTls::from_pem(trusted_pem, &leaf.cert_pem, &leaf.key_pem).expect("load TLS")
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    pub fn agent_tls(&self, name: &str) -> MeshTls {
        self.tls_as(&self.name, Role::Agent, name)
    }

    /// A tunnel endpoint for agent `name` on 127.0.0.1, any free port.
    pub fn agent(&self, name: &str) -> Tunnels {
        tunnels(&self.agent_tls(name))
    }
}

/// A tunnel endpoint on 127.0.0.1 dialling with the transport `MESH_TEST_TUNNEL_TRANSPORT`
/// names ("tls" or "quic"; the product's default without it), so the whole suite runs on
/// either (`scripts/test.sh` runs the bridge tests once more on the other one).
pub fn tunnels(tls: &MeshTls) -> Tunnels {
    let transport = match std::env::var("MESH_TEST_TUNNEL_TRANSPORT") {
        Ok(name) => name.parse().expect("MESH_TEST_TUNNEL_TRANSPORT"),
        Err(_) => Transport::default(),
    };
    tunnels_with(tls, transport)
}

/// A tunnel endpoint on 127.0.0.1 that dials with `transport`.
pub fn tunnels_with(tls: &MeshTls, transport: Transport) -> Tunnels {
    let mut config = TunnelConfig::new("127.0.0.1:0".parse().expect("addr"));
    config.connect_timeout = Duration::from_secs(3);
    config.transport = transport;
    Tunnels::bind(tls, config).expect("bind tunnel endpoint")
}

pub fn peer(t: &Tunnels) -> PeerAddr {
    PeerAddr {
        node: t.node().to_string(),
        addr: t.local_addr().expect("local addr"),
    }
}

pub fn addr(t: &Tunnels) -> SocketAddr {
    t.local_addr().expect("local addr")
}

pub fn target(host: &Tunnels, service: &str) -> Target {
    Target::new(ServiceTarget {
        peer: peer(host),
        service: service.to_string(),
        epoch: 0,
    })
}

/// Exports `service` on `host` and starts a bridge to it on `client`.
pub async fn bridge(
    client: &Tunnels,
    host: &Tunnels,
    service: &str,
    pattern: Pattern,
    endpoint: &str,
    policy: InFlightPolicy,
) -> (Bridge, Target) {
    host.exports().set(
        service,
        Export {
            pattern,
            endpoint: endpoint.to_string(),
        },
    );
    let target = target(host, service);
    let local = match pattern {
        Pattern::Tcp => "127.0.0.1:0",
        _ => "tcp://127.0.0.1:0",
    };
    let bridge = Bridge::start(
        client,
        BridgeSpec {
            name: format!("{service}-bridge"),
            pattern,
            local: local.to_string(),
            in_flight: policy,
        },
        target.subscribe(),
    )
    .await
    .expect("start bridge");
    (bridge, target)
}

/// Runs `f` with a time limit so a broken bridge fails the test instead of hanging it.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test took too long")
}

pub fn msg(frames: &[&[u8]]) -> ZmqMessage {
    let v: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
    ZmqMessage::try_from(v).expect("non-empty message")
}

pub fn frames(m: ZmqMessage) -> Vec<Vec<u8>> {
    m.into_vec().into_iter().map(|b| b.to_vec()).collect()
}

/// A REP service that answers every request with `prefix` + the request's frames.
pub async fn rep_service(prefix: &'static [u8]) -> String {
    let mut rep = RepSocket::new();
    let ep = rep
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind REP")
        .to_string();
    tokio::spawn(async move {
        while let Ok(m) = rep.recv().await {
            let mut out = vec![Bytes::from_static(prefix)];
            out.extend(m.into_vec());
            let Ok(reply) = ZmqMessage::try_from(out) else {
                return;
            };
            if rep.send(reply).await.is_err() {
                return;
            }
        }
    });
    ep
}

/// A ROUTER service that echoes every message to its sender after a random delay of up to
/// `max_delay_ms`, so replies come back out of order.
pub async fn router_echo_service(max_delay_ms: u64) -> String {
    let mut router = RouterSocket::new();
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind ROUTER")
        .to_string();
    let (send, mut recv) = router.split();
    tokio::spawn(async move {
        while let Ok(m) = recv.recv().await {
            let mut send = send.clone();
            let delay = if max_delay_ms == 0 {
                0
            } else {
                rand::random::<u64>() % max_delay_ms
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = send.send(m).await;
            });
        }
    });
    ep
}

/// A ROUTER service that holds every request until `open` is set, then answers each with its
/// envelope and `prefix` + body. `held` counts requests received.
pub async fn gated_router_service(
    prefix: &'static str,
    open: std::sync::Arc<tokio::sync::Notify>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let mut router = RouterSocket::new();
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind ROUTER")
        .to_string();
    tokio::spawn(async move {
        let mut pending: Vec<ZmqMessage> = Vec::new();
        let mut is_open = false;
        loop {
            tokio::select! {
                m = router.recv() => {
                    let Ok(m) = m else { return };
                    held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    pending.push(m);
                }
                _ = open.notified(), if !is_open => is_open = true,
            }
            if is_open {
                for m in pending.drain(..) {
                    let mut f = m.into_vec();
                    if let Some(last) = f.pop() {
                        let mut body = prefix.as_bytes().to_vec();
                        body.extend_from_slice(&last);
                        f.push(Bytes::from(body));
                    }
                    let Ok(reply) = ZmqMessage::try_from(f) else {
                        continue;
                    };
                    let _ = router.send(reply).await;
                }
            }
        }
    });
    ep
}
