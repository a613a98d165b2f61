//! Issue #11's numbers for replicated volumes, all measured in one run on
//! one machine, so they can be compared with each other:
//!
//! 1. fsync'd 4 KiB write latency (p50/p99) written by a process in a real
//!    Podman container, on a replicated volume (FUSE image, loop device,
//!    ext4, `ReplicatingSink` to a standby over real mutual-TLS QUIC
//!    `Tunnels` on loopback), on the same stack with the `LocalSink`, on a
//!    Podman named volume and on a plain loop-device ext4; and the tunnel's
//!    round trip, for the goal "replicated p50 <= local p50 + 2 round trips
//!    + 0.5 ms".
//! 2. Sequential write throughput (64 KiB writes, fsync every 8 MiB).
//! 3. Resync through the real tunnel: full sync of a fresh standby, and a
//!    checksum resync after 10% of the blocks changed while it was away.
//! 4. The process's memory with three replicated volumes under a burst.
//!
//! ```sh
//! cargo bench -p mesh-volumes --bench volumes            # the full run
//! cargo bench -p mesh-volumes --bench volumes -- --quick # a smoke run
//! cargo bench -p mesh-volumes --bench volumes -- --only=1,3
//! cargo bench -p mesh-volumes --bench volumes -- --window-kib=2048
//! ```
//!
//! `--window-kib` sets the primaries' in-flight window (default 8 MiB, one
//! write per 32 KiB of it): what they may have sent and not yet seen
//! flushed, the main term of their memory.
//!
//! Needs root, /dev/fuse, losetup, mkfs.ext4 and Podman with runc. The
//! standby runs in this process (its own `Tunnels` endpoint on loopback),
//! so its fdatasyncs hit the same disk as the primary's.
//!
//! The container's writer is this very executable (mode `--fsync-writer`),
//! run by `podman run --rootfs` on an empty root with the host's `/usr`
//! bind-mounted read-only for its shared libraries: no image and no
//! registry needed.
//!
//! Everything is created under one temporary directory and with names that
//! carry the process id; guards remove it on exit and on a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bridge::{Channel, PeerAddr, TunnelConfig, Tunnels};
use mesh_certs::{CertificateAuthority, Identity, MeshTls, Role, Validity};
use mesh_volumes::local::{check_prerequisites, LocalSink, LocalVolume, VolumeConfig, WriteSink};
use mesh_volumes::replication::transport::{
    serve_standby, Coordinator, CoordinatorError, OutdateAnswer, StandbyHandle,
};
use mesh_volumes::replication::{
    PrimaryConfig, ReplicatingSink, SinkConfig, Standby, Standing, VolumeIdentity,
};

const WRITER_MODE: &str = "--fsync-writer";
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The file each fsync writer overwrites at random 4 KiB offsets.
const LATENCY_FILE: u64 = 16 * MIB;
/// The primaries' in-flight window in bytes (`--window-kib`), set once.
static WINDOW: AtomicU64 = AtomicU64::new(8 * MIB);

/// Writes in flight allowed with a window of `bytes`: one per 32 KiB,
/// at least 16.
fn window_writes(bytes: u64) -> usize {
    (bytes / (32 * KIB)).max(16) as usize
}

/// How much each figure does; `--quick` shrinks all of it.
struct Sizes {
    quick: bool,
    latency_writes: usize,
    latency_warmup: usize,
    host_writes: usize,
    rtt_probes: usize,
    stack_volume: u64,
    throughput_total: u64,
    throughput_rounds: usize,
    resync_volume: u64,
    memory_volume: u64,
    memory_burst: u64,
    /// The primary's in-flight window (bytes sent, not yet flushed).
    window: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                latency_writes: 200,
                latency_warmup: 20,
                host_writes: 100,
                rtt_probes: 200,
                stack_volume: 128 * MIB,
                throughput_total: 32 * MIB,
                throughput_rounds: 1,
                resync_volume: 128 * MIB,
                memory_volume: 64 * MIB,
                memory_burst: 16 * MIB,
                window: 8 * MIB,
            }
        } else {
            Sizes {
                quick,
                latency_writes: 2000,
                latency_warmup: 100,
                host_writes: 500,
                rtt_probes: 2000,
                stack_volume: 512 * MIB,
                throughput_total: 256 * MIB,
                throughput_rounds: 3,
                resync_volume: GIB,
                memory_volume: 256 * MIB,
                memory_burst: 64 * MIB,
                window: 8 * MIB,
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WRITER_MODE) {
        std::process::exit(writer_main(&args[2..]));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<u32>> = args
        .iter()
        .find_map(|a| a.strip_prefix("--only="))
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let wanted = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    let mut sizes = Sizes::new(quick);
    if let Some(w) = args.iter().find_map(|a| a.strip_prefix("--window-kib=")) {
        sizes.window = w.parse::<u64>().expect("--window-kib=N") * KIB;
    }
    WINDOW.store(sizes.window, Ordering::SeqCst);

    check_prerequisites().expect("the benchmark needs root, /dev/fuse, losetup and mkfs.ext4");
    let start_rss = proc_status_kib("VmRSS");
    let dir = tempfile::Builder::new()
        .prefix(&format!("mesh-volbench-{}-", std::process::id()))
        .tempdir()
        .expect("a temporary directory");
    let podman = Podman::new(dir.path());

    println!("# Replicated volumes (issue #11)\n");
    let extra: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    println!(
        "command: `cargo bench -p mesh-volumes --bench volumes{}{}`",
        if extra.is_empty() { "" } else { " -- " },
        extra.join(" ")
    );
    println!(
        "primary's in-flight window {} KiB ({} writes); commit {}, kernel {}, {} CPUs; temporary files under {}\n",
        sizes.window / KIB,
        window_writes(sizes.window),
        command_line(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD"
            ]
        ),
        command_line("uname", &["-r"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.path().display()
    );

    let mut goals: Vec<(String, bool)> = Vec::new();
    // Memory first, while the process has done nothing else.
    if wanted(4) {
        goals.extend(figure_memory(&sizes, dir.path(), start_rss));
    }
    if wanted(1) || wanted(2) {
        goals.extend(figures_latency_and_throughput(
            &sizes,
            dir.path(),
            &podman,
            wanted(1),
            wanted(2),
        ));
    }
    if wanted(3) {
        goals.extend(figure_resync(&sizes, dir.path()));
    }

    println!("## Goals\n");
    println!("| goal | result |\n| --- | --- |");
    for (goal, met) in &goals {
        println!("| {goal} | {} |", if *met { "PASS" } else { "FAIL" });
    }
    if sizes.quick {
        println!("\n(--quick: smaller sizes than the goals name; a smoke run, not the figures)");
    }
}

// ---------------------------------------------------------------------------
// Figure 1: fsync'd 4 KiB write latency. Figure 2: sequential throughput.
// ---------------------------------------------------------------------------

/// The stacks of figures 1 and 2. Dropped in field order: the volumes are
/// detached before the sink, the tunnels and the runtime go.
struct Stacks {
    replicated: LocalVolume,
    fuse_local: LocalVolume,
    raw: RawExt4,
    named: NamedVolume,
    replica: Replica,
    coordinator: Arc<BenchCoordinator>,
    net: Net,
}

fn figures_latency_and_throughput(
    sizes: &Sizes,
    tmp: &Path,
    podman: &Podman,
    latency: bool,
    throughput: bool,
) -> Vec<(String, bool)> {
    let mut goals = Vec::new();
    let pid = std::process::id();
    let dir = tmp.join("stacks");
    std::fs::create_dir_all(&dir).expect("the stacks' directory");
    let size = sizes.stack_volume;
    let net = Net::new();
    let coordinator = Arc::new(BenchCoordinator::default());

    let repl_cfg = VolumeConfig::new(&format!("repl-{pid}"), size, &dir.join("primary"));
    let image = new_image(&repl_cfg.image_path(), size);
    let replica = Replica::start(
        &net,
        coordinator.clone(),
        identity(&repl_cfg.name, size, 4096),
        image,
        &dir.join("standby"),
        Duration::from_secs(2),
    );
    replica.wait_in_sync(Duration::from_secs(30));
    let replicated =
        LocalVolume::attach(&repl_cfg, replica.sink.clone()).expect("attach the replicated volume");
    let local_cfg = VolumeConfig::new(&format!("local-{pid}"), size, &dir.join("local"));
    let fuse_local =
        LocalVolume::attach(&local_cfg, Arc::new(LocalSink)).expect("attach the local volume");
    let raw = RawExt4::create(&dir.join("raw"), size);
    let named = NamedVolume::create(podman, &format!("mesh-volbench-{pid}"));
    let mut stacks = Stacks {
        replicated,
        fuse_local,
        raw,
        named,
        replica,
        coordinator,
        net,
    };
    // ext4's lazy inode table init writes in the background after the
    // first mount of a new file system: let it finish before measuring.
    let settled = settle(&stacks);
    println!(
        "(the new file systems' background writes stopped {} after the attach)\n",
        secs(settled)
    );

    if latency {
        goals.extend(figure_latency(sizes, tmp, podman, &stacks));
    }
    if throughput {
        goals.extend(figure_throughput(sizes, &stacks));
    }
    let asked = stacks.coordinator.asked.load(Ordering::SeqCst);
    if asked > 0 {
        println!(
            "WARNING: the primary asked {asked} times to outdate its standby (an fsync waited over 2 s); the bench refused, so every fsync still waited for the standby\n"
        );
    }
    stacks
        .replicated
        .detach()
        .expect("detach the replicated volume");
    stacks.fuse_local.detach().expect("detach the local volume");
    let s = stacks.replica.sink.status();
    assert_eq!(s.standing, Standing::InSync, "the standby fell out: {s:?}");
    goals
}

fn figure_latency(sizes: &Sizes, tmp: &Path, podman: &Podman, st: &Stacks) -> Vec<(String, bool)> {
    let n = sizes.latency_writes;
    let before = fuse_counts(&st.replicated);
    let paths: [(&str, &Path, &str, bool); 4] = [
        (
            "replicated (FUSE + ext4, ReplicatingSink over the tunnel)",
            st.replicated.mount_point(),
            "/replicated",
            true,
        ),
        (
            "same FUSE stack, LocalSink (not replicated)",
            st.fuse_local.mount_point(),
            "/fuse-local",
            true,
        ),
        (
            "Podman named volume (host ext4)",
            &st.named.mountpoint,
            "/podman-volume",
            false,
        ),
        (
            "raw ext4 on a loop device (plain image file, no FUSE)",
            &st.raw.mount,
            "/raw-ext4",
            false,
        ),
    ];
    let started = Instant::now();
    let in_container = container_fsync_writes(
        podman,
        tmp,
        &st.named.name,
        &paths.map(|(_, src, dst, rslave)| (src, dst, rslave)),
        n,
        sizes.latency_warmup,
    );
    let container_time = started.elapsed();
    let after = fuse_counts(&st.replicated);
    let host = fsync_writes(
        &[st.replicated.mount_point(), st.raw.mount.as_path()],
        sizes.host_writes,
        sizes.latency_warmup,
        7,
    )
    .expect("the host's fsync writes");

    let rtt = measure_round_trips(sizes, &st.net, st.coordinator.clone(), tmp);

    println!("## 1. fsync'd 4 KiB write latency\n");
    println!(
        "Each path: a 16 MiB file, then {n} writes of 4 KiB at random 4 KiB-aligned offsets, each followed by fsync(2), timed from pwrite to fsync's return ({} warm-up writes not counted). One process in one Podman container (runc, `--network none`) writes all four paths, one write to each in turn, so drift hits all alike; {:.1} s in all.\n",
        sizes.latency_warmup,
        container_time.as_secs_f64()
    );
    println!("| path (written from inside the container) | p50 | p90 | p99 | max |");
    println!("| --- | --- | --- | --- | --- |");
    let mut sorted: Vec<Vec<Duration>> = in_container;
    for v in &mut sorted {
        v.sort();
    }
    for ((label, _, _, _), v) in paths.iter().zip(&sorted) {
        println!(
            "| {label} | {} | {} | {} | {} |",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99)),
            ms(pct(v, 1.0))
        );
    }
    let mut host_sorted = host;
    for v in &mut host_sorted {
        v.sort();
    }
    for (label, v) in ["replicated", "raw ext4 on a loop device"]
        .iter()
        .zip(&host_sorted)
    {
        println!(
            "| {label}, written by the benchmark process on the host ({} writes) | {} | {} | {} | {} |",
            v.len(),
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99)),
            ms(pct(v, 1.0))
        );
    }
    let writes = after.0 - before.0;
    let flushes = after.1 - before.1;
    println!(
        "\nThe replicated FUSE server saw {writes} writes and {flushes} fsyncs during the container's run: {:.2} writes and {:.2} fsyncs (each one a round trip to the standby and its fdatasync) per fsync the writer made.\n",
        writes as f64 / (n + sizes.latency_warmup) as f64,
        flushes as f64 / (n + sizes.latency_warmup) as f64
    );

    println!("Round trips to the standby, same process, same `Tunnels` connection:\n");
    println!("| probe | p50 | p99 |\n| --- | --- | --- |");
    for (label, v) in &rtt {
        println!("| {label} | {} | {} |", ms(pct(v, 0.5)), ms(pct(v, 0.99)));
    }
    let quic_rtt = st.net.primary.rtt("standby");
    if let Some(r) = quic_rtt {
        println!("\n(quinn's own RTT estimate of the connection: {})", ms(r));
    }
    let round_trip = pct(&rtt[0].1, 0.5);
    let replicated = pct(&sorted[0], 0.5);
    let mut goals = Vec::new();
    println!();
    for (name, i) in [("Podman named volume", 2), ("raw ext4 on a loop device", 3)] {
        let local = pct(&sorted[i], 0.5);
        let bound = local + 2 * round_trip + Duration::from_micros(500);
        let met = replicated <= bound;
        println!(
            "Goal, local = {name}: replicated p50 {} <= local p50 {} + 2 x round trip {} + 0.5 ms = {}: {}",
            ms(replicated),
            ms(local),
            ms(round_trip),
            ms(bound),
            if met { "PASS" } else { "FAIL" }
        );
        goals.push((
            format!(
                "1. fsync'd 4 KiB p50: replicated {} <= {name} {} + 2 RTT + 0.5 ms = {}",
                ms(replicated),
                ms(local),
                ms(bound)
            ),
            met,
        ));
    }
    println!();
    goals
}

/// Waits until neither FUSE server nor the raw loop device has written
/// anything for a second (at most a minute); how long that took.
fn settle(st: &Stacks) -> Duration {
    let t = Instant::now();
    let dev = st.raw.device.trim_start_matches("/dev/").to_string();
    let counters = || {
        let raw = std::fs::read_to_string(format!("/sys/block/{dev}/stat")).unwrap_or_default();
        (
            fuse_counts(&st.replicated).0,
            fuse_counts(&st.fuse_local).0,
            raw.split_whitespace().nth(6).map(str::to_string),
        )
    };
    let mut last = counters();
    let mut quiet_since = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        let now = counters();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    t.elapsed()
}

/// (FUSE writes, FUSE fsyncs) the volume's server has seen so far.
fn fuse_counts(v: &LocalVolume) -> (u64, u64) {
    let s = v.stats().expect("an attached volume has a server");
    (
        s.writes.load(Ordering::Relaxed),
        s.fsyncs.load(Ordering::Relaxed),
    )
}

/// Runs the fsync writer in one container that bind-mounts every target;
/// latencies per target, in order.
fn container_fsync_writes(
    podman: &Podman,
    tmp: &Path,
    named_volume: &str,
    targets: &[(&Path, &str, bool)],
    count: usize,
    warmup: usize,
) -> Vec<Vec<Duration>> {
    let rootfs = tmp.join("writer-rootfs");
    std::fs::create_dir_all(&rootfs).expect("the writer's root");
    for (link, to) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
    ] {
        let p = rootfs.join(link);
        if !p.exists() {
            std::os::unix::fs::symlink(to, &p).expect("a symlink in the writer's root");
        }
    }
    let exe = std::env::current_exe().expect("the benchmark's executable");
    let name = format!("mesh-volbench-writer-{}", std::process::id());
    let _container = ContainerGuard {
        podman,
        name: name.clone(),
    };
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        name,
        "--network".into(),
        "none".into(),
        "-v".into(),
        "/usr:/usr:ro".into(),
        "-v".into(),
        format!("{}:/fsync-writer:ro", exe.display()),
    ];
    let mut dsts = Vec::new();
    for (src, dst, rslave) in targets {
        if src.starts_with(podman.volumes_root()) {
            args.push("-v".into());
            args.push(format!("{named_volume}:{dst}"));
        } else {
            args.push("--mount".into());
            args.push(format!(
                "type=bind,src={},dst={dst}{}",
                src.display(),
                if *rslave {
                    ",bind-propagation=rslave"
                } else {
                    ""
                }
            ));
        }
        dsts.push(dst.to_string());
    }
    args.push("--rootfs".into());
    args.push(rootfs.display().to_string());
    args.push("/fsync-writer".into());
    args.push(WRITER_MODE.into());
    args.push(count.to_string());
    args.push(warmup.to_string());
    args.push("42".into());
    args.extend(dsts);
    let out = podman.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "the container's writer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lat = vec![Vec::with_capacity(count); targets.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("lat") {
            continue;
        }
        let (Some(j), Some(ns)) = (f.next(), f.next()) else {
            continue;
        };
        let (j, ns): (usize, u64) = (j.parse().expect("index"), ns.parse().expect("nanos"));
        lat[j].push(Duration::from_nanos(ns));
    }
    for (v, (src, _, _)) in lat.iter().zip(targets) {
        assert_eq!(v.len(), count, "samples from {}", src.display());
    }
    lat
}

/// The container's side: `--fsync-writer COUNT WARMUP SEED PATH...`;
/// prints `lat INDEX NANOS` per measured write.
fn writer_main(args: &[String]) -> i32 {
    let parse = |i: usize| -> Option<u64> { args.get(i)?.parse().ok() };
    let (Some(count), Some(warmup), Some(seed)) = (parse(0), parse(1), parse(2)) else {
        eprintln!("usage: {WRITER_MODE} COUNT WARMUP SEED PATH...");
        return 2;
    };
    let paths: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    match fsync_writes(&refs, count as usize, warmup as usize, seed) {
        Ok(lat) => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            for (j, v) in lat.iter().enumerate() {
                for d in v {
                    let _ = writeln!(out, "lat {j} {}", d.as_nanos());
                }
            }
            let _ = out.flush();
            0
        }
        Err(e) => {
            eprintln!("fsync writer: {e}");
            1
        }
    }
}

/// In each directory, a file of [`LATENCY_FILE`] bytes, then rounds of one
/// 4 KiB pwrite + fsync per directory (the order rotating), `warmup` of
/// them not counted. Returns the latencies per directory, in order.
fn fsync_writes(
    dirs: &[&Path],
    count: usize,
    warmup: usize,
    seed: u64,
) -> std::io::Result<Vec<Vec<Duration>>> {
    let mut rng = Rng(seed | 1);
    let mut files = Vec::new();
    let mut chunk = vec![0u8; MIB as usize];
    for dir in dirs {
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("fsync-latency.dat"))?;
        for off in (0..LATENCY_FILE).step_by(chunk.len()) {
            rng.fill(&mut chunk);
            f.write_all_at(&chunk, off)?;
        }
        f.sync_all()?;
        File::open(dir)?.sync_all()?;
        files.push(f);
    }
    let mut out = vec![Vec::with_capacity(count); dirs.len()];
    let mut buf = [0u8; 4096];
    for i in 0..warmup + count {
        for k in 0..files.len() {
            let j = (i + k) % files.len();
            rng.fill(&mut buf);
            let offset = rng.below(LATENCY_FILE / 4096) * 4096;
            let t = Instant::now();
            files[j].write_all_at(&buf, offset)?;
            files[j].sync_all()?;
            let d = t.elapsed();
            if i >= warmup {
                out[j].push(d);
            }
        }
    }
    Ok(out)
}

/// Round trips to the standby: a QUIC echo on a channel of the same
/// `Tunnels` connection, and the replication protocol's own Flush/Ack
/// through a probe volume's `ReplicatingSink`.
fn measure_round_trips(
    sizes: &Sizes,
    net: &Net,
    coordinator: Arc<BenchCoordinator>,
    tmp: &Path,
) -> Vec<(String, Vec<Duration>)> {
    let n = sizes.rtt_probes;
    let channel = format!("bench-echo/{}", std::process::id());
    net.standby().serve_channel(&channel, echo);
    let peer = net.peer();
    let mut results = Vec::new();
    let (small, page) = net.rt.block_on(async {
        let (mut send, mut recv) = net
            .primary
            .open_channel(&peer, &channel)
            .await
            .expect("open the echo channel");
        let one = |len: usize| {
            let mut frame = (len as u32).to_le_bytes().to_vec();
            frame.resize(4 + len, 0x5a);
            frame
        };
        let small = one(16);
        let page = one(4096);
        let mut back = vec![0u8; 4 + 4096];
        let mut times = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..2 * (n + 50) {
            let frame = if i % 2 == 0 { &small } else { &page };
            let t = Instant::now();
            send.write_all(frame).await.expect("echo write");
            recv.read_exact(&mut back[..frame.len()])
                .await
                .expect("echo read");
            let d = t.elapsed();
            if i >= 100 {
                if i % 2 == 0 {
                    times.0.push(d);
                } else {
                    times.1.push(d);
                }
            }
        }
        let _ = send.finish().await;
        times
    });
    net.standby().stop_channel(&channel);
    results.push((
        "QUIC echo, 16 B each way (the round trip the goal counts)".to_string(),
        small,
    ));
    results.push(("QUIC echo, 4 KiB each way".to_string(), page));

    // The protocol's round trip: a probe volume on the same connection.
    let size = 8 * MIB;
    let id = format!("rtt-probe-{}", std::process::id());
    let image = new_image(&tmp.join("stacks").join(format!("{id}.img")), size);
    let probe = Replica::start(
        net,
        coordinator,
        identity(&id, size, 4096),
        image.try_clone().expect("the probe's image"),
        &tmp.join("stacks").join("standby"),
        Duration::from_secs(2),
    );
    probe.wait_in_sync(Duration::from_secs(30));
    let mut rng = Rng(99);
    let (mut empty, mut page) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut data = [0u8; 4096];
    for i in 0..2 * (n + 50) {
        let t;
        if i % 2 == 0 {
            t = Instant::now();
            probe.sink.write(0, &[]).expect("probe write");
        } else {
            rng.fill(&mut data);
            let offset = rng.below(size / 4096) * 4096;
            image.write_all_at(&data, offset).expect("probe image");
            t = Instant::now();
            probe.sink.write(offset, &data).expect("probe write");
        }
        probe.sink.fsync().expect("probe fsync");
        let d = t.elapsed();
        if i >= 100 {
            if i % 2 == 0 {
                empty.push(d);
            } else {
                page.push(d);
            }
        }
    }
    results.push((
        "sink: empty Write + Flush -> Ack (standby fdatasync with nothing to write)".to_string(),
        empty,
    ));
    results.push((
        "sink: 4 KiB Write + Flush -> Ack (standby pwrite + fdatasync)".to_string(),
        page,
    ));
    for (_, v) in &mut results {
        v.sort();
    }
    results
}

async fn echo(ch: Channel) {
    let Channel {
        mut send, mut recv, ..
    } = ch;
    let mut buf = vec![0u8; 4 + 64 * KIB as usize];
    loop {
        if recv.read_exact(&mut buf[..4]).await.is_err() {
            return;
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > buf.len() - 4 || recv.read_exact(&mut buf[4..4 + len]).await.is_err() {
            return;
        }
        if send.write_all(&buf[..4 + len]).await.is_err() {
            return;
        }
    }
}

fn figure_throughput(sizes: &Sizes, st: &Stacks) -> Vec<(String, bool)> {
    let total = sizes.throughput_total;
    let paths: [(&str, &Path); 4] = [
        (
            "replicated (FUSE + ext4, ReplicatingSink)",
            st.replicated.mount_point(),
        ),
        ("same FUSE stack, LocalSink", st.fuse_local.mount_point()),
        ("raw ext4 on a loop device", &st.raw.mount),
        ("Podman named volume (host ext4)", &st.named.mountpoint),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 0..sizes.throughput_rounds {
        for k in 0..paths.len() {
            let j = (round + k) % paths.len();
            let took = sequential_write(paths[j].1, total).expect("sequential write");
            rates[j].push(total as f64 / MIB as f64 / took.as_secs_f64());
        }
    }
    println!("## 2. Sequential write throughput\n");
    println!(
        "{} MiB per run in 64 KiB write(2)s, fsync(2) after every 8 MiB and at the end, timed from open to the last fsync; written by the benchmark process on the host (not in a container); {} round(s), the paths' order rotating.\n",
        total / MIB,
        sizes.throughput_rounds
    );
    println!("| path | median MiB/s | each round |\n| --- | --- | --- |");
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    for ((label, _), v) in paths.iter().zip(&rates) {
        let each: Vec<String> = v.iter().map(|r| format!("{r:.0}")).collect();
        println!("| {label} | {:.0} | {} |", median(v), each.join(", "));
    }
    let repl = median(&rates[0]);
    let mut goals = Vec::new();
    println!();
    for (name, i) in [("the same FUSE stack with LocalSink", 1), ("raw ext4", 2)] {
        let local = median(&rates[i]);
        let ratio = repl / local;
        let met = ratio >= 0.5;
        println!(
            "Goal, local = {name}: replicated {repl:.0} MiB/s / {local:.0} MiB/s = {:.0}% >= 50%: {}",
            ratio * 100.0,
            if met { "PASS" } else { "FAIL" }
        );
        goals.push((
            format!(
                "2. sequential throughput: replicated {:.0}% of {name} (>= 50%)",
                ratio * 100.0
            ),
            met,
        ));
    }
    println!();
    goals
}

fn sequential_write(dir: &Path, total: u64) -> std::io::Result<Duration> {
    let path = dir.join("sequential.dat");
    let mut buf = vec![0u8; 64 * KIB as usize];
    Rng(total | 1).fill(&mut buf);
    let t = Instant::now();
    let mut f = File::create(&path)?;
    let mut since_sync = 0;
    let mut done = 0;
    while done < total {
        buf[..8].copy_from_slice(&done.to_le_bytes());
        f.write_all(&buf)?;
        done += buf.len() as u64;
        since_sync += buf.len() as u64;
        if since_sync >= 8 * MIB {
            f.sync_all()?;
            since_sync = 0;
        }
    }
    f.sync_all()?;
    let took = t.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    File::open(dir)?.sync_all()?;
    Ok(took)
}

// ---------------------------------------------------------------------------
// Figure 3: resync through the tunnel.
// ---------------------------------------------------------------------------

fn figure_resync(sizes: &Sizes, tmp: &Path) -> Vec<(String, bool)> {
    const BS: u32 = 64 * KIB as u32;
    let size = sizes.resync_volume;
    let dir = tmp.join("resync");
    std::fs::create_dir_all(&dir).expect("the resync directory");
    let id = format!("resync-{}", std::process::id());
    let primary_path = dir.join("primary.img");
    let primary = new_image(&primary_path, size);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut chunk = vec![0u8; 8 * MIB as usize];
    for off in (0..size).step_by(chunk.len()) {
        rng.fill(&mut chunk);
        primary.write_all_at(&chunk, off).expect("fill the primary");
    }
    primary.sync_all().expect("sync the primary");
    drop_cache(&primary);

    let mut net = Net::new();
    let coordinator = Arc::new(BenchCoordinator::default());
    coordinator.outdate_allowed.store(true, Ordering::SeqCst);
    let standby_dir = dir.join("standby");

    // Full sync of a fresh standby.
    let t = Instant::now();
    let mut replica = Replica::start(
        &net,
        coordinator.clone(),
        identity(&id, size, BS),
        primary.try_clone().expect("the primary image"),
        &standby_dir,
        Duration::from_millis(500),
    );
    let connected = replica.wait_connected(Duration::from_secs(30));
    replica.wait_in_sync(Duration::from_secs(600));
    let full = t.elapsed();
    let full_session = connected.map(|c| full.saturating_sub(c));

    // The standby's agent goes away; 10% of the blocks change meanwhile.
    net.standby().close();
    net.rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), net.standby().wait_closed()).await;
    });
    let s = replica
        .sink
        .wait_status(Duration::from_secs(30), |s| !s.connected);
    assert!(!s.connected, "the primary did not notice: {s:?}");
    replica.standby = None;
    let blocks = size / u64::from(BS);
    let mut block = vec![0u8; BS as usize];
    let mut changed = 0u64;
    for index in (0..blocks).step_by(10) {
        rng.fill(&mut block);
        let offset = index * u64::from(BS);
        primary
            .write_all_at(&block, offset)
            .expect("change a block");
        replica
            .sink
            .write(offset, &block)
            .expect("the sink's write");
        changed += 1;
    }
    primary.sync_data().expect("sync the primary");
    let t_alone = Instant::now();
    replica
        .sink
        .fsync()
        .expect("an fsync while the standby is away");
    let alone = t_alone.elapsed();
    let s = replica.sink.status();
    assert_eq!(s.standing, Standing::Outdated, "{s:?}");
    drop_cache(&primary);
    if let Ok(f) = File::open(standby_dir.join(format!("{id}.img"))) {
        drop_cache(&f);
    }

    // It comes back on the same address: a checksum resync.
    net.restart_standby();
    let t = Instant::now();
    replica.serve_standby_again(&net, &standby_dir);
    let connected = replica.wait_connected(Duration::from_secs(60));
    replica.wait_in_sync(Duration::from_secs(600));
    let partial = t.elapsed();
    let partial_session = connected.map(|c| partial.saturating_sub(c));
    let equal = images_equal(&primary_path, &standby_dir.join(format!("{id}.img")), size);

    let gib = size as f64 / GIB as f64;
    let opt = |d: Option<Duration>| d.map_or("-".to_string(), secs);
    println!("## 3. Resync through the tunnel\n");
    println!(
        "A {gib:.2} GiB volume of random data (64 KiB blocks), primary and standby image files on the same disk, the standby's agent in this process on its own `Tunnels` endpoint; page caches of both images dropped (fadvise DONTNEED) before each sync. Full sync: a fresh standby (all blocks sent). Resync: the standby's endpoint closed, {changed} of {blocks} blocks ({:.1}%) written through the `ReplicatingSink` while it was away (the coordinator outdated it after the fsync bound: that fsync took {}), then a new endpoint on the same address with the same image: BLAKE3 checksums of every block, the differing ones sent. Times until the sink reports the standby in sync (UpToDate).\n",
        changed as f64 * 100.0 / blocks as f64,
        secs(alone)
    );
    println!("| sync | from the start (sink started / standby back) | of which the session (connected to in sync) | rate of the session |");
    println!("| --- | --- | --- | --- |");
    let rate = |d: Option<Duration>, bytes: u64| {
        d.map_or("-".into(), |d| {
            format!("{:.0} MiB/s", bytes as f64 / MIB as f64 / d.as_secs_f64())
        })
    };
    println!(
        "| full initial sync, {gib:.2} GiB | {} | {} | {} |",
        secs(full),
        opt(full_session),
        rate(full_session, size)
    );
    println!(
        "| checksum resync, {:.1}% changed | {} | {} | {} of checksums |",
        changed as f64 * 100.0 / blocks as f64,
        secs(partial),
        opt(partial_session),
        rate(partial_session, size)
    );
    println!(
        "\nImages equal after the resync: {}.\n",
        if equal { "yes" } else { "NO" }
    );
    assert!(equal, "the standby's image differs from the primary's");
    let full_goal = full < Duration::from_secs(30);
    let partial_goal = partial < Duration::from_secs(15);
    println!(
        "Goal: full sync of {gib:.2} GiB {} < 30 s: {}; resync {} < 15 s: {}\n",
        secs(full),
        if full_goal { "PASS" } else { "FAIL" },
        secs(partial),
        if partial_goal { "PASS" } else { "FAIL" }
    );
    vec![
        (
            format!(
                "3. full sync of {gib:.2} GiB through the tunnel: {} (< 30 s)",
                secs(full)
            ),
            full_goal,
        ),
        (
            format!(
                "3. resync of {gib:.2} GiB, 10% changed, from the standby's return: {} (< 15 s)",
                secs(partial)
            ),
            partial_goal,
        ),
    ]
}

fn images_equal(a: &Path, b: &Path, size: u64) -> bool {
    let (a, b) = (
        File::open(a).expect("the primary image"),
        File::open(b).expect("the standby image"),
    );
    if b.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut x = vec![0u8; 8 * MIB as usize];
    let mut y = vec![0u8; 8 * MIB as usize];
    for off in (0..size).step_by(x.len()) {
        a.read_exact_at(&mut x, off).expect("read the primary");
        b.read_exact_at(&mut y, off).expect("read the standby");
        if x != y {
            return false;
        }
    }
    true
}

fn drop_cache(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

// ---------------------------------------------------------------------------
// Figure 4: memory.
// ---------------------------------------------------------------------------

fn figure_memory(sizes: &Sizes, tmp: &Path, start_rss: u64) -> Vec<(String, bool)> {
    const VOLUMES: usize = 3;
    let pid = std::process::id();
    let dir = tmp.join("memory");
    let size = sizes.memory_volume;
    let net = Net::new();
    let coordinator = Arc::new(BenchCoordinator::default());
    let mut replicas = Vec::new();
    let mut volumes = Vec::new();
    for i in 0..VOLUMES {
        let cfg = VolumeConfig::new(&format!("mem{i}-{pid}"), size, &dir.join("primary"));
        let image = new_image(&cfg.image_path(), size);
        let replica = Replica::start(
            &net,
            coordinator.clone(),
            identity(&cfg.name, size, 4096),
            image,
            &dir.join("standby"),
            Duration::from_secs(2),
        );
        replica.wait_in_sync(Duration::from_secs(30));
        volumes.push(LocalVolume::attach(&cfg, replica.sink.clone()).expect("attach a volume"));
        replicas.push(replica);
    }
    let attached_rss = proc_status_kib("VmRSS");
    // VmHWM from here on: "5" resets the peak to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(proc_status_kib("VmRSS"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let burst = sizes.memory_burst;
    let t = Instant::now();
    let writers: Vec<_> = volumes
        .iter()
        .map(|v| {
            let mp = v.mount_point().to_path_buf();
            std::thread::spawn(move || {
                let mut f = File::create(mp.join("burst.dat")).expect("the burst file");
                let mut buf = vec![0u8; 64 * KIB as usize];
                Rng(burst | 3).fill(&mut buf);
                let mut done = 0;
                while done < burst {
                    buf[..8].copy_from_slice(&done.to_le_bytes());
                    f.write_all(&buf).expect("burst write");
                    done += buf.len() as u64;
                    if done % (16 * MIB) == 0 {
                        f.sync_all().expect("burst fsync");
                    }
                }
                f.sync_all().expect("burst fsync");
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a burst writer");
    }
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    sampler.join().expect("the sampler");
    let hwm = proc_status_kib("VmHWM");
    let rss_after = proc_status_kib("VmRSS");
    let sampled = peak.load(Ordering::SeqCst);
    for v in &mut volumes {
        v.detach().expect("detach a volume");
    }
    for r in &replicas {
        let s = r.sink.status();
        assert_eq!(s.standing, Standing::InSync, "a standby fell out: {s:?}");
    }
    let asked = coordinator.asked.load(Ordering::SeqCst);
    drop(volumes);
    drop(replicas);
    drop(net);

    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    println!("## 4. Memory\n");
    println!(
        "{VOLUMES} replicated volumes of {} MiB (FUSE with 2 threads each, loop, ext4, ReplicatingSink with a {} KiB in-flight window) on one `Tunnels` connection; one thread per volume writes {} MiB in 64 KiB write(2)s as fast as it can, fsync every 16 MiB ({} in all, {:.0} MiB/s together). The standbys of all three volumes run in this same process, so this is the primary's and the standby's memory together. Read from /proc/self/status; VmHWM was reset (clear_refs 5) once the volumes were attached.\n",
        size / MIB,
        WINDOW.load(Ordering::SeqCst) / KIB,
        burst / MIB,
        secs(took),
        (VOLUMES as u64 * burst) as f64 / MIB as f64 / took.as_secs_f64()
    );
    println!("| when | RSS |\n| --- | --- |");
    println!(
        "| benchmark process at start (VmRSS) | {} |",
        mib(start_rss)
    );
    println!(
        "| {VOLUMES} volumes attached, idle (VmRSS) | {} |",
        mib(attached_rss)
    );
    println!("| peak during the burst (VmHWM) | **{}** |", mib(hwm));
    println!("| peak VmRSS sampled every 5 ms | {} |", mib(sampled));
    println!("| after the burst (VmRSS) | {} |", mib(rss_after));
    if asked > 0 {
        println!("\nWARNING: the primaries asked {asked} times to outdate a standby (refused).");
    }
    let met = hwm < 64 * 1024;
    println!(
        "\nGoal: VmHWM {} < 64 MiB: {}\n",
        mib(hwm),
        if met { "PASS" } else { "FAIL" }
    );
    vec![(
        format!(
            "4. memory with {VOLUMES} volumes under a burst: VmHWM {} (< 64 MiB)",
            mib(hwm)
        ),
        met,
    )]
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

// ---------------------------------------------------------------------------
// The replication rig: two `Tunnels` endpoints, a standby, a sink.
// ---------------------------------------------------------------------------

/// Two agents' tunnel endpoints on loopback. Dropped in field order: the
/// endpoints, then the runtime.
struct Net {
    primary: Tunnels,
    standby: Option<Tunnels>,
    standby_addr: std::net::SocketAddr,
    ca: CertificateAuthority,
    rt: tokio::runtime::Runtime,
}

impl Net {
    fn new() -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let ca = CertificateAuthority::generate("bench", Validity::days(1)).expect("a CA");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let (primary, standby) = rt.block_on(async {
            (
                bind_tunnels(&ca, "primary", any).expect("the primary's endpoint"),
                bind_tunnels(&ca, "standby", any).expect("the standby's endpoint"),
            )
        });
        let standby_addr = standby.local_addr().expect("the standby's address");
        Net {
            primary,
            standby: Some(standby),
            standby_addr,
            ca,
            rt,
        }
    }

    fn standby(&self) -> &Tunnels {
        self.standby.as_ref().expect("the standby's endpoint is up")
    }

    fn peer(&self) -> PeerAddr {
        PeerAddr {
            node: "standby".into(),
            addr: self.standby_addr,
        }
    }

    /// A new standby endpoint on the old one's address (retrying while the
    /// old socket is still being released).
    fn restart_standby(&mut self) {
        if let Some(old) = self.standby.take() {
            old.close();
            self.rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), old.wait_closed()).await;
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = self.standby_addr;
        loop {
            match self
                .rt
                .block_on(async { bind_tunnels(&self.ca, "standby", addr) })
            {
                Ok(t) => {
                    self.standby = Some(t);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind the standby's endpoint again on {addr}: {e}"),
            }
        }
    }
}

fn bind_tunnels(
    ca: &CertificateAuthority,
    name: &str,
    addr: std::net::SocketAddr,
) -> mesh_bridge::Result<Tunnels> {
    let id = Identity::new("bench", Role::Agent, name).expect("an identity");
    let leaf = ca
        .issue(&id, &[], Validity::days(1))
        .expect("a certificate");
    let tls = MeshTls::from_pem(ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem).expect("TLS");
    let mut config = TunnelConfig::new(addr);
    config.connect_timeout = Duration::from_secs(3);
    Tunnels::bind(&tls, config)
}

/// The coordinator seam: counts the primary's outdate requests, and grants
/// them only where the figure wants it (the resync).
#[derive(Default)]
struct BenchCoordinator {
    outdate_allowed: AtomicBool,
    asked: AtomicU64,
}

impl Coordinator for BenchCoordinator {
    fn outdate_standby(
        &self,
        _group: &str,
        _epoch: u64,
        _request: u64,
    ) -> Result<OutdateAnswer, CoordinatorError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.outdate_allowed.load(Ordering::SeqCst) {
            Ok(OutdateAnswer::Outdated)
        } else {
            Err(CoordinatorError(
                "the benchmark keeps its standby in this phase".into(),
            ))
        }
    }
}

fn identity(volume_id: &str, size: u64, block_size: u32) -> VolumeIdentity {
    VolumeIdentity {
        volume_id: volume_id.into(),
        group: format!("{volume_id}-group"),
        size_bytes: size,
        block_size,
    }
}

/// The primary's window and timeouts, the same for every volume here.
fn sink_config(identity: VolumeIdentity, fsync_bound: Duration) -> SinkConfig {
    SinkConfig {
        primary: PrimaryConfig {
            identity,
            max_inflight_bytes: WINDOW.load(Ordering::SeqCst),
            max_inflight_writes: window_writes(WINDOW.load(Ordering::SeqCst)),
            fsync_bound,
            coordinator_retry: Duration::from_secs(1),
        },
        epoch: 1,
        next_seq: 1,
        // A brand-new standby is not UpToDate: the primary starts alone
        // and resyncs it.
        standby_outdated: true,
        open_timeout: Duration::from_secs(3),
        write_timeout: Duration::from_secs(3),
        reconnect_delay: Duration::from_millis(200),
    }
}

/// One replicated volume's primary sink and its standby.
struct Replica {
    sink: Arc<ReplicatingSink>,
    standby: Option<Arc<StandbyHandle<File>>>,
    identity: VolumeIdentity,
}

impl Replica {
    fn start(
        net: &Net,
        coordinator: Arc<BenchCoordinator>,
        identity: VolumeIdentity,
        primary_image: File,
        standby_dir: &Path,
        fsync_bound: Duration,
    ) -> Replica {
        let standby = open_standby(net, &identity, standby_dir);
        let sink = ReplicatingSink::start(
            sink_config(identity.clone(), fsync_bound),
            primary_image,
            net.primary.clone(),
            net.peer(),
            coordinator,
            net.rt.handle().clone(),
        )
        .expect("start the ReplicatingSink");
        Replica {
            sink: Arc::new(sink),
            standby: Some(standby),
            identity,
        }
    }

    fn serve_standby_again(&mut self, net: &Net, standby_dir: &Path) {
        self.standby = Some(open_standby(net, &self.identity, standby_dir));
    }

    fn wait_in_sync(&self, timeout: Duration) {
        let s = self.sink.wait_status(timeout, |s| {
            s.standing == Standing::InSync && s.synced == Some(true)
        });
        assert!(
            s.standing == Standing::InSync && s.synced == Some(true),
            "the standby of {} never came in sync: {s:?}",
            self.identity.volume_id
        );
    }

    /// How long until the sink had a stream to the standby.
    fn wait_connected(&self, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        let s = self.sink.wait_status(timeout, |s| s.connected);
        s.connected.then(|| t.elapsed())
    }
}

fn open_standby(net: &Net, identity: &VolumeIdentity, dir: &Path) -> Arc<StandbyHandle<File>> {
    std::fs::create_dir_all(dir).expect("the standby's directory");
    let id = &identity.volume_id;
    let standby = Standby::open(
        &dir.join(format!("{id}.img")),
        &dir.join(format!("{id}.state")),
        identity.clone(),
    )
    .expect("open the standby");
    let _enter = net.rt.enter();
    serve_standby(net.standby(), id, standby, Duration::from_secs(5))
}

/// A new all-zero image file of `size` bytes (its directory created).
fn new_image(path: &Path, size: u64) -> File {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("the image's directory");
    }
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create an image");
    f.set_len(size).expect("size the image");
    f
}

// ---------------------------------------------------------------------------
// Host resources, each removed by its guard.
// ---------------------------------------------------------------------------

/// Podman with runc and ulimits this kind of machine allows (a
/// containers.conf of the benchmark's own, unless CONTAINERS_CONF is set).
struct Podman {
    conf: Option<PathBuf>,
    volumes_root: PathBuf,
}

impl Podman {
    fn new(tmp: &Path) -> Podman {
        let conf = match std::env::var_os("CONTAINERS_CONF") {
            Some(_) => None,
            None => {
                let path = tmp.join("containers.conf");
                std::fs::write(
                    &path,
                    "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n",
                )
                .expect("write containers.conf");
                Some(path)
            }
        };
        let mut p = Podman {
            conf,
            volumes_root: PathBuf::new(),
        };
        let out = p.run(&["info", "--format", "{{.Store.VolumePath}}"]);
        assert!(
            out.status.success(),
            "podman info: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p.volumes_root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p
    }

    fn volumes_root(&self) -> &Path {
        &self.volumes_root
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("podman");
        cmd.args(args);
        if let Some(conf) = &self.conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd.output().expect("podman cannot run")
    }
}

struct ContainerGuard<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .run(&["rm", "--force", "--ignore", "--time", "0", &self.name]);
    }
}

/// A Podman named volume; removed on drop.
struct NamedVolume {
    conf: Option<PathBuf>,
    name: String,
    mountpoint: PathBuf,
}

impl NamedVolume {
    fn create(podman: &Podman, name: &str) -> NamedVolume {
        let out = podman.run(&["volume", "create", name]);
        assert!(
            out.status.success(),
            "podman volume create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v = NamedVolume {
            conf: podman.conf.clone(),
            name: name.to_string(),
            mountpoint: PathBuf::new(),
        };
        let out = podman.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", name]);
        assert!(out.status.success(), "podman volume inspect");
        v.mountpoint = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        v
    }
}

impl Drop for NamedVolume {
    fn drop(&mut self) {
        let mut cmd = Command::new("podman");
        cmd.args(["volume", "rm", "--force", &self.name]);
        if let Some(conf) = &self.conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        let _ = cmd.output();
    }
}

/// ext4 on a loop device (direct I/O, like the FUSE stack's) over a plain
/// image file: made with the same `mkfs.ext4 -E nodiscard` and mounted
/// with the same nosuid,nodev as a volume, minus FUSE and the sink.
struct RawExt4 {
    device: String,
    mount: PathBuf,
    mounted: bool,
}

impl RawExt4 {
    fn create(dir: &Path, size: u64) -> RawExt4 {
        let image = dir.join("raw.img");
        drop(new_image(&image, size));
        let image_s = image.to_str().expect("a UTF-8 path");
        let device = command_ok("losetup", &["--find", "--show", "--direct-io=on", image_s]);
        let mut raw = RawExt4 {
            device,
            mount: dir.join("mnt"),
            mounted: false,
        };
        command_ok("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &raw.device]);
        std::fs::create_dir_all(&raw.mount).expect("the raw mount point");
        let mount_s = raw.mount.to_str().expect("a UTF-8 path").to_string();
        command_ok("mount", &["-o", "nosuid,nodev", &raw.device, &mount_s]);
        raw.mounted = true;
        raw
    }
}

impl Drop for RawExt4 {
    fn drop(&mut self) {
        if self.mounted {
            let m = self.mount.to_string_lossy().to_string();
            if !command("umount", &[&m]).status.success() {
                let _ = command("umount", &["-l", &m]);
            }
        }
        let _ = command("losetup", &["-d", &self.device]);
    }
}

fn command(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run: {e}"))
}

fn command_ok(cmd: &str, args: &[&str]) -> String {
    let out = command(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command's first output line, or "?".
fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            b.copy_from_slice(&x[..b.len()]);
        }
    }
}

/// The `p` quantile of sorted samples (nearest rank below).
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
