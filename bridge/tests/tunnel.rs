//! The tunnel between agents: mutual TLS with the mesh certificates, identity checks, one
//! connection per peer, clear errors.

#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use mesh_bridge::{ConnectCause, Error, PeerAddr, Tunnels};
use mesh_certs::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_one_mesh_connect_and_share_one_connection() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");
        let c1 = a.connect(&peer(&b)).await.expect("a -> b");
        let c2 = a.connect(&peer(&b)).await.expect("a -> b again");
        assert_eq!(c1.stable_id(), c2.stable_id(), "one connection per peer");
        // b reuses the connection a opened instead of dialling a second one.
        let back = b.connect(&peer(&a)).await.expect("b -> a");
        assert_eq!(back.remote_address(), addr(&a));
        assert!(a.rtt("pc2").is_some());
    })
    .await;
}

fn connect_cause(e: Error) -> (String, ConnectCause) {
    let text = e.to_string();
    match e {
        Error::Connect { cause, .. } => (text, cause),
        other => panic!("expected a connect error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_from_another_ca_cannot_open_a_tunnel() {
    within(20, async {
        let mesh = Mesh::new("home");
        let rogue_ca = Mesh::new("home"); // same mesh name, different CA
        let good = mesh.agent("mainpc");
        let rogue = rogue_ca.agent("pc2");

        // The rogue dials us and does not trust our CA: it rejects us itself.
        let err = rogue
            .connect(&peer(&good))
            .await
            .expect_err("a certificate from another CA must be refused");
        let (text, cause) = connect_cause(err);
        assert!(
            matches!(cause, ConnectCause::PeerCertificate { .. }),
            "{text}"
        );

        // A rogue that trusts our CA as well: our server rejects its certificate.
        let both = format!("{}{}", mesh.ca_pem(), rogue_ca.ca_pem());
        let sly = tunnels(&rogue_ca.tls_trusting(&both, "home", Role::Agent, "pc3"));
        let err = sly
            .connect(&peer(&good))
            .await
            .expect_err("a certificate from another CA must be refused");
        let (text, cause) = connect_cause(err);
        assert!(text.contains("agent 'mainpc'"), "{text}");
        assert!(
            matches!(cause, ConnectCause::RejectedByPeer { .. }),
            "{text}"
        );
        assert!(text.contains("rejected our certificate"), "{text}");
        assert!(text.contains("same mesh CA"), "{text}");

        // We dial the rogue: our verifier rejects its certificate.
        let err = good
            .connect(&peer(&rogue))
            .await
            .expect_err("a server certificate from another CA must be refused");
        let (text, cause) = connect_cause(err);
        assert!(text.contains("agent 'pc2'"), "{text}");
        assert!(
            matches!(cause, ConnectCause::PeerCertificate { .. }),
            "{text}"
        );
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("issued by this mesh's CA"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_other_than_the_expected_agent_are_refused() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");

        // Right mesh and role, wrong name: someone else answers at that address.
        let wrong = PeerAddr {
            node: "pc3".to_string(),
            addr: addr(&b),
        };
        let (text, cause) = connect_cause(a.connect(&wrong).await.expect_err("wrong name"));
        assert!(matches!(cause, ConnectCause::WrongPeer { .. }), "{text}");
        assert!(text.contains("spiffe://home/agent/pc2"), "{text}");

        // A certificate from our CA for another mesh name: refused by the server after TLS.
        let stranger = tunnels(&mesh.tls_as("lab", Role::Agent, "pc9"));
        let (text, cause) = connect_cause(stranger.connect(&peer(&b)).await.expect_err("mesh"));
        // Either side may notice first: our verifier (server is not in mesh 'lab') or theirs.
        assert!(
            matches!(
                cause,
                ConnectCause::PeerCertificate { .. } | ConnectCause::IdentityRefused { .. }
            ),
            "{text}"
        );
        assert!(text.contains("mesh"), "{text}");

        // Only agent certificates may run a tunnel endpoint at all.
        let admin = mesh.tls_as("home", Role::Admin, "ops");
        let err = Tunnels::bind(
            &admin,
            mesh_bridge::TunnelConfig::new("127.0.0.1:0".parse().expect("addr")),
        )
        .expect_err("admin cannot bind");
        assert!(err.to_string().contains("agent certificate"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_fails_clearly_then_backs_off() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        // Nothing listens on this UDP port: bind a socket to reserve it, then drop it.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port");
        let gone = PeerAddr {
            node: "pc2".to_string(),
            addr: port,
        };
        let started = std::time::Instant::now();
        let (text, cause) = connect_cause(a.connect(&gone).await.expect_err("unreachable"));
        assert!(matches!(cause, ConnectCause::Unreachable { .. }), "{text}");
        assert!(text.contains("is the agent running"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // The next attempt within the backoff period fails at once, naming the last error.
        let err = a.connect(&gone).await.expect_err("backing off");
        let text = err.to_string();
        assert!(matches!(err, Error::BackingOff { .. }), "{text}");
        assert!(text.contains("is the agent running"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected() {
    within(30, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");
        let b_addr = addr(&b);
        let first = a.connect(&peer(&b)).await.expect("connect");
        b.close();
        b.wait_closed().await;
        drop(b);
        let _ = first.closed().await;
        // pc2 comes back on the same address (the old socket may take a moment to go).
        let mut config = mesh_bridge::TunnelConfig::new(b_addr);
        config.connect_timeout = Duration::from_secs(3);
        let mut tries = 0;
        let b2 = loop {
            match Tunnels::bind(&mesh.agent_tls("pc2"), config.clone()) {
                Ok(t) => break t,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind: {e}"),
            }
        };
        let mut attempts = 0;
        let second = loop {
            attempts += 1;
            match a.connect(&peer(&b2)).await {
                Ok(c) => break c,
                Err(Error::BackingOff { retry_in, .. }) => tokio::time::sleep(retry_in).await,
                Err(e) if attempts < 20 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("no reconnect: {e}"),
            }
        };
        assert_ne!(first.stable_id(), second.stable_id());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_loses_its_open_tunnel_and_cannot_open_another() {
    within(20, async {
        let mesh = Mesh::new("home");
        let host_tls = mesh.agent_tls("pc2");
        let host = tunnels(&host_tls);
        let removed_tls = mesh.agent_tls("pc3");
        let removed = tunnels(&removed_tls);
        let conn = removed.connect(&peer(&host)).await.expect("pc3 -> pc2");
        // pc2 learns (from the directory) that pc3's certificate is revoked.
        host_tls
            .revocations()
            .add(&removed_tls.leaf().expect("leaf").serial);
        tokio::time::timeout(Duration::from_secs(2), conn.closed())
            .await
            .expect("the open tunnel from the revoked peer is closed within a second or so");
        let again = Tunnels::connect(&removed, &peer(&host)).await;
        assert!(again.is_err(), "a revoked peer opened a new tunnel");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_at_the_tunnel_endpoint_change_nothing() {
    within(30, async {
        let mesh = Mesh::new("home");
        let host = mesh.agent("pc2");
        let target = addr(&host);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        // Deterministic noise: QUIC long and short headers with random
        // versions, connection ids and lengths, truncated anywhere.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5000u32 {
            let len = (next() % 1400) as usize + 1;
            let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match i % 3 {
                0 => datagram[0] |= 0xc0,                       // long header
                1 => datagram[0] = (datagram[0] & 0x3f) | 0x40, // short header
                _ => {}
            }
            if i % 3 == 0 && len > 5 {
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes()); // QUIC v1
            }
            let _ = socket.send_to(&datagram, target).await;
        }
        // The endpoint still serves a real peer.
        let peer_host = mesh.agent("pc3");
        peer_host
            .connect(&peer(&host))
            .await
            .expect("a real tunnel after the noise");
    })
    .await;
}
