//! Image copy benchmark (issue #16): `meshctl images copy` of a large image from mainpc to pc2
//! (two network namespaces, each agent with a Podman of its own, over the agents' mutual-TLS
//! tunnel) against `podman save | podman load` piped directly between the same two image
//! stores on one host (no network, no encryption, no checksum), rounds interleaved.
//! Then what is sent for a second image sharing the first one's base layer.
//!
//! Needs root and podman. Run:
//! `cargo build --release --bins && target/release/bench-image-copy --size-mib 1024`

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_system_busybox_image, import_rootfs_image};

#[derive(Parser, Debug)]
struct Args {
    /// Size of the image's one big file (incompressible), MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Rounds of each path.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn check(out: std::process::Output, what: &str) -> Result<String> {
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rmi(mesh: &MeshFixture, node: &str, image: &str) {
    let _ = mesh.podman(node).args(["rmi", "-f", image]).output();
}

/// `podman save` from mainpc's store piped into `podman load` into pc2's.
fn direct(mesh: &MeshFixture, image: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut save = mesh
        .podman("mainpc")
        .args(["save", "--format", "docker-archive", image])
        .stdout(Stdio::piped())
        .spawn()
        .context("podman save")?;
    let stdout = save.stdout.take().context("save stdout")?;
    let load = mesh
        .podman("pc2")
        .args(["load"])
        .stdin(stdout)
        .output()
        .context("podman load")?;
    let saved = save.wait()?;
    check(load, "podman load")?;
    if !saved.success() {
        bail!("podman save failed");
    }
    Ok(start.elapsed())
}

fn copy(mesh: &MeshFixture, image: &str) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let out = mesh.meshctl(
        "mainpc",
        &[
            "images", "copy", image, "--from", "mainpc", "--to", "pc2", "-o", "json",
        ],
    );
    let took = start.elapsed();
    let v: serde_json::Value = serde_json::from_str(&check(out, "meshctl images copy")?)?;
    Ok((took, v["bytes"].as_u64().unwrap_or(0)))
}

fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure_system_busybox_image();
    let mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let image = format!("localhost/bench-copy-{}:latest", std::process::id());
    let work = tempfile::tempdir()?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..args.size_mib * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    import_rootfs_image(
        &work.path().join("rootfs"),
        mesh.podman("mainpc"),
        &image,
        &[("/noise", &noise)],
    );
    drop(noise);
    // The agents' reports must list it before the coordinator lets it be copied.
    mesh_tests::wait::until(
        "mainpc reporting the image",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = mesh.meshctl("mainpc", &["images", "mainpc", "-o", "json"]);
            Ok(String::from_utf8_lossy(&out.stdout)
                .contains(&image)
                .then_some(()))
        },
    );
    let wait_gone = |node: &str| {
        mesh_tests::wait::until(
            "the image gone from pc2's report",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let out = mesh.meshctl("mainpc", &["images", node, "-o", "json"]);
                Ok((!String::from_utf8_lossy(&out.stdout).contains(&image)).then_some(()))
            },
        )
    };
    println!(
        "image {image}: {} MiB of incompressible data; {} CPUs; rounds interleaved",
        args.size_mib,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (mut d_rates, mut c_rates) = (Vec::new(), Vec::new());
    let mut archive = 0u64;
    for round in 1..=args.rounds {
        rmi(&mesh, "pc2", &image);
        let d = direct(&mesh, &image)?;
        rmi(&mesh, "pc2", &image);
        wait_gone("pc2");
        let (c, bytes) = copy(&mesh, &image)?;
        archive = bytes;
        let (dr, cr) = (mibs(bytes, d), mibs(bytes, c));
        println!(
            "round {round}: direct pipe {:.1} s ({dr:.0} MiB/s), meshctl images copy {:.1} s ({cr:.0} MiB/s), {:.0}%",
            d.as_secs_f64(),
            c.as_secs_f64(),
            cr / dr * 100.0
        );
        d_rates.push(dr);
        c_rates.push(cr);
    }
    let (dm, cm) = (median(d_rates), median(c_rates));
    println!();
    println!(
        "| path | MiB/s (median of {}) | share of direct |",
        args.rounds
    );
    println!("| --- | --- | --- |");
    println!("| podman save \\| podman load, one host | {dm:.0} | 100% |");
    println!(
        "| meshctl images copy, two namespaces, TLS tunnel, SHA-256 checked | {cm:.0} | {:.0}% |",
        cm / dm * 100.0
    );
    println!("archive: {archive} bytes");

    // Two images sharing a base: B is A plus a small file (a commit on top of A's layer).
    let ctr = format!("bench-base-{}", std::process::id());
    let derived = format!("localhost/bench-copy-derived-{}:latest", std::process::id());
    check(
        mesh.podman("mainpc")
            .args(["create", "--name", &ctr, &image, "/bin/true"])
            .output()?,
        "podman create",
    )?;
    std::fs::write(
        work.path().join("extra"),
        b"a small change on top of the base\n",
    )?;
    check(
        mesh.podman("mainpc")
            .arg("cp")
            .arg(work.path().join("extra"))
            .arg(format!("{ctr}:/extra"))
            .output()?,
        "podman cp",
    )?;
    check(
        mesh.podman("mainpc")
            .args(["commit", &ctr, &derived])
            .output()?,
        "podman commit",
    )?;
    let _ = mesh.podman("mainpc").args(["rm", "-f", &ctr]).output();
    mesh_tests::wait::until(
        "mainpc reporting the derived image",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = mesh.meshctl("mainpc", &["images", "mainpc", "-o", "json"]);
            Ok(String::from_utf8_lossy(&out.stdout)
                .contains(&derived)
                .then_some(()))
        },
    );
    // pc2 holds the base (from the last round); copy the derived image.
    let (t, sent) = copy(&mesh, &derived)?;
    println!(
        "derived image (base already on pc2): {sent} bytes sent in {:.1} s; the base archive is {archive} bytes: {:.1}% saved",
        t.as_secs_f64(),
        (1.0 - sent as f64 / (archive as f64 + 1.0)).max(0.0) * 100.0
    );
    Ok(())
}
