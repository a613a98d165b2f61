//! Handshake-flood benchmark (issue #14): heartbeat round trips of 10 real
//! agent streams (mutual TLS, 10 Hz) to a real `mesh-coordinator`, first
//! quiet, then while a flooder on another address (127.0.0.2) opens N TLS
//! handshakes per second without a client certificate, then while it
//! also holds 2,000 idle TCP connections that never say hello.
//!
//! Everything runs on this machine: the flooder's own TLS work competes
//! with the coordinator for the same cores.
//!
//! Run: `cargo build --release --bins && target/release/bench-handshake-flood`

// A benchmark: a failed step ends it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use mesh_certs::{PeerExpectation, Role};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::agent_message::Body;
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::coordinator_message::Body as CoordBody;
use mesh_proto::v1::{AgentMessage, Heartbeat, Register};
use mesh_tests::pki::Pki;
use mesh_tests::process::Proc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 10)]
    agents: usize,
    #[arg(long, default_value_t = 10.0)]
    hz: f64,
    /// Bogus handshakes per second during the flood phases.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Idle connections held in the last phase.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Phase {
    Warmup,
    Quiet,
    Flood,
    FloodIdle,
    Stop,
}

async fn agent(
    name: String,
    address: String,
    tls: Arc<rustls::ClientConfig>,
    period: Duration,
    mut phase: watch::Receiver<Phase>,
) -> Result<HashMap<Phase, Histogram<u64>>> {
    let channel = transport::connect(&address, tls, &ConnectOptions::default()).await?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentMessage {
        body: Some(Body::Register(Register {
            node: name.clone(),
            heartbeat_interval_ms: period.as_millis() as u32,
            agent_version: "bench".into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
    inbound.message().await?.context("no Registered")?;
    let mut ticker = tokio::time::interval(period);
    let mut sent: HashMap<u64, (Instant, Phase)> = HashMap::new();
    let mut out: HashMap<Phase, Histogram<u64>> = HashMap::new();
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = *phase.borrow_and_update();
                if now == Phase::Stop { return Ok(out); }
                seq += 1;
                sent.insert(seq, (Instant::now(), now));
                tx.send(AgentMessage { body: Some(Body::Heartbeat(Heartbeat { seq, ..Default::default() })) }).await?;
            }
            m = inbound.message() => {
                let m = m?.context("stream closed")?;
                if let Some(CoordBody::HeartbeatAck(ack)) = m.body {
                    if let Some((at, p)) = sent.remove(&ack.seq) {
                        out.entry(p).or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
                            .record(at.elapsed().as_micros() as u64)?;
                    }
                }
            }
        }
    }
}

/// One bogus handshake from 127.0.0.2: no client certificate.
async fn bogus(target: SocketAddr, tls: Arc<rustls::ClientConfig>) -> bool {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return false;
    };
    if socket.bind("127.0.0.2:0".parse().unwrap()).is_err() {
        return false;
    }
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await
    else {
        return false;
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    // The server asks for a certificate, gets none and refuses: the whole
    // handshake is done, on both sides.
    let r = tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = connector.connect(name, tcp).await?;
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        s.read(&mut b).await
    })
    .await;
    matches!(r, Ok(Err(_)) | Ok(Ok(0)))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let pki = Pki::new("bench");
    pki.issue(Role::Coordinator, "coordinator", &[]);
    pki.issue(Role::Admin, "admin", &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let target: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cmd = std::process::Command::new(mesh_tests::binaries::path("mesh-coordinator"));
    cmd.arg("--listen")
        .arg("0.0.0.0:".to_string() + &port.to_string())
        .arg("--certs-dir")
        .arg(pki.dir())
        .arg("--join-listen")
        .arg("off")
        .arg("--metrics-listen")
        .arg("off")
        .arg("--state-dir")
        .arg(pki.dir().join("state"))
        .env("RUST_LOG", "warn");
    let _coordinator = Proc::spawn("coordinator", cmd);
    std::thread::sleep(Duration::from_millis(500));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let expect = PeerExpectation { mesh: "bench".into(), role: Role::Coordinator };
        let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
        let period = Duration::from_secs_f64(1.0 / args.hz);
        let mut tasks = Vec::new();
        for i in 0..args.agents {
            let name = format!("node-{i}");
            pki.issue(Role::Agent, &name, &[]);
            let tls = pki.tls(Role::Agent, &name).client_config(expect.clone(), &[ALPN_H2])?;
            tasks.push(tokio::spawn(agent(name, address.clone(), tls, period, phase_rx.clone())));
        }
        // A client with no certificate at all.
        let anon = {
            let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny))
                .with_no_client_auth();
            c.alpn_protocols = vec![ALPN_H2.to_vec()];
            Arc::new(c)
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let attempts = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (attempts, refused, flooding, anon) = (attempts.clone(), refused.clone(), flooding.clone(), anon.clone());
            let every = Duration::from_secs_f64(1.0 / args.rate as f64);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    tick.tick().await;
                    if !flooding.load(Ordering::Relaxed) { continue; }
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let (refused, anon) = (refused.clone(), anon.clone());
                    tokio::spawn(async move {
                        if bogus(target, anon).await { refused.fetch_add(1, Ordering::Relaxed); }
                    });
                }
            });
        }
        let mut report = Vec::new();
        for phase in [Phase::Quiet, Phase::Flood, Phase::FloodIdle] {
            let mut idle = Vec::new();
            if phase == Phase::FloodIdle {
                for _ in 0..args.idle {
                    let s = tokio::net::TcpSocket::new_v4()?;
                    s.bind("127.0.0.2:0".parse()?)?;
                    if let Ok(c) = s.connect(target).await { idle.push(c); }
                }
                eprintln!("holding {} idle connections", idle.len());
            }
            flooding.store(phase != Phase::Quiet, Ordering::Relaxed);
            let a0 = attempts.load(Ordering::Relaxed);
            let r0 = refused.load(Ordering::Relaxed);
            phase_tx.send(phase)?;
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            let wall = t0.elapsed().as_secs_f64();
            report.push((phase, (attempts.load(Ordering::Relaxed) - a0) as f64 / wall,
                (refused.load(Ordering::Relaxed) - r0) as f64 / wall, idle.len()));
            drop(idle);
        }
        flooding.store(false, Ordering::Relaxed);
        phase_tx.send(Phase::Stop)?;
        let mut merged: HashMap<Phase, Histogram<u64>> = HashMap::new();
        for t in tasks {
            for (p, h) in t.await?? {
                merged.entry(p).or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()).add(&h)?;
            }
        }
        println!("### Heartbeats under a handshake flood ({} agents at {} Hz, {} s per phase)\n", args.agents, args.hz, args.seconds);
        println!("| phase | bogus handshakes started / refused per s | idle connections held | heartbeats | RTT p50 / p99 / max |\n|---|---|---|---|---|");
        for (phase, rate, refused, idle) in report {
            let h = &merged[&phase];
            let ms = |v: u64| v as f64 / 1000.0;
            println!("| {phase:?} | {rate:.0} / {refused:.0} | {idle} | {} | {:.2} / {:.2} / {:.2} ms |",
                h.len(), ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()));
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// The flooder does not care who the server is.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
