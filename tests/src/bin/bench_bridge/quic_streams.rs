//! Raw QUIC with the tunnel's TLS and transport settings, no ZeroMQ and no bridge: one
//! multiplexed stream (records carry request ids) vs one QUIC stream per request on loopback
//! (`--role quic-streams`), and round trips and throughput to the server's raw echo endpoint
//! (`--role quic-client`), the floor of the tunnel between two hosts.
//!
//! mesh-bridge keeps its QUIC configuration and record format to itself, so both are
//! reproduced here: the TLS configuration from `mesh_certs::MeshTls` as the tunnel makes it,
//! the transport settings copied from the tunnel (`bridge/src/tunnel/handshake.rs`,
//! `transport`: keep the two alike, or this floor stops being the tunnel's), and requests
//! written in the tunnel's record format (`bridge/src/frame.rs`), which the echo side reads by
//! its length prefix alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use futures::StreamExt;
use hdrhistogram::Histogram;
use mesh_bridge::{Bytes, TunnelConfig};
use mesh_certs::{MeshTls, PeerExpectation, Role};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::{load_tls, throwaway_agents, Args, SIZES};

/// ALPN of the raw echo endpoint: its own, it is no tunnel endpoint.
const ALPN: &[u8] = b"mesh-bridge-bench/1";

/// The tunnel's stream limit per peer (`MAX_STREAMS` in the tunnel).
const MAX_STREAMS: u32 = 4096;

/// The tunnel's largest record body (`DEFAULT_MAX_RECORD`).
const MAX_RECORD: usize = 32 * 1024 * 1024;

/// Record kinds of the tunnel's format (the kind byte, first in the body).
const KIND_REQUEST: u8 = 4;
const KIND_REPLY: u8 = 5;

/// The tunnel's transport settings: keep-alive and idle timeout as a default `TunnelConfig`
/// has them, stream limits and windows as the tunnel sets them.
fn transport() -> Result<Arc<TransportConfig>> {
    let config = TunnelConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(config.keep_alive));
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .with_context(|| format!("idle timeout {:?}", config.idle_timeout))?;
    t.max_idle_timeout(Some(idle));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    t.stream_receive_window(VarInt::from_u32(8 * 1024 * 1024));
    t.send_window(64 * 1024 * 1024);
    Ok(Arc::new(t))
}

/// The server side as a tunnel endpoint has it: mutual TLS with the mesh certificates.
fn server_config(tls: &MeshTls) -> Result<quinn::ServerConfig> {
    let crypto = QuicServerConfig::try_from(tls.server_config(&[ALPN])?)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport()?);
    Ok(server)
}

/// The client side as a tunnel endpoint has it: the server must be an agent of our mesh.
fn client_config(tls: &MeshTls) -> Result<quinn::ClientConfig> {
    let expect = PeerExpectation {
        mesh: tls.identity().mesh.clone(),
        role: Role::Agent,
    };
    let crypto = QuicClientConfig::try_from(tls.client_config(expect, &[ALPN])?)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport()?);
    Ok(client)
}

/// Reads records by their length prefix (big-endian u32 before the body), as the tunnel's
/// codec does, without parsing the rest.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_RECORD)
        .new_codec()
}

/// Request `id` of `size` bytes as the tunnel sends one: its header (body length, kind, id,
/// client, frame count, frame length), then the payload as a buffer of its own.
fn request(id: u64, size: usize) -> Result<[Bytes; 2]> {
    const HEADER: usize = 4 + 1 + 8 + 8 + 4 + 4;
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(&u32::try_from(HEADER - 4 + size)?.to_be_bytes());
    head.push(KIND_REQUEST);
    head.extend_from_slice(&id.to_be_bytes());
    head.extend_from_slice(&1u64.to_be_bytes());
    head.extend_from_slice(&1u32.to_be_bytes());
    head.extend_from_slice(&u32::try_from(size)?.to_be_bytes());
    Ok([Bytes::from(head), Bytes::from(vec![7u8; size])])
}

async fn write_request(send: &mut quinn::SendStream, id: u64, size: usize) -> Result<()> {
    send.write_all_chunks(&mut request(id, size)?).await?;
    Ok(())
}

/// Echo server: every record read on a stream is written back on it.
async fn serve(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut reader = FramedRead::new(recv, codec());
                    while let Some(Ok(mut body)) = reader.next().await {
                        // The request, its kind byte made a reply's.
                        if let Some(kind) = body.first_mut() {
                            *kind = KIND_REPLY;
                        }
                        let Ok(len) = u32::try_from(body.len()) else {
                            return;
                        };
                        let mut chunks =
                            [Bytes::copy_from_slice(&len.to_be_bytes()), body.freeze()];
                        if send.write_all_chunks(&mut chunks).await.is_err() {
                            return;
                        }
                    }
                    let _ = send.finish();
                });
            }
        });
    }
}

/// A QUIC endpoint on a UDP socket set up as the tunnel's (8 MiB buffers).
fn endpoint(bind: SocketAddr, server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    state.set_recv_buffer_size((&socket).into(), 8 << 20)?;
    state.set_send_buffer_size((&socket).into(), 8 << 20)?;
    let runtime = quinn::default_runtime().context("no tokio runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )?)
}

/// A raw QUIC echo endpoint with the tunnel's TLS and transport settings.
pub(super) fn echo_endpoint(tls: &MeshTls, bind: SocketAddr) -> Result<quinn::Endpoint> {
    let server = endpoint(bind, Some(server_config(tls)?))
        .with_context(|| format!("bind raw QUIC echo on {bind}"))?;
    tokio::spawn(serve(server.clone()));
    Ok(server)
}

/// Raw QUIC round trips and pipelined throughput to the server's echo endpoint, on one
/// multiplexed stream as the REQ/REP bridge uses it.
pub(super) async fn run_client(args: &Args) -> Result<()> {
    let tls = load_tls(args, "mainpc")?;
    let peer = args
        .peer
        .context("--peer ADDR (the server's tunnel) is required")?;
    let addr = SocketAddr::new(peer.ip(), args.quic_echo.port());
    let mut client = endpoint("0.0.0.0:0".parse()?, None)?;
    client.set_default_client_config(client_config(&tls)?);
    let conn = client.connect(addr, &args.peer_name)?.await?;
    println!("### Raw QUIC between the same hosts (one stream, echo, no ZeroMQ)\n");
    println!("| measurement | size | raw QUIC |");
    println!("|---|---|---|");
    for (size, label) in SIZES {
        if args.size.is_some_and(|s| s != size) {
            continue;
        }
        let n = if size > 1024 {
            args.round_trips / 4
        } else {
            args.round_trips
        };
        let (p50, p99) = rtt_multiplexed(&conn, size, n).await?;
        println!("| round trip p50 / p99 | {label} | {p50} / {p99} µs |");
    }
    for (size, label) in SIZES {
        if args.size.is_some_and(|s| s != size) {
            continue;
        }
        let m = if size > 1024 {
            (args.messages / 10).max(100)
        } else {
            args.messages
        };
        let rate = throughput_multiplexed(&conn, size, m, args.window).await?;
        println!(
            "| pipelined throughput ({} in flight) | {label} | {rate:.0} msg/s ({:.1} MiB/s) |",
            args.window,
            rate * size as f64 / (1024.0 * 1024.0)
        );
    }
    conn.close(0u32.into(), b"done");
    client.wait_idle().await;
    Ok(())
}

pub(super) async fn run(args: &Args) -> Result<()> {
    let tls = throwaway_agents(&["pc2", "mainpc"])?;
    let server = quinn::Endpoint::server(server_config(&tls[0])?, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    tokio::spawn(serve(server));
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(client_config(&tls[1])?);
    let conn = client.connect(addr, "pc2")?.await?;

    println!("### One multiplexed QUIC stream vs one stream per request (loopback)\n");
    println!("| measurement | size | multiplexed | stream per request |");
    println!("|---|---|---|---|");
    for (size, label) in SIZES {
        let n = args.round_trips;
        let (m50, m99) = rtt_multiplexed(&conn, size, n).await?;
        let (p50, p99) = rtt_per_request(&conn, size, n).await?;
        println!("| round trip p50 / p99 | {label} | {m50} / {m99} µs | {p50} / {p99} µs |");
    }
    for (size, label) in SIZES {
        let m = if size > 1024 {
            args.messages / 10
        } else {
            args.messages
        };
        let a = throughput_multiplexed(&conn, size, m, args.window).await?;
        let b = throughput_per_request(&conn, size, m, args.window).await?;
        println!(
            "| pipelined throughput ({} in flight) | {label} | {a:.0} msg/s | {b:.0} msg/s |",
            args.window
        );
    }
    Ok(())
}

async fn rtt_multiplexed(conn: &quinn::Connection, size: usize, n: usize) -> Result<(u64, u64)> {
    let (mut send, recv) = conn.open_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..n + n / 10 {
        let started = Instant::now();
        write_request(&mut send, i as u64, size).await?;
        reader.next().await.context("stream ended")??;
        if i >= n / 10 {
            hist.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        }
    }
    Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
}

async fn one_request(conn: &quinn::Connection, id: u64, size: usize) -> Result<()> {
    let (mut send, recv) = conn.open_bi().await?;
    write_request(&mut send, id, size).await?;
    send.finish()?;
    let mut reader = FramedRead::new(recv, codec());
    reader.next().await.context("stream ended")??;
    Ok(())
}

async fn rtt_per_request(conn: &quinn::Connection, size: usize, n: usize) -> Result<(u64, u64)> {
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..n + n / 10 {
        let started = Instant::now();
        one_request(conn, i as u64, size).await?;
        if i >= n / 10 {
            hist.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        }
    }
    Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
}

async fn throughput_multiplexed(
    conn: &quinn::Connection,
    size: usize,
    m: usize,
    window: usize,
) -> Result<f64> {
    let (mut send, recv) = conn.open_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let permits = Arc::new(Semaphore::new(window));
    let started = Instant::now();
    let writer = {
        let permits = permits.clone();
        tokio::spawn(async move {
            for i in 0..m {
                permits.acquire().await?.forget();
                write_request(&mut send, i as u64, size).await?;
            }
            send.finish()?;
            Ok::<_, anyhow::Error>(())
        })
    };
    for _ in 0..m {
        reader.next().await.context("stream ended")??;
        permits.add_permits(1);
    }
    writer.await??;
    Ok(m as f64 / started.elapsed().as_secs_f64())
}

async fn throughput_per_request(
    conn: &quinn::Connection,
    size: usize,
    m: usize,
    window: usize,
) -> Result<f64> {
    let permits = Arc::new(Semaphore::new(window));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(m);
    for i in 0..m {
        let permit = permits.clone().acquire_owned().await?;
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let r = one_request(&conn, i as u64, size).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(m as f64 / started.elapsed().as_secs_f64())
}
