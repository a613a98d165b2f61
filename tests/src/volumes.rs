//! Replicated volumes in a mesh of `mainpc` (coordinator, the writer),
//! `pc2` (the primary) and `pc3` (the standby): the topology, waiting for
//! the replicas, the hard kill of the primary host, and the checker that
//! reads the standby's image as a failover would.
//!
//! The checker: copy the standby's image, let `e2fsck` replay the ext4
//! journal and then find the filesystem clean, mount the copy read-only
//! and run the demo service's `sqlite-check` on it: SQLite's
//! `integrity_check` must say ok, and every key the writer saw
//! acknowledged must be there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::binaries;
use crate::mesh::{MeshFixture, MeshOptions};
use crate::podman::DEMO_IMAGE;
use crate::process::{self, Proc};
use crate::wait;

pub const HOSTS: [&str; 3] = ["mainpc", "pc2", "pc3"];
pub const PRIMARY: &str = "pc2";
pub const STANDBY: &str = "pc3";
pub const GROUP: &str = "memory";
pub const VOLUME: &str = "memory-data";
pub const PORT: u16 = 7150;
/// A lease longer than any replication test: no promotion happens.
pub const NO_FAILOVER_LEASE_MS: u64 = 60_000;

/// The SQLite memory service on pc2 with a replicated volume; pc3 is its
/// failover fallback, so its standby. LEASE is the failover lease: the
/// replication tests take [`NO_FAILOVER_LEASE_MS`] (a host they kill is
/// not replaced while they read the standby), the failover tests 2000.
pub const TOPOLOGY: &str = r#"
[[hosts]]
name = "mainpc"
labels = { role = "mainpc" }
[[hosts]]
name = "pc2"
labels = { role = "pc2" }
[[hosts]]
name = "pc3"
labels = { role = "pc3" }

[[groups]]
name = "memory"
constraints = { role = "pc2" }
failover = { policy = "singleton", fallbacks = ["pc3"], lease_ms = LEASE }
[[groups.services]]
name = "memory-db"
image = "IMAGE"
env = { DEMO_MODE = "sqlite", DEMO_NAME = "memory-db", DEMO_DATA_DIR = "/data" }
ports = ["7150:5555"]
volumes = [{ name = "memory-data", target = "/data", size_mib = 64, replicate = true }]
[groups.services.health]
zmq = { port = 5555 }
interval_ms = 200
"#;

/// [`TOPOLOGY`] with `n` services `memory-db-I`, each on its own volume
/// `memory-data-I` of `size_mib`, published on port `PORT + I`.
pub fn topology_with(n: usize, size_mib: u64) -> String {
    let head = &TOPOLOGY[..TOPOLOGY
        .find("[[groups.services]]")
        .unwrap_or(TOPOLOGY.len())];
    let mut t = head.to_string();
    for i in 0..n {
        t.push_str(&format!(
            r#"[[groups.services]]
name = "memory-db-{i}"
image = "{DEMO_IMAGE}"
env = {{ DEMO_MODE = "sqlite", DEMO_NAME = "memory-db-{i}", DEMO_DATA_DIR = "/data" }}
ports = ["{}:5555"]
volumes = [{{ name = "memory-data-{i}", target = "/data", size_mib = {size_mib}, replicate = true }}]
[groups.services.health]
zmq = {{ port = 5555 }}
interval_ms = 200
"#,
            PORT as usize + i
        ));
    }
    t
}

/// [`TOPOLOGY`] with the service bridged on [`PORT`] (REQ/REP): every
/// host reaches it at its own address on that port, wherever it runs.
pub fn bridged_topology() -> String {
    bridged_topology_with(2000)
}

/// [`bridged_topology`] with a lease of `lease_ms`.
pub fn bridged_topology_with(lease_ms: u64) -> String {
    format!(
        "{}\n[[bridges]]\nservice = \"memory-db\"\nport = {PORT}\npattern = \"rep\"\n",
        TOPOLOGY
            .replace("IMAGE", DEMO_IMAGE)
            .replace("LEASE", &lease_ms.to_string())
    )
}

/// The writer on mainpc through mainpc's own bridge endpoint.
pub fn start_bridged_writer(mesh: &MeshFixture, first: u64, timeout: Duration) -> Proc {
    let mut cmd = process::command(Some(mesh.host("mainpc")), &binaries::path("volume-writer"));
    cmd.arg("--connect")
        .arg(format!("tcp://{}:{PORT}", mesh.host("mainpc").address))
        .arg("--first")
        .arg(first.to_string())
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    Proc::spawn("volume-writer-bridged", cmd)
}

/// A writer through mainpc's bridge endpoint that never gives up: a
/// write without a reply within `timeout` is sent again on a new socket,
/// so a move's downtime is the longest gap between acknowledgements.
pub fn start_retrying_writer(mesh: &MeshFixture, first: u64, timeout: Duration) -> Proc {
    let mut cmd = process::command(Some(mesh.host("mainpc")), &binaries::path("volume-writer"));
    cmd.arg("--connect")
        .arg(format!("tcp://{}:{PORT}", mesh.host("mainpc").address))
        .args(["--first", &first.to_string(), "--retry"])
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    Proc::spawn("volume-writer-retrying", cmd)
}

/// The longest pause between two acknowledgements the writer saw, ms.
pub fn longest_gap_ms(writer: &Proc) -> u64 {
    ack_times(writer)
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0)
}

/// Writes keys `first..first + count` through mainpc's bridge endpoint;
/// true if every one was acknowledged.
pub fn write_bridged(mesh: &MeshFixture, first: u64, count: u64) -> bool {
    let mut cmd = process::command(Some(mesh.host("mainpc")), &binaries::path("volume-writer"));
    cmd.arg("--connect")
        .arg(format!("tcp://{}:{PORT}", mesh.host("mainpc").address))
        .args(["--first", &first.to_string(), "--count", &count.to_string()])
        .args(["--timeout-ms", "1000"]);
    process::run(cmd).status.success()
}

/// A fresh mesh of [`HOSTS`], agents with their own Podman, every host
/// Ready with its inventory.
pub fn start_mesh() -> MeshFixture {
    start_mesh_with_env(&[])
}

/// [`start_mesh`] with `env` added to every agent's environment.
pub fn start_mesh_with_env(env: &[(&str, &str)]) -> MeshFixture {
    start_mesh_with(MeshOptions {
        agent_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..MeshOptions::default()
    })
}

/// [`start_mesh`] with `options` (containers always on).
pub fn start_mesh_with(options: MeshOptions) -> MeshFixture {
    let mesh = MeshFixture::start(
        &HOSTS,
        MeshOptions {
            containers: true,
            ..options
        },
    );
    for host in HOSTS {
        mesh.wait_ready_with_inventory(host, Duration::from_secs(30));
    }
    mesh
}

/// [`start_mesh`] with [`bridged_topology`] applied, the volume in sync,
/// and a first write (key 0) acknowledged through mainpc's bridge endpoint.
pub fn start_bridged_mesh() -> MeshFixture {
    start_bridged_mesh_with_env(&[])
}

/// [`start_bridged_mesh`] with `env` added to every agent's environment.
pub fn start_bridged_mesh_with_env(env: &[(&str, &str)]) -> MeshFixture {
    start_bridged_mesh_with(start_mesh_with_env(env))
}

/// [`start_bridged_mesh`] on an already started `mesh`.
pub fn start_bridged_mesh_with(mesh: MeshFixture) -> MeshFixture {
    apply_text(&mesh, &bridged_topology());
    wait_in_sync(&mesh, Duration::from_secs(120));
    wait::until(
        "writes through mainpc's bridge endpoint",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || Ok(write_bridged(&mesh, 0, 1).then_some(())),
    );
    mesh
}

/// Applies [`TOPOLOGY`] and waits for the rollout.
pub fn apply(mesh: &MeshFixture) {
    apply_text(
        mesh,
        &TOPOLOGY
            .replace("IMAGE", DEMO_IMAGE)
            .replace("LEASE", &NO_FAILOVER_LEASE_MS.to_string()),
    );
}

/// Applies a topology and waits for the rollout.
pub fn apply_text(mesh: &MeshFixture, text: &str) {
    let file = mesh.state.path().join("volumes.toml");
    std::fs::write(&file, text).expect("write topology");
    let out = mesh.meshctl(
        "mainpc",
        &[
            "place",
            &file.to_string_lossy(),
            "--apply",
            "--timeout",
            "180",
        ],
    );
    assert!(
        out.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `meshctl volumes -o json`.
pub fn volumes_json(mesh: &MeshFixture) -> Result<Value, String> {
    let out = mesh.meshctl("mainpc", &["volumes", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The row of the test's volume.
pub fn row(v: &Value) -> Option<&Value> {
    v.as_array()?
        .iter()
        .find(|r| r["group"] == GROUP && r["volume"] == VOLUME)
}

/// Waits until the primary replicates in sync to an UpToDate standby.
pub fn wait_in_sync(mesh: &MeshFixture, limit: Duration) -> Value {
    wait::until(
        "the volume to be in sync on both replicas",
        limit,
        Duration::from_millis(300),
        || {
            let v = volumes_json(mesh)?;
            let Some(r) = row(&v) else {
                return Err(format!("no row yet: {v}"));
            };
            let disks: Vec<&str> = r["replicas"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["disk"].as_str()).collect())
                .unwrap_or_default();
            if r["standing"] == "in sync" && disks == ["UpToDate", "UpToDate"] {
                Ok(Some(r.clone()))
            } else {
                Err(r.to_string())
            }
        },
    )
}

/// Starts the writer on mainpc against the service's published port on
/// the primary; it gives up `timeout` after a reply that does not come.
pub fn start_writer(mesh: &MeshFixture, first: u64, timeout: Duration) -> Proc {
    let mut cmd = process::command(Some(mesh.host("mainpc")), &binaries::path("volume-writer"));
    cmd.arg("--connect")
        .arg(format!("tcp://{}:{PORT}", mesh.host(PRIMARY).address))
        .arg("--first")
        .arg(first.to_string())
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    Proc::spawn("volume-writer", cmd)
}

/// The keys the writer saw acknowledged, and how many it sent.
pub fn writer_tally(writer: &Proc) -> (BTreeSet<u64>, u64) {
    let logs = writer.logs();
    let mut acked = BTreeSet::new();
    let mut sent = 0;
    for line in logs.lines() {
        if let Some(rest) = line.strip_prefix("acked ") {
            if let Some(Ok(n)) = rest.split_whitespace().next().map(str::parse) {
                acked.insert(n);
            }
        } else if line.starts_with("sent ") {
            sent += 1;
        }
    }
    (acked, sent)
}

/// Waits (at most 30 s) until the writer has given up or finished.
pub fn wait_writer_gone(writer: &mut Proc) {
    wait::until(
        "the writer to give up",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((!writer.is_running()).then_some(())),
    );
}

/// The checker on the standby (after a failover: the new primary): its
/// agent is killed, so its image is read as it stands.
pub fn check_standby_after_kill(mesh: &mut MeshFixture, acked: &BTreeSet<u64>) -> Verdict {
    if let Some(a) = mesh.agents.get_mut(STANDBY) {
        a.kill();
    }
    check_image(&image_path(&mesh.state_dir(STANDBY)), acked)
}

/// When the writer saw each acknowledgement (ms since it started), in order.
pub fn ack_times(writer: &Proc) -> Vec<u64> {
    writer
        .logs()
        .lines()
        .filter_map(|l| l.strip_prefix("acked "))
        .filter_map(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Kills the primary host hard: its agent (and with it the FUSE server of
/// the volume), its containers and its Podman service, all with SIGKILL;
/// then cleans up the dead mounts and deletes its image, so nothing of
/// the primary's copy can be read afterwards.
pub fn kill_primary_host(mesh: &mut MeshFixture) {
    if let Some(agent) = mesh.agents.get_mut(PRIMARY) {
        agent.kill();
    }
    let _ = process::run({
        let mut c = mesh.podman(PRIMARY);
        c.args(["kill", "--signal", "KILL", "--all"]);
        c
    });
    let podman_dir = mesh.state_dir(PRIMARY).join("podman");
    let _ = Command::new("pkill")
        .arg("-KILL")
        .arg("-f")
        .arg(podman_dir.to_string_lossy().as_ref())
        .status();
    let state = mesh.state_dir(PRIMARY);
    if let Err(e) = mesh_volumes::local::cleanup_stale(&state) {
        eprintln!("cleanup after the kill: {e}");
    }
    let image = image_path(&state);
    std::fs::remove_file(&image)
        .unwrap_or_else(|e| panic!("deleting the primary's image {}: {e}", image.display()));
}

pub fn image_path(state_dir: &Path) -> PathBuf {
    state_dir
        .join("volumes")
        .join(format!("{GROUP}.{VOLUME}"))
        .join("image.img")
}

/// What the checker found on a copy of the standby's image.
#[derive(Debug)]
pub struct Verdict {
    pub fsck_replay_code: i32,
    pub fsck_clean: bool,
    pub integrity_ok: bool,
    pub records: usize,
    /// Acknowledged keys not on the standby.
    pub lost: Vec<u64>,
    pub report: String,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.fsck_replay_code <= 1 && self.fsck_clean && self.integrity_ok && self.lost.is_empty()
    }
}

/// Loop-mounted for the check; unmounted and detached on drop.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Reads a copy of `image` (the standby's) as a promoted standby would
/// and checks every key in `acked` is there.
pub fn check_image(image: &Path, acked: &BTreeSet<u64>) -> Verdict {
    let work = tempfile::Builder::new()
        .prefix("mesh-volcheck-")
        .tempdir()
        .expect("temp dir");
    let copy = work.path().join("copy.img");
    let cp = Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&copy)
        .output()
        .expect("cp");
    assert!(
        cp.status.success(),
        "copying {}: {}",
        image.display(),
        String::from_utf8_lossy(&cp.stderr)
    );
    // Replays the journal (exit 1: fixed, which a replay is).
    let replay = Command::new("e2fsck")
        .args(["-p"])
        .arg(&copy)
        .output()
        .expect("e2fsck");
    let clean = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&copy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("e2fsck -n")
        .success();
    let mounted = Mounted {
        dir: tempfile::Builder::new()
            .prefix("mesh-volcheck-mnt-")
            .tempdir()
            .expect("temp dir"),
    };
    let mount = Command::new("mount")
        .args(["-o", "loop,ro,noload"])
        .arg(&copy)
        .arg(mounted.dir.path())
        .output()
        .expect("mount");
    assert!(
        mount.status.success(),
        "mounting the standby's copy: {}",
        String::from_utf8_lossy(&mount.stderr)
    );
    let out = Command::new(binaries::path("mesh-demo-service"))
        .args(["--mode", "sqlite-check", "--data-dir"])
        .arg(mounted.dir.path())
        .env_remove("DEMO_MODE")
        .output()
        .expect("sqlite-check");
    drop(mounted);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let keys: BTreeSet<String> = serde_json::from_value(report["keys"].clone()).unwrap_or_default();
    let lost = acked
        .iter()
        .copied()
        .filter(|n| !keys.contains(&format!("key-{n}")))
        .collect();
    Verdict {
        fsck_replay_code: replay.status.code().unwrap_or(-1),
        fsck_clean: clean,
        integrity_ok: report["integrity_ok"] == Value::Bool(true),
        records: keys.len(),
        lost,
        report: format!(
            "{}{}",
            stdout.chars().take(400).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// What a kill round found.
pub struct Round {
    pub verdict: Verdict,
    pub acked: u64,
    /// The negative control: the same checker on a copy of the standby's
    /// image taken halfway (as if replication had stopped there), against
    /// every write acknowledged by the end. It must find losses.
    pub control: Option<Verdict>,
}

/// One round: the mesh is in sync; the writer writes for `write_for`; the
/// primary host is killed mid-stream; the standby's image is checked.
/// With `control`, a copy of the standby's image is also taken halfway.
pub fn kill_round(mesh: &mut MeshFixture, write_for: Duration, control: bool) -> Round {
    let writer = start_writer(mesh, 0, Duration::from_secs(3));
    let standby_image = image_path(&mesh.state_dir(STANDBY));
    let snapshot_dir = tempfile::Builder::new()
        .prefix("mesh-volsnap-")
        .tempdir()
        .expect("temp dir");
    let snapshot = snapshot_dir.path().join("halfway.img");
    if control {
        std::thread::sleep(write_for / 2);
        let cp = Command::new("cp")
            .arg("--sparse=always")
            .arg(&standby_image)
            .arg(&snapshot)
            .status()
            .expect("cp");
        assert!(cp.success(), "copying the standby's image halfway");
        std::thread::sleep(write_for / 2);
    } else {
        std::thread::sleep(write_for);
    }
    let (acked_before, _) = writer_tally(&writer);
    assert!(
        acked_before.len() > 10,
        "the writer got only {} acknowledgements in {write_for:?}: {}",
        acked_before.len(),
        writer.logs()
    );
    kill_primary_host(mesh);
    let mut writer = writer;
    // It gives up 3 s after the last reply that did not come.
    wait_writer_gone(&mut writer);
    let (acked, sent) = writer_tally(&writer);
    let verdict = check_image(&standby_image, &acked);
    let control = control.then(|| check_image(&snapshot, &acked));
    eprintln!(
        "kill round: {} acknowledged of {sent} sent, {} on the standby, lost {:?}, fsck replay {} clean {}, integrity {}",
        acked.len(),
        verdict.records,
        verdict.lost.iter().take(10).collect::<Vec<_>>(),
        verdict.fsck_replay_code,
        verdict.fsck_clean,
        verdict.integrity_ok
    );
    if let Some(c) = &control {
        eprintln!(
            "negative control (the standby's image halfway): {} on it, {} acknowledged writes missing",
            c.records,
            c.lost.len()
        );
    }
    Round {
        verdict,
        acked: acked.len() as u64,
        control,
    }
}

/// When the last line of an agent's log containing `needle` was written
/// (its own tracing timestamp), unix ns.
pub fn log_time_ns(logs: &str, needle: &str) -> Option<i128> {
    let line = logs.lines().rev().find(|l| l.contains(needle))?;
    // Drop ANSI colours, then read the leading RFC 3339 timestamp.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let stamp = plain.split_whitespace().next()?;
    let t =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos())
}

/// The never-two-writers checker of the failover tests: the old primary's
/// container must have died (`old_died_ns`, None: still running when
/// looked at, at `observed_ns`) before the new one started.
pub fn one_writer_at_a_time(
    old_died_ns: Option<i128>,
    new_started_ns: i128,
    observed_ns: i128,
) -> Result<i128, String> {
    match old_died_ns {
        None if observed_ns > new_started_ns => Err(format!(
            "two writers: the old primary's container was still running {} ms after the new one started",
            (observed_ns - new_started_ns) / 1_000_000
        )),
        None => Err("the new container has not started yet".into()),
        Some(died) if died >= new_started_ns => Err(format!(
            "two writers: the new container started {} ms before the old one died",
            (died - new_started_ns) / 1_000_000
        )),
        // How long before the new start the old writer was gone.
        Some(died) => Ok(new_started_ns - died),
    }
}

/// Podman on `node`: whether the memory service's container is running.
pub fn container_running(mesh: &MeshFixture, node: &str) -> bool {
    inspect_memory_db(mesh, node, "{{.State.Running}}") == "true"
}

/// `podman inspect --format FORMAT` of the memory service's container on
/// `node` (empty when there is none).
fn inspect_memory_db(mesh: &MeshFixture, node: &str, format: &str) -> String {
    let out = process::run({
        let mut c = mesh.podman(node);
        c.args(["inspect", "mesh-memory-db", "--format", format]);
        c
    });
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Now, unix ns.
pub fn now_ns() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

/// `podman inspect` of the memory service's container on `node`: a time
/// field in unix ns (0 when never set or no container).
pub fn container_time_ns(mesh: &MeshFixture, node: &str, field: &str) -> i128 {
    inspect_memory_db(mesh, node, &format!("{{{{.State.{field}.UnixNano}}}}"))
        .parse()
        .unwrap_or(0)
}

/// Waits (at most 60 s) until key `key` is acknowledged through mainpc's
/// bridge endpoint: the service answers again, wherever it runs now.
pub fn wait_served_again(mesh: &MeshFixture, key: u64, what: &str) {
    wait::until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok(write_bridged(mesh, key, 1).then_some(())),
    );
}

/// Waits (at most 30 s) until the writer has `n` acknowledgements: it is
/// writing before a fault or a move is started.
pub fn wait_acked(writer: &Proc, n: usize) {
    wait::until(
        "the writer to be acknowledged",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || Ok((writer_tally(writer).0.len() >= n).then_some(())),
    );
}
