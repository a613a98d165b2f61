//! `bench-volume-rss`: the agents' memory with 3 replicated volumes under
//! a write burst (issue #11: primary agent under 64 MB). A mesh of
//! namespaces: three SQLite demo services on pc2, each on its own
//! replicated volume with its standby on pc3; three writers on mainpc put
//! VALUE_KIB values as fast as they are acknowledged. Samples both
//! agents' VmRSS every 100 ms and prints their peaks (and VmHWM).

use std::time::{Duration, Instant};

use clap::Parser;
use mesh_tests::podman::ensure_demo_image;
use mesh_tests::volumes::{self, PORT, PRIMARY, STANDBY};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 3)]
    volumes: usize,
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Puts per writer.
    #[arg(long, default_value_t = 120)]
    puts: u64,
    #[arg(long, default_value_t = 1024)]
    value_kib: usize,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_demo_image();
    let mesh = volumes::start_mesh();
    volumes::apply_text(&mesh, &volumes::topology_with(args.volumes, args.size_mib));
    mesh_tests::wait::until(
        "every volume in sync",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let v = volumes::volumes_json(&mesh)?;
            let rows = v.as_array().cloned().unwrap_or_default();
            let in_sync = rows.iter().filter(|r| r["standing"] == "in sync").count();
            Ok((in_sync == args.volumes).then_some(()))
        },
    );
    let primary = mesh.agents[PRIMARY].pid();
    let standby = mesh.agents[STANDBY].pid();
    let idle = (status_kib(primary, "VmRSS:"), status_kib(standby, "VmRSS:"));
    let started = Instant::now();
    let writers: Vec<std::process::Child> = (0..args.volumes)
        .map(|i| {
            let mut cmd = mesh_tests::process::command(
                Some(mesh.host("mainpc")),
                &mesh_tests::binaries::path("volume-writer"),
            );
            cmd.arg("--connect")
                .arg(format!(
                    "tcp://{}:{}",
                    mesh.host(PRIMARY).address,
                    PORT as usize + i
                ))
                .args(["--count", &args.puts.to_string()])
                .args(["--value-kib", &args.value_kib.to_string()])
                .args(["--timeout-ms", "30000"]);
            cmd.stdout(std::process::Stdio::null()).spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut peak = (0, 0);
    let mut writers = writers;
    let mut ok = true;
    while !writers.is_empty() {
        peak.0 = peak.0.max(status_kib(primary, "VmRSS:"));
        peak.1 = peak.1.max(status_kib(standby, "VmRSS:"));
        let mut running = Vec::new();
        for mut w in writers {
            match w.try_wait()? {
                Some(status) => ok &= status.success(),
                None => running.push(w),
            }
        }
        writers = running;
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    let written_mib = args.volumes as u64 * args.puts * args.value_kib as u64 / 1024;
    println!(
        "{} volumes, {written_mib} MiB put in {:.1} s ({:.1} MiB/s through SQLite, replicated), writers ok: {ok}",
        args.volumes,
        elapsed.as_secs_f64(),
        written_mib as f64 / elapsed.as_secs_f64()
    );
    println!("| agent | VmRSS idle | VmRSS peak (sampled) | VmHWM |");
    println!("| --- | --- | --- | --- |");
    for (name, pid, idle, peak) in [
        (PRIMARY, primary, idle.0, peak.0),
        (STANDBY, standby, idle.1, peak.1),
    ] {
        println!(
            "| {name} ({}) | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            if name == PRIMARY {
                "primaries"
            } else {
                "standbys"
            },
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            status_kib(pid, "VmHWM:") as f64 / 1024.0
        );
    }
    if !ok {
        anyhow::bail!("a writer failed");
    }
    Ok(())
}
