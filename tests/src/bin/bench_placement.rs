//! Placement benchmark (issue #4): plan 5,000 services in 1,000 groups on
//! 200 hosts with GPUs, then re-plan the unchanged mesh. Pure computation,
//! no I/O. Run: `cargo build --release --bins && target/release/bench-placement`

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use mesh_topology::placement::{plan, GroupNeeds, HostState};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 200)]
    hosts: usize,
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    #[arg(long, default_value_t = 5)]
    services_per_group: usize,
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

fn world(args: &Args) -> (Vec<HostState>, Vec<GroupNeeds>) {
    // A deterministic, varied mesh: 1-4 GPUs of 12 or 24 GiB per host,
    // role labels, a third of the groups needing VRAM, some preferring a
    // host, some anti-affine, some publishing host ports.
    let hosts = (0..args.hosts)
        .map(|i| HostState {
            name: format!("host{i:03}"),
            labels: [(
                "role".to_string(),
                if i % 4 == 0 { "gpu" } else { "general" }.to_string(),
            )]
            .into_iter()
            .collect(),
            available: true,
            cpus: 32.0,
            memory_mib: 128 * 1024,
            gpus_mib: (0..(1 + i % 4))
                .map(|g| if (i + g) % 2 == 0 { 24576 } else { 12288 })
                .collect(),
        })
        .collect();
    let groups = (0..args.groups)
        .map(|i| {
            let vram = if i % 3 == 0 {
                (0..args.services_per_group)
                    .filter(|s| s % 2 == 0)
                    .map(|s| 1024 + ((i + s) % 4) as u64 * 512)
                    .collect()
            } else {
                vec![]
            };
            GroupNeeds {
                name: format!("group{i:04}"),
                constraints: if i % 10 == 0 {
                    [("role".to_string(), "gpu".to_string())]
                        .into_iter()
                        .collect()
                } else {
                    BTreeMap::new()
                },
                prefer: if i % 7 == 0 {
                    vec![format!("host{:03}", i % args.hosts)]
                } else {
                    vec![]
                },
                dependents: 0,
                anti_affinity: if i % 13 == 0 && i > 0 {
                    vec![format!("group{:04}", i - 1)]
                } else {
                    vec![]
                },
                cpus: 0.25 * args.services_per_group as f64,
                memory_mib: 512 * args.services_per_group as u64,
                vram_mib: vram,
                host_ports: if i % 5 == 0 {
                    vec![(7000 + (i % 50) as u16, "tcp".to_string())]
                } else {
                    vec![]
                },
            }
        })
        .collect();
    (hosts, groups)
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let (hosts, groups) = world(&args);
    let empty = BTreeMap::new();
    let mut fresh = Vec::new();
    let mut first = plan(&hosts, &groups, &empty, 512);
    for _ in 0..args.runs {
        let t = Instant::now();
        first = plan(&hosts, &groups, &empty, 512);
        fresh.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut again = Vec::new();
    let mut second = first.clone();
    for _ in 0..args.runs {
        let t = Instant::now();
        second = plan(&hosts, &groups, &first.placements, 512);
        again.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "### Placement: {} services in {} groups on {} hosts ({} runs each)\n",
        args.groups * args.services_per_group,
        args.groups,
        args.hosts,
        args.runs
    );
    println!("| measure | median | max |\n|---|---|---|");
    println!(
        "| plan from nothing | {:.1} ms | {:.1} ms |",
        median_ms(fresh.clone()),
        max(&fresh)
    );
    println!(
        "| re-plan of the unchanged mesh | {:.1} ms | {:.1} ms |",
        median_ms(again.clone()),
        max(&again)
    );
    println!(
        "\nplaced {} groups, {} unplaced (each with per-host reasons); re-plan changes: {}",
        first.placements.len(),
        first.unplaced.len(),
        second.changes.len()
    );
}
