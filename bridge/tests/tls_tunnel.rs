//! The tunnel over TLS on TCP (`Transport::Tls`): the same identity checks and clear errors as
//! QUIC, refusals before any stream is served, revocation closing open streams, garbage on the
//! TCP port changing nothing, and a QUIC dialler and a TLS dialler reaching each other.

#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use mesh_bridge::{Channel, ConnectCause, Error, PeerAddr, Transport, Tunnels};
use mesh_certs::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls(mesh: &Mesh, name: &str) -> Tunnels {
    tunnels_with(&mesh.agent_tls(name), Transport::Tls)
}

fn connect_cause(e: Error) -> (String, ConnectCause) {
    let text = e.to_string();
    match e {
        Error::Connect { cause, .. } => (text, cause),
        other => panic!("expected a connect error, got {other}"),
    }
}

/// Serves an echo channel: prefixes the verified peer's name to what it read.
fn serve_echo(t: &Tunnels) {
    t.serve_channel("echo", |mut ch: Channel| async move {
        let mut out = format!("{}:", ch.peer).into_bytes();
        let got = ch.recv.read_to_end(1 << 20).await.expect("read");
        out.extend(got);
        ch.send.write_all(&out).await.expect("write");
        ch.send.finish().await.expect("finish");
    });
}

async fn echo_once(from: &Tunnels, to: &Tunnels) -> Vec<u8> {
    let (mut send, mut recv) = from.open_channel(&peer(to), "echo").await.expect("open");
    send.write_all(b"hello").await.expect("send");
    send.finish().await.expect("finish");
    recv.read_to_end(1 << 20).await.expect("reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_tls_carry_bytes_and_mixed_transports_meet() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = tls(&mesh, "mainpc");
        let b = tls(&mesh, "pc2");
        let q = tunnels_with(&mesh.agent_tls("pc3"), Transport::Quic);
        for t in [&a, &b, &q] {
            serve_echo(t);
        }
        assert_eq!(echo_once(&a, &b).await, b"mainpc:hello");
        assert!(
            a.rtt("pc2").is_some(),
            "a TLS tunnel reports its round trip"
        );
        // A QUIC host and a TLS host reach each other: every endpoint accepts both.
        assert_eq!(echo_once(&q, &a).await, b"pc3:hello");
        assert_eq!(echo_once(&a, &q).await, b"mainpc:hello");
        let stats = a.stats();
        assert_eq!(stats.len(), 2, "{stats:?}");
        assert!(stats.iter().all(|s| s.reconnects == 0), "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_and_wrong_identities_are_refused() {
    within(20, async {
        let mesh = Mesh::new("home");
        let rogue_ca = Mesh::new("home");
        let good = tls(&mesh, "mainpc");
        serve_echo(&good);
        let rogue = tls(&rogue_ca, "pc2");

        // We dial the rogue: our verifier rejects its certificate.
        let err = good
            .open_stream(&peer(&rogue))
            .await
            .expect_err("a server certificate from another CA must be refused");
        let (text, cause) = connect_cause(err);
        assert!(
            matches!(cause, ConnectCause::PeerCertificate { .. }),
            "{text}"
        );
        assert!(text.contains("UnknownIssuer"), "{text}");

        // A rogue that trusts our CA as well: our server rejects its certificate.
        let both = format!("{}{}", mesh.ca_pem(), rogue_ca.ca_pem());
        let sly = tunnels_with(
            &rogue_ca.tls_trusting(&both, "home", Role::Agent, "pc3"),
            Transport::Tls,
        );
        let (text, cause) =
            connect_cause(sly.open_stream(&peer(&good)).await.expect_err("refused"));
        assert!(
            matches!(cause, ConnectCause::RejectedByPeer { .. }),
            "{text}"
        );
        assert!(text.contains("same mesh CA"), "{text}");

        // Right mesh and role, wrong name at that address.
        let wrong = PeerAddr {
            node: "pc3".to_string(),
            addr: addr(&good),
        };
        let other = tls(&mesh, "pc4");
        let (text, cause) = connect_cause(other.open_stream(&wrong).await.expect_err("wrong name"));
        assert!(matches!(cause, ConnectCause::WrongPeer { .. }), "{text}");

        // Another mesh's identity from our CA: one side or the other refuses it, with why.
        let stranger = tunnels_with(&mesh.tls_as("lab", Role::Agent, "pc9"), Transport::Tls);
        let (text, cause) =
            connect_cause(stranger.open_stream(&peer(&good)).await.expect_err("mesh"));
        assert!(
            matches!(
                cause,
                ConnectCause::PeerCertificate { .. } | ConnectCause::IdentityRefused { .. }
            ),
            "{text}"
        );
        assert!(text.contains("mesh"), "{text}");

        // Nothing was served to any of them, and the real peer still gets through.
        assert_eq!(echo_once(&other, &good).await, b"pc4:hello");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_certificate_is_refused_by_the_tls_listener_with_the_reason() {
    within(20, async {
        let mesh = Mesh::new("home");
        let host = tls(&mesh, "pc2");
        let admin = mesh.tls_as("home", Role::Admin, "ops");
        let config = admin
            .client_config(
                mesh_certs::PeerExpectation {
                    mesh: "home".to_string(),
                    role: Role::Agent,
                },
                &[mesh_bridge::ALPN],
            )
            .expect("client config");
        let tcp = tokio::net::TcpStream::connect(addr(&host))
            .await
            .expect("tcp");
        let name = rustls_pki_types::ServerName::try_from("pc2").expect("name");
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS completes on the client");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with('-'), "{answer}");
        assert!(answer.contains("only agents"), "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_nothing_on_its_tcp_port_fails_clearly_then_backs_off() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = tls(&mesh, "mainpc");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port");
        let gone = PeerAddr {
            node: "pc2".to_string(),
            addr: port,
        };
        let err = a.open_stream(&gone).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("connection refused on TCP port"), "{text}");
        assert!(text.contains("is its agent running"), "{text}");
        let err = a.open_stream(&gone).await.expect_err("backing off");
        assert!(matches!(err, Error::BackingOff { .. }), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_loses_its_open_tls_stream_and_cannot_open_another() {
    within(20, async {
        let mesh = Mesh::new("home");
        let host_tls = mesh.agent_tls("pc2");
        let host = tunnels_with(&host_tls, Transport::Tls);
        // A channel that holds the stream open and never answers.
        host.serve_channel("hold", |mut ch: Channel| async move {
            let _ = ch.recv.read_to_end(1 << 20).await;
        });
        let removed_tls = mesh.agent_tls("pc3");
        let removed = tunnels_with(&removed_tls, Transport::Tls);
        let (_send, mut recv) = removed
            .open_channel(&peer(&host), "hold")
            .await
            .expect("pc3 -> pc2");
        host_tls
            .revocations()
            .add(&removed_tls.leaf().expect("leaf").serial);
        let ended = tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(1 << 20)).await;
        assert!(
            matches!(ended, Ok(Err(_)) | Ok(Ok(_))),
            "the open stream from the revoked peer ends within a second or so"
        );
        let again = removed.open_stream(&peer(&host)).await;
        assert!(again.is_err(), "a revoked peer opened a new stream");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tcp_port_changes_nothing() {
    within(30, async {
        let mesh = Mesh::new("home");
        let host = tls(&mesh, "pc2");
        serve_echo(&host);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200u32 {
            let Ok(mut tcp) = tokio::net::TcpStream::connect(addr(&host)).await else {
                continue;
            };
            let len = (next() % 4000) as usize + 1;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 {
                // A TLS handshake record header with nonsense after it.
                bytes[0] = 0x16;
                if len > 2 {
                    bytes[1] = 3;
                    bytes[2] = 1;
                }
            }
            let _ = tcp.write_all(&bytes).await;
            let _ = tcp.shutdown().await;
        }
        let client = tls(&mesh, "pc3");
        assert_eq!(echo_once(&client, &host).await, b"pc3:hello");
    })
    .await;
}
