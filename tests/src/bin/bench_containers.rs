//! Container benchmarks (issue #3), against a real Podman service:
//!
//! 1. Time from the agent's container manager receiving a desired
//!    container to it running and healthy, against `podman run` of the
//!    same image on the same Podman service followed by the same HTTP
//!    probe at the same interval; trials interleaved.
//! 2. One reconcile pass over 50 unchanged running containers: time and
//!    Podman write calls.
//!
//! Needs root and podman. Run:
//! `cargo build --release --bins && target/release/bench-containers`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use mesh_node_agent::manager::{Input, Manager, ManagerConfig};
use mesh_node_agent::runtime::podman::PodmanRuntime;
use mesh_proto::v1::health_check::Probe;
use mesh_proto::v1::{ContainerSpec, DesiredContainers, HealthCheck, HealthState, HttpProbe};
use mesh_tests::podman::{TestPodman, BUSYBOX_IMAGE};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Args {
    /// Trials of each start path.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Containers in the reconcile measurement.
    #[arg(long, default_value_t = 50)]
    containers: usize,
    /// Health probe interval for both paths, ms.
    #[arg(long, default_value_t = 100)]
    probe_ms: u32,
}

const WEB: &str = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";

fn web_spec(name: &str, probe_ms: u32) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        group: "bench".into(),
        service: name.into(),
        image: BUSYBOX_IMAGE.into(),
        command: vec!["/bin/sh".into(), "-c".into(), WEB.into()],
        health: Some(HealthCheck {
            probe: Some(Probe::Http(HttpProbe {
                port: 8080,
                path: "/index.html".into(),
            })),
            interval_ms: probe_ms,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        }),
        ..Default::default()
    }
}

fn remote(socket: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--url").arg(format!("unix://{}", socket.display()));
    c
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

async fn http_ok(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.0 200")
        || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200")
}

/// `podman run` then probe until healthy; seconds.
async fn baseline(socket: &Path, name: &str, probe: Duration) -> Result<f64> {
    let t0 = Instant::now();
    let out = remote(socket)
        .args([
            "run",
            "-d",
            "--name",
            name,
            BUSYBOX_IMAGE,
            "/bin/sh",
            "-c",
            WEB,
        ])
        .output()?;
    if !out.status.success() {
        bail!("podman run: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ip = remote(socket)
        .args([
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            name,
        ])
        .output()?;
    let ip: std::net::IpAddr = String::from_utf8_lossy(&ip.stdout)
        .trim()
        .parse()
        .context("container IP")?;
    let addr = std::net::SocketAddr::new(ip, 8080);
    loop {
        if http_ok(addr).await {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("baseline container never became healthy");
        }
        tokio::time::sleep(probe).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let podman = TestPodman::start(None).await;
    let socket = podman.socket();
    let state = tempfile::tempdir()?;
    let probe = Duration::from_millis(u64::from(args.probe_ms));

    // 1. Start-to-healthy, through the real manager loop.
    let (manager, mut report) = Manager::new(
        PodmanRuntime::new(&socket, Default::default()),
        ManagerConfig {
            mesh: "bench".into(),
            state_dir: state.path().join("agent"),
            tick: Duration::from_millis(500),
        },
    );
    let (inputs, rx) = tokio::sync::mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manager.run(rx, shutdown.clone()));
    let mut agent_s = Vec::new();
    let mut base_s = Vec::new();
    let mut generation = 1;
    for i in 0..args.trials {
        let name = format!("web{i}");
        generation += 1;
        let t0 = Instant::now();
        inputs
            .send(Input::Desired(DesiredContainers {
                generation,
                containers: vec![web_spec(&name, args.probe_ms)],
                ..Default::default()
            }))
            .await?;
        loop {
            report.changed().await?;
            let healthy = report
                .borrow()
                .containers
                .iter()
                .any(|c| c.name == name && c.health == HealthState::Healthy as i32);
            if healthy {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!(
                    "agent container never became healthy: {:?}",
                    report.borrow()
                );
            }
        }
        agent_s.push(t0.elapsed().as_secs_f64());
        generation += 1;
        inputs
            .send(Input::Desired(DesiredContainers {
                generation,
                ..Default::default()
            }))
            .await?;
        let base_name = format!("base{i}");
        base_s.push(baseline(&socket, &base_name, probe).await?);
        let _ = remote(&socket)
            .args(["rm", "-f", "-t", "0", &base_name])
            .output();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let the background removals finish before the manager goes.
    let gone = Instant::now();
    while gone.elapsed() < Duration::from_secs(60) {
        let left = remote(&socket).args(["ps", "-a", "-q"]).output()?;
        if String::from_utf8_lossy(&left.stdout).trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let _ = task.await;

    // 2. Reconcile of N unchanged containers.
    let (mut manager, _report) = Manager::new(
        PodmanRuntime::new(&socket, Default::default()),
        ManagerConfig {
            mesh: "bench".into(),
            state_dir: state.path().join("agent2"),
            tick: Duration::from_millis(500),
        },
    );
    let specs: Vec<ContainerSpec> = (0..args.containers)
        .map(|i| ContainerSpec {
            name: format!("idle{i}"),
            group: "bench".into(),
            image: BUSYBOX_IMAGE.into(),
            command: vec!["sleep".into(), "3600".into()],
            ..Default::default()
        })
        .collect();
    manager.set_desired(DesiredContainers {
        generation: 1_000_000,
        containers: specs,
        ..Default::default()
    });
    let setup = Instant::now();
    manager.pass().await;
    eprintln!(
        "{} containers created in {:.1} s",
        args.containers,
        setup.elapsed().as_secs_f64()
    );
    // Settle: every container running, images read.
    for _ in 0..3 {
        manager.pass().await;
    }
    let mut pass_ms = Vec::new();
    let writes_before = manager.writes;
    for _ in 0..20 {
        let t = Instant::now();
        manager.pass().await;
        pass_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let writes = manager.writes - writes_before;
    let max_pass = pass_ms.iter().cloned().fold(0.0, f64::max);
    let running = remote(&socket).args(["ps", "-q"]).output()?;
    let running = String::from_utf8_lossy(&running.stdout).lines().count();

    let (a_med, b_med) = (median(&mut agent_s.clone()), median(&mut base_s.clone()));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("### Containers: start to healthy, agent vs `podman run` ({} trials each, interleaved, probe every {} ms)\n", args.trials, args.probe_ms);
    println!("| path | median | mean | min | max |\n|---|---|---|---|---|");
    for (label, v) in [
        ("agent (desired set -> running + healthy)", &agent_s),
        ("`podman run` + same HTTP probe", &base_s),
    ] {
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {label} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            median(&mut v.clone()) * 1000.0,
            mean(v) * 1000.0,
            min * 1000.0,
            max * 1000.0
        );
    }
    println!(
        "\nratio of medians agent / podman run: **{:.2}**\n",
        a_med / b_med
    );
    println!(
        "### Reconcile of {} unchanged running containers ({} running per Podman)\n",
        args.containers, running
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| pass time p50 / max (20 passes) | {:.1} / {:.1} ms |",
        median(&mut pass_ms.clone()),
        max_pass
    );
    println!("| Podman write calls in those passes | {writes} |");
    drop(podman);
    Ok(())
}
