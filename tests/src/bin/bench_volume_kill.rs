//! `bench-volume-kill`: issue #11's kill test, N rounds (default 20), each
//! on a fresh mesh of namespaces: the SQLite demo service on a replicated
//! volume on pc2, writes from mainpc, pc2 killed hard at a random moment,
//! the standby's (pc3) image checked. Prints one line per round and a
//! summary; exits non-zero if any acknowledged write was lost. Needs root,
//! podman, /dev/fuse, e2fsprogs and the demo image.

use std::time::Duration;

use clap::Parser;
use mesh_tests::podman::ensure_demo_image;
use mesh_tests::volumes;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 20)]
    rounds: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_demo_image();
    let mut failed = 0;
    let mut acked_total = 0;
    for round in 0..args.rounds {
        let mut mesh = volumes::start_mesh();
        volumes::apply(&mesh);
        volumes::wait_in_sync(&mesh, Duration::from_secs(120));
        // A random moment: 1 to 4 s into the writes.
        let write_for = Duration::from_millis(1000 + rand::random::<u64>() % 3000);
        let r = volumes::kill_round(&mut mesh, write_for, false);
        acked_total += r.acked;
        let ok = r.verdict.ok();
        if !ok {
            failed += 1;
        }
        println!(
            "round {:>2}: killed after {:>4} ms, {:>4} acknowledged, {:>4} on the standby, lost {}, journal replay {}, fsck clean {}, integrity {} -> {}",
            round + 1,
            write_for.as_millis(),
            r.acked,
            r.verdict.records,
            r.verdict.lost.len(),
            r.verdict.fsck_replay_code,
            r.verdict.fsck_clean,
            r.verdict.integrity_ok,
            if ok { "ok" } else { "LOST" }
        );
    }
    println!(
        "{} rounds, {acked_total} acknowledged writes in all, {failed} rounds with a loss or damage",
        args.rounds
    );
    if failed > 0 {
        anyhow::bail!("{failed} rounds lost acknowledged writes or failed the check");
    }
    Ok(())
}
