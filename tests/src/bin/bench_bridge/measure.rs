//! The ZeroMQ measurements, direct and bridged alike: REQ/REP round trips, pipelined DEALER
//! throughput through an echo ROUTER, and the table comparing the two.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mesh_bridge::Bytes;
use tokio::sync::Semaphore;
use zeromq::{DealerSocket, ReqSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::{quantile_us, Args, Endpoints, Only, SIZES};

/// One measurement alone, as `--only` asks (for profiling).
async fn measure_only(args: &Args, eps: &Endpoints, only: Only) -> Result<()> {
    for (size, label) in SIZES {
        if args.size.is_some_and(|s| s != size) {
            continue;
        }
        let (direct, rtt) = match only {
            Only::DirectRtt => (true, true),
            Only::BridgedRtt => (false, true),
            Only::DirectThroughput => (true, false),
            Only::BridgedThroughput => (false, false),
        };
        if rtt {
            let ep = if direct {
                &eps.direct_rep
            } else {
                &eps.bridged_rep
            };
            let before = eps.rep_bridge.counters();
            let h = round_trips(ep, size, args.round_trips).await?;
            let after = eps.rep_bridge.counters();
            // Inside the bridge: from the request leaving the client side's loop to its reply
            // coming back (QUIC both ways and the whole service side).
            let inside = (after.rtt_count > before.rtt_count).then(|| {
                let total = |c: &mesh_bridge::CounterSnapshot| {
                    c.rtt_mean.unwrap_or_default().as_secs_f64() * c.rtt_count as f64
                };
                1e6 * (total(&after) - total(&before)) / (after.rtt_count - before.rtt_count) as f64
            });
            println!(
                "{only:?} {label}: p50 {} µs, p99 {} µs{}",
                quantile_us(&h, 0.5),
                quantile_us(&h, 0.99),
                inside
                    .map(|us| format!(", mean inside the bridge {us:.0} µs"))
                    .unwrap_or_default()
            );
        } else {
            let ep = if direct {
                &eps.direct_router
            } else {
                &eps.bridged_router
            };
            let m = if size > 1024 {
                (args.messages / 10).max(100)
            } else {
                args.messages
            };
            let rate = throughput(ep, size, m, args.window).await?;
            println!(
                "{only:?} {label}: {rate:.0} msg/s ({:.1} MiB/s)",
                rate * size as f64 / (1024.0 * 1024.0)
            );
        }
    }
    Ok(())
}

pub(super) async fn measure(args: &Args, eps: &Endpoints, setup: &str) -> Result<()> {
    if let Some(only) = args.only {
        return measure_only(args, eps, only).await;
    }
    // Direct and bridged alternate, round after round, so that load from elsewhere on a
    // shared machine hits both alike; the table shows the median of the rounds.
    let rounds = args.rounds.max(1);
    let mut rtt: Vec<[Vec<u64>; 4]> = vec![Default::default(); SIZES.len()];
    let mut rate: Vec<[Vec<f64>; 2]> = vec![Default::default(); SIZES.len()];
    for _ in 0..rounds {
        for (i, (size, _)) in SIZES.into_iter().enumerate() {
            let n = if size > 1024 {
                args.round_trips / 4
            } else {
                args.round_trips
            };
            let d = round_trips(&eps.direct_rep, size, n).await?;
            let b = round_trips(&eps.bridged_rep, size, n).await?;
            rtt[i][0].push(quantile_us(&d, 0.5));
            rtt[i][1].push(quantile_us(&b, 0.5));
            rtt[i][2].push(quantile_us(&d, 0.99));
            rtt[i][3].push(quantile_us(&b, 0.99));
        }
        for (i, (size, _)) in SIZES.into_iter().enumerate() {
            let m = if size > 1024 {
                (args.messages / 10).max(100)
            } else {
                args.messages
            };
            rate[i][0].push(throughput(&eps.direct_router, size, m, args.window).await?);
            rate[i][1].push(throughput(&eps.bridged_router, size, m, args.window).await?);
        }
    }
    let verdict = |met: bool| if met { "**met**" } else { "not met" };
    println!("### Bridged vs direct ZeroMQ ({setup})\n");
    println!("| measurement | size | direct | bridged | bridged / direct | goal |");
    println!("|---|---|---|---|---|---|");
    for (i, (_, label)) in SIZES.into_iter().enumerate() {
        let [d50, b50, d99, b99] = rtt[i].clone().map(median_u64);
        let ratio = b50 as f64 / d50.max(1) as f64;
        println!(
            "| REQ/REP round trip p50 | {label} | {d50} µs | {b50} µs | {ratio:.2}x | ≤ 2.5x: {} |",
            verdict(ratio <= 2.5)
        );
        println!(
            "| REQ/REP round trip p99 | {label} | {d99} µs | {b99} µs | {:.2}x | |",
            b99 as f64 / d99.max(1) as f64
        );
    }
    for (i, (size, label)) in SIZES.into_iter().enumerate() {
        let [d, b] = rate[i].clone().map(median_f64);
        let mib = |rate: f64| rate * size as f64 / (1024.0 * 1024.0);
        let share = 100.0 * b / d.max(1.0);
        println!(
            "| pipelined DEALER throughput | {label} | {:.0} msg/s ({:.1} MiB/s) | {:.0} msg/s ({:.1} MiB/s) | {share:.0}% | ≥ 50%: {} |",
            d,
            mib(d),
            b,
            mib(b),
            verdict(share >= 50.0)
        );
    }
    println!(
        "\nMedians of {rounds} rounds; in each, direct then bridged. Round trips: {} per size for \
         64 B, a quarter of that for 64 KiB, after a 10% warm-up, one REQ. Throughput: {} \
         messages of 64 B, a tenth for 64 KiB, one DEALER with {} in flight, echoed by a ROUTER.",
        args.round_trips, args.messages, args.window
    );
    Ok(())
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn round_trips(endpoint: &str, size: usize, n: usize) -> Result<Histogram<u64>> {
    let mut req = ReqSocket::new();
    req.connect(endpoint)
        .await
        .with_context(|| format!("connect REQ to {endpoint}"))?;
    let payload = Bytes::from(vec![0x5au8; size]);
    let mut hist = Histogram::<u64>::new(3)?;
    let warm = n / 10;
    for i in 0..warm + n {
        let started = Instant::now();
        req.send(ZmqMessage::from(payload.clone())).await?;
        let reply = req.recv().await?;
        let took = started.elapsed();
        if reply.get(0).map(Bytes::len) != Some(size) {
            bail!("wrong reply size from {endpoint}");
        }
        if i >= warm {
            hist.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))?;
        }
    }
    Ok(hist)
}

/// Messages per second through an echo ROUTER with `window` requests in flight.
async fn throughput(endpoint: &str, size: usize, m: usize, window: usize) -> Result<f64> {
    let mut dealer = DealerSocket::new();
    dealer
        .connect(endpoint)
        .await
        .with_context(|| format!("connect DEALER to {endpoint}"))?;
    // Warm-up round trip so connection set-up is not measured.
    dealer
        .send(ZmqMessage::from(Bytes::from_static(b"warm")))
        .await?;
    dealer.recv().await?;
    let (mut send, mut recv) = dealer.split();
    let permits = Arc::new(Semaphore::new(window));
    let payload = Bytes::from(vec![0xa5u8; size]);
    let started = Instant::now();
    let sender = {
        let permits = permits.clone();
        tokio::spawn(async move {
            for _ in 0..m {
                let permit = permits.acquire().await?;
                permit.forget();
                send.send(ZmqMessage::from(payload.clone())).await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    for _ in 0..m {
        let reply = tokio::time::timeout(Duration::from_secs(30), recv.recv())
            .await
            .context("no reply within 30 s")??;
        if reply.get(0).map(Bytes::len) != Some(size) {
            bail!("wrong reply size from {endpoint}");
        }
        permits.add_permits(1);
    }
    sender.await??;
    Ok(m as f64 / started.elapsed().as_secs_f64())
}
