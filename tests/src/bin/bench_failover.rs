//! `bench-failover`: issue #12's failover time, N trials (default 20) of a
//! hard kill of the primary host (`--fault kill`) or of its link going
//! down (`--fault unplug`), each on a fresh mesh of namespaces: the
//! SQLite demo service on pc2 with a replicated volume, standby pc3, a
//! writer on mainpc through its own bridge endpoint. Measured: from the
//! kill to the first write acknowledged through that same endpoint (now
//! served on pc3), and the coordinator's detection (the primary's silence
//! when it promoted). Every acknowledged write is then checked on pc3.
//!
//! `--fault switchover`: one mesh, N planned switchovers (`meshctl
//! failover memory`, back and forth between pc2 and pc3, each once the
//! standby is resynced) while a retrying writer (300 ms timeout) keeps
//! writing through mainpc's endpoint. Measured: the client's downtime
//! (the longest pause between two acknowledgements around the move) and
//! meshctl's own figure with its phases; at the end every acknowledged
//! write is checked on the standby.
//!
//! `--fault soak`: no fault at all, for `--soak-secs` (default 600) with
//! both cores saturated by `stress-ng --cpu 0` (apt install stress-ng) and
//! the default lease: counted are promotions (epoch changes), fencing by
//! the primary's agent, the writer's longest pause, and the least lease
//! remaining the coordinator reported (sampled every second).

use std::time::{Duration, Instant};

use clap::Parser;
use mesh_tests::podman::ensure_demo_image;
use mesh_tests::volumes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Fault {
    /// pc2's agent, containers and Podman SIGKILLed, its image deleted.
    Kill,
    /// pc2's link down: everything on it runs on until it fences itself.
    Unplug,
    /// Planned switchovers back and forth on one mesh.
    Switchover,
    /// No fault: a loaded machine must not fail over by itself.
    Soak,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 20)]
    trials: u32,
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
    /// How long the soak runs, seconds.
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// The agents' heartbeat interval (the agent's default is 500 ms; the
    /// tests run at 200 ms).
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// Soak: kill the coordinator first, so only the standby's grants keep
    /// the primary going (static stability under load).
    #[arg(long)]
    coordinator_down: bool,
}

fn mesh(args: &Args) -> mesh_tests::mesh::MeshFixture {
    volumes::start_bridged_mesh_with(volumes::start_mesh_with(mesh_tests::mesh::MeshOptions {
        heartbeat_ms: args.heartbeat_ms,
        ..Default::default()
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_demo_image();
    match args.fault {
        Fault::Switchover => return switchovers(mesh(&args), args.trials),
        Fault::Soak => {
            return soak(
                mesh(&args),
                Duration::from_secs(args.soak_secs),
                args.coordinator_down,
            )
        }
        Fault::Kill | Fault::Unplug => {}
    }
    let mut totals = Vec::new();
    let mut lost_rounds = 0;
    for trial in 0..args.trials {
        let mut mesh = mesh(&args);
        let mut writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(1000 + rand::random::<u64>() % 2000));
        let killed = Instant::now();
        match args.fault {
            Fault::Kill => volumes::kill_primary_host(&mut mesh),
            _ => mesh.lan.cut(mesh.host(volumes::PRIMARY)),
        }
        let mut probe = 1_000_000u64;
        let total = loop {
            if killed.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "trial {}: no write acknowledged 60 s after the kill",
                    trial + 1
                );
            }
            if volumes::write_bridged(&mesh, probe, 1) {
                break killed.elapsed();
            }
            probe += 1;
        };
        volumes::wait_writer_gone(&mut writer);
        let (mut acked, _) = volumes::writer_tally(&writer);
        acked.insert(0);
        acked.insert(probe);
        let v = volumes::volumes_json(&mesh).map_err(anyhow::Error::msg)?;
        let last = volumes::row(&v)
            .map(|r| r["last_failover"].to_string())
            .unwrap_or_else(|| v.to_string());
        let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
        if !verdict.ok() {
            lost_rounds += 1;
        }
        println!(
            "trial {:>2}: first acknowledged write {:.2} s after the fault; {} acknowledged, lost {}; {}",
            trial + 1,
            total.as_secs_f64(),
            acked.len(),
            verdict.lost.len(),
            last
        );
        totals.push(total.as_secs_f64());
    }
    totals.sort_by(f64::total_cmp);
    println!(
        "{} trials: p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s; {lost_rounds} trials lost an acknowledged write",
        totals.len(),
        percentile(&totals, 0.5),
        percentile(&totals, 0.99),
        totals.first().copied().unwrap_or(0.0),
        totals.last().copied().unwrap_or(0.0)
    );
    if lost_rounds > 0 {
        anyhow::bail!("{lost_rounds} trials lost acknowledged writes");
    }
    Ok(())
}

/// Waits until `host` is the primary and the standby is resynced.
fn wait_protected(mesh: &mesh_tests::mesh::MeshFixture, host: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = volumes::volumes_json(mesh).map_err(anyhow::Error::msg)?;
        if let Some(r) = volumes::row(&v) {
            if r["primary"] == host && r["standing"] == "in sync" && r["standby_outdated"] == false
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{host} not primary with a resynced standby after 120 s: {v}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn switchovers(mut mesh: mesh_tests::mesh::MeshFixture, trials: u32) -> anyhow::Result<()> {
    let mut writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(1000));
    let (mut client, mut reported) = (Vec::new(), Vec::new());
    let mut primary = volumes::PRIMARY;
    for trial in 0..trials {
        wait_protected(&mesh, primary)?;
        std::thread::sleep(Duration::from_millis(500));
        let before = volumes::ack_times(&writer).len();
        let out = mesh.meshctl("mainpc", &["failover", "memory", "-o", "json"]);
        if !out.status.success() {
            anyhow::bail!(
                "trial {}: meshctl failover: {}",
                trial + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        // Until the writer is acknowledged again, plus a little.
        let deadline = Instant::now() + Duration::from_secs(30);
        while volumes::ack_times(&writer).len() < before + 20 {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "trial {}: the writer did not go on: {}",
                    trial + 1,
                    writer.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let times = volumes::ack_times(&writer);
        let gap = times[before.saturating_sub(1)..]
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or(0);
        primary = if primary == volumes::PRIMARY {
            volumes::STANDBY
        } else {
            volumes::PRIMARY
        };
        let phases: Vec<String> = report["phases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| format!("{} {}", p["name"].as_str().unwrap_or("?"), p["ms"]))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "trial {:>2}: to {primary}: client downtime {gap} ms (longest pause between acknowledgements); meshctl {} ms ({})",
            trial + 1,
            report["downtime_ms"],
            phases.join(", ")
        );
        client.push(gap as f64 / 1000.0);
        reported.push(report["downtime_ms"].as_f64().unwrap_or(0.0) / 1000.0);
    }
    wait_protected(&mesh, primary)?;
    writer.kill();
    let (acked, _) = volumes::writer_tally(&writer);
    // The last primary's standby holds every acknowledged write.
    let standby = if primary == volumes::PRIMARY {
        volumes::STANDBY
    } else {
        volumes::PRIMARY
    };
    if let Some(a) = mesh.agents.get_mut(standby) {
        a.kill();
    }
    let verdict = volumes::check_image(&volumes::image_path(&mesh.state_dir(standby)), &acked);
    for v in [&mut client, &mut reported] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{} switchovers: client downtime p50 {:.2} s, p99 {:.2} s, max {:.2} s; meshctl p50 {:.2} s, max {:.2} s; {} acknowledged writes, {} lost",
        client.len(),
        percentile(&client, 0.5),
        percentile(&client, 0.99),
        client.last().copied().unwrap_or(0.0),
        percentile(&reported, 0.5),
        reported.last().copied().unwrap_or(0.0),
        acked.len(),
        verdict.lost.len()
    );
    if !verdict.ok() {
        anyhow::bail!("acknowledged writes lost: {verdict:?}");
    }
    Ok(())
}

/// Kills the stress load when the soak ends, also on an error.
struct Stress(std::process::Child);

impl Drop for Stress {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn soak(
    mut mesh: mesh_tests::mesh::MeshFixture,
    length: Duration,
    coordinator_down: bool,
) -> anyhow::Result<()> {
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    let mut writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_secs(1));
    let stress = std::process::Command::new("stress-ng")
        .args(["--cpu", "0", "--timeout"])
        .arg(format!("{}s", length.as_secs() + 30))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run stress-ng ({e}): apt-get install stress-ng"))?;
    let _stress = Stress(stress);
    if coordinator_down {
        mesh.coordinator.kill();
    }
    let started = Instant::now();
    let mut least_lease = u64::MAX;
    let mut samples = 0;
    let mut epochs = std::collections::BTreeSet::new();
    while started.elapsed() < length {
        std::thread::sleep(Duration::from_secs(1));
        if coordinator_down {
            continue;
        }
        let Ok(v) = volumes::volumes_json(&mesh) else {
            continue;
        };
        if let Some(r) = volumes::row(&v) {
            samples += 1;
            if let Some(ms) = r["lease_remaining_ms"].as_u64() {
                least_lease = least_lease.min(ms);
            }
            if let Some(e) = r["epoch"].as_u64() {
                epochs.insert(e);
            }
        }
    }
    let gap = volumes::longest_gap_ms(&writer);
    let (acked, _) = volumes::writer_tally(&writer);
    writer.kill();
    if coordinator_down {
        mesh.restart_coordinator();
    }
    let fenced = mesh.agents[volumes::PRIMARY]
        .logs()
        .matches("fencing (failing the volume's I/O")
        .count();
    let promoted = mesh.coordinator.logs().matches("standby promoted").count();
    println!(
        "soak {} s{}, both cores under stress-ng --cpu 0, default lease: {promoted} promotions, {fenced} fencings, epochs seen {epochs:?}; writer {} acknowledged, longest pause {gap} ms; least lease remaining {} over {samples} samples",
        length.as_secs(),
        if coordinator_down {
            " with the coordinator down"
        } else {
            ""
        },
        acked.len(),
        if samples == 0 {
            "n/a (no coordinator to ask)".to_string()
        } else {
            format!("{least_lease} ms")
        }
    );
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    if !verdict.ok() {
        anyhow::bail!("acknowledged writes lost: {verdict:?}");
    }
    if promoted > 0 || fenced > 0 {
        anyhow::bail!("false failover: {promoted} promotions, {fenced} fencings");
    }
    Ok(())
}
