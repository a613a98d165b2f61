//! `bench-failover`: issue #12's failover time, N trials (default 20) of a
//! hard kill of the primary host (`--fault kill`) or of its link going
//! down (`--fault unplug`), each on a fresh mesh of namespaces: the
//! SQLite demo service on pc2 with a replicated volume, standby pc3, a
//! writer on mainpc through its own bridge endpoint. Measured: from the
//! kill to the first write acknowledged through that same endpoint (now
//! served on pc3), and the coordinator's detection (the primary's silence
//! when it promoted). Every acknowledged write is then checked on pc3.

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
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 20)]
    trials: u32,
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
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
    let mut totals = Vec::new();
    let mut lost_rounds = 0;
    for trial in 0..args.trials {
        let mut mesh = volumes::start_bridged_mesh();
        let mut writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(1000 + rand::random::<u64>() % 2000));
        let killed = Instant::now();
        match args.fault {
            Fault::Kill => volumes::kill_primary_host(&mut mesh),
            Fault::Unplug => mesh.lan.cut(mesh.host(volumes::PRIMARY)),
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
