//! Fuzz benchmark (issue #14): the hostile-input checks of
//! `mesh_tests::hostile` (every file parser, join tokens, CSRs) run on
//! mutated inputs for a fixed time each, much longer than CI's bounded
//! property tests. Reports cases per target, the slowest case, and every
//! broken contract or panic (exit 1 if any).
//!
//! Run: `cargo build --release --bins && target/release/bench-fuzz --seconds 60`

use std::time::{Duration, Instant};

use clap::Parser;
use mesh_tests::hostile::targets;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A valid text changed the way a careless edit or a corrupt disk would.
fn mutate(base: &str, rng: &mut rand::rngs::StdRng) -> String {
    let mut bytes = base.as_bytes().to_vec();
    match rng.random_range(0..5) {
        0 => {
            for _ in 0..rng.random_range(1..8) {
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
        }
        1 => bytes.truncate(rng.random_range(0..=bytes.len())),
        2 => {
            let mut lines: Vec<&str> = base.lines().collect();
            for _ in 0..rng.random_range(1..6) {
                if lines.is_empty() {
                    break;
                }
                let i = rng.random_range(0..lines.len());
                if rng.random() {
                    let l = lines[i];
                    lines.insert(i, l);
                } else {
                    lines.remove(i);
                }
            }
            bytes = lines.join("\n").into_bytes();
        }
        3 => {
            // A huge repeat of one slice (length claims, deep nesting).
            if !bytes.is_empty() {
                let a = rng.random_range(0..bytes.len());
                let b = (a + rng.random_range(1..32)).min(bytes.len());
                let piece = bytes[a..b].to_vec();
                for _ in 0..rng.random_range(10..2000) {
                    bytes.splice(a..a, piece.iter().copied());
                }
            }
        }
        _ => {
            bytes = (0..rng.random_range(0..400))
                .map(|_| rng.random())
                .collect();
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn main() {
    let args = Args::parse();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    // Panics are counted, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut broken = 0usize;
    println!("| target | cases | cases/s | slowest case | broken contracts | panics |\n|---|---|---|---|---|---|");
    for t in targets() {
        let base = (t.base)();
        let (mut cases, mut panics, mut bad) = (0u64, 0u64, 0u64);
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        let limit = Duration::from_secs(args.seconds);
        while started.elapsed() < limit {
            let text = mutate(&base, &mut rng);
            let t0 = Instant::now();
            let outcome = std::panic::catch_unwind(|| (t.check)(&text));
            slowest = slowest.max(t0.elapsed());
            cases += 1;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    bad += 1;
                    if bad <= 3 {
                        eprintln!("{}: {why}: {text:?}", t.name);
                    }
                }
                Err(_) => {
                    panics += 1;
                    if panics <= 3 {
                        eprintln!("{}: PANIC on {text:?}", t.name);
                    }
                }
            }
        }
        broken += (bad + panics) as usize;
        let wall = started.elapsed().as_secs_f64();
        println!(
            "| {} | {cases} | {:.0} | {:.2} ms | {bad} | {panics} |",
            t.name,
            cases as f64 / wall,
            slowest.as_secs_f64() * 1e3
        );
    }
    if broken > 0 {
        std::process::exit(1);
    }
}
