//! The local volume stack on this machine's kernel: a real FUSE server,
//! loop device and ext4. Needs root, /dev/fuse, losetup, mkfs.ext4 and
//! e2fsck: in CI (CI=true) a missing prerequisite fails the test,
//! elsewhere the test is skipped with the reason printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mesh_volumes::local::{
    check_prerequisites, cleanup_stale, Cleaned, ImageServer, LocalError, LocalSink, LocalVolume,
    RecordingSink, SinkEvent, VolumeConfig, IMAGE_FILE_NAME,
};

const MIB: u64 = 1 << 20;

fn require(test: &str) -> bool {
    match check_prerequisites() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: {why}, and CI must not skip it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// `e2fsck -f -n IMAGE`: a full, read-only check of a detached image.
fn fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-f")
        .arg("-n")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}\n{}{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PF_MEMALLOC_NOIO, which PR_SET_IO_FLUSHER sets, in the flags field of
/// /proc/self/task/TID/stat.
const PF_MEMALLOC_NOIO: u64 = 0x0008_0000;

/// Whether this process has CAP_SYS_RESOURCE, which PR_SET_IO_FLUSHER
/// needs (a container may run as root without it).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The flags of this process's threads named `fuser-*`.
fn fuse_thread_flags() -> Vec<u64> {
    let mut flags = Vec::new();
    for task in fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("fuser-") {
            continue;
        }
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command name "(...)": state is field 3, flags 9.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if let Some(f) = rest.split(' ').nth(6).and_then(|f| f.parse().ok()) {
            flags.push(f);
        }
    }
    flags
}

#[test]
fn fuse_server_serves_one_fixed_size_file() {
    if !require("fuse_server_serves_one_fixed_size_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing_path = dir.path().join("image.img");
    let size = 8 * MIB;
    let backing = File::create_new(&backing_path).unwrap();
    backing.set_len(size).unwrap();
    let mount = dir.path().join("fuse");
    fs::create_dir(&mount).unwrap();
    let sink = Arc::new(RecordingSink::new());
    let mut server = ImageServer::start(backing, size, sink.clone(), &mount, "test", 2).unwrap();
    // fuser starts its workers just after the mount: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let flags = loop {
        let flags = fuse_thread_flags();
        if !flags.is_empty() {
            break flags;
        }
        assert!(Instant::now() < deadline, "no fuser-* threads within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    if has_cap_sys_resource() {
        assert!(
            server.io_flusher(),
            "with CAP_SYS_RESOURCE, PR_SET_IO_FLUSHER works"
        );
        assert!(
            flags.iter().all(|f| f & PF_MEMALLOC_NOIO != 0),
            "every fuser-* thread is an I/O flusher: {flags:x?}"
        );
    } else {
        assert!(
            !server.io_flusher(),
            "PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE"
        );
        eprintln!("no CAP_SYS_RESOURCE here: the FUSE threads are not I/O flushers");
    }

    let names: Vec<_> = fs::read_dir(&mount)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [IMAGE_FILE_NAME]);
    let image = server.image_path();
    assert_eq!(fs::metadata(&image).unwrap().len(), size);

    let f = File::options().read(true).write(true).open(&image).unwrap();
    f.write_all_at(b"hello", 4096).unwrap();
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 4096).unwrap();
    assert_eq!(&buf, b"hello");
    f.sync_data().unwrap();
    assert_eq!(
        sink.events(),
        [
            SinkEvent::Write {
                offset: 4096,
                len: 5
            },
            SinkEvent::Fsync
        ]
    );
    let mut on_disk = [0u8; 5];
    File::open(&backing_path)
        .unwrap()
        .read_exact_at(&mut on_disk, 4096)
        .unwrap();
    assert_eq!(&on_disk, b"hello");

    // The size is fixed: at the end ENOSPC, across it a short write.
    let e = f.write_at(b"x", size).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC at the end: {e}");
    assert_eq!(f.write_at(b"abcd", size - 2).unwrap(), 2);
    assert_eq!(fs::metadata(&image).unwrap().len(), size);
    let e = rustix_fallocate(&f, 0, size - 4096, 8192).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(27), "EFBIG growing the file: {e}");
    rustix_fallocate(&f, 0, 0, 4096).unwrap();

    // An fsync the sink fails is an error to the caller, not a success.
    sink.set_fail_fsync(true);
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO from the sink: {e}");
    sink.set_fail_fsync(false);
    f.sync_data().unwrap();
    assert!(server.stats().fsyncs.load(Ordering::Relaxed) >= 2);

    drop(f);
    server.stop(Duration::from_secs(5)).unwrap();
    assert!(fs::read_dir(&mount).unwrap().next().is_none(), "unmounted");
}

fn rustix_fallocate(f: &File, mode: u32, offset: u64, len: u64) -> std::io::Result<()> {
    let flags = rustix::fs::FallocateFlags::from_bits_retain(mode);
    rustix::fs::fallocate(f, flags, offset, len).map_err(std::io::Error::from)
}

/// Reads both files in 1 MiB steps and says where they first differ.
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut offset = 0;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            let i = ba[..na.min(nb)]
                .iter()
                .zip(&bb[..na.min(nb)])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Some(offset + i as u64);
        }
        if na == 0 {
            return None;
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..]).unwrap() {
            0 => break,
            n => done += n,
        }
    }
    done
}

#[test]
fn files_survive_detach_and_reattach_and_every_write_reaches_the_sink() {
    if !require("files_survive_detach_and_reattach_and_every_write_reaches_the_sink") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let config = VolumeConfig::new("data", 64 * MIB, state.path());
    let mirror = state.path().join("mirror.img");
    let sink = Arc::new(RecordingSink::with_mirror(&mirror, config.size).unwrap());
    let started = Instant::now();
    let mut volume = LocalVolume::attach(&config, sink.clone()).unwrap();
    let attached_in = started.elapsed();
    let report = volume.report().unwrap().clone();
    assert!(report.created_image && report.formatted && report.fsck.is_none());
    assert_eq!(report.io_flusher, has_cap_sys_resource());
    eprintln!(
        "attach (new, mkfs) took {attached_in:?}; loop {} direct I/O: {}",
        report.loop_device.device.display(),
        report.loop_device.direct_io
    );

    let mnt = volume.mount_point().to_path_buf();
    let before = sink.counts();
    let fsyncs_before = volume.stats().unwrap().fsyncs.load(Ordering::Relaxed);
    fs::create_dir(mnt.join("dir")).unwrap();
    write_synced(&mnt.join("dir/a.txt"), b"alpha");
    let big: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8).collect();
    write_synced(&mnt.join("dir/big.tmp"), &big);
    fs::rename(mnt.join("dir/big.tmp"), mnt.join("dir/big.bin")).unwrap();
    sync_dir(&mnt.join("dir"));
    let after = sink.counts();
    assert!(
        after.0 > before.0,
        "writes reached the sink: {before:?} -> {after:?}"
    );
    assert!(
        after.1 > before.1,
        "fsyncs reached the sink: {before:?} -> {after:?}"
    );
    assert!(
        volume.stats().unwrap().fsyncs.load(Ordering::Relaxed) > fsyncs_before,
        "fsync reached the FUSE server (not ENOSYS)"
    );

    let started = Instant::now();
    volume.detach().unwrap();
    eprintln!("detach took {:?}", started.elapsed());
    drop(volume);
    // Every byte of the image came through the sink, in order.
    assert_eq!(first_difference(&config.image_path(), &mirror), None);
    fsck_clean(&config.image_path());

    let started = Instant::now();
    let mut volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    eprintln!("reattach took {:?}", started.elapsed());
    let report = volume.report().unwrap();
    assert!(!report.created_image && !report.formatted);
    assert_eq!(report.fsck.as_ref().map(|f| f.code), Some(0), "{report:?}");
    assert_eq!(fs::read(mnt.join("dir/a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(mnt.join("dir/big.bin")).unwrap(), big);
    assert!(!mnt.join("dir/big.tmp").exists());
    volume.detach().unwrap();
    assert_eq!(leftovers(state.path()), Vec::<String>::new());
}

#[test]
fn a_size_mismatch_is_refused() {
    if !require("a_size_mismatch_is_refused") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let config = VolumeConfig::new("sized", 16 * MIB, state.path());
    fs::create_dir_all(config.dir()).unwrap();
    File::create(config.image_path())
        .unwrap()
        .set_len(8 * MIB)
        .unwrap();
    let e = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap_err();
    assert!(matches!(e, LocalError::SizeMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("is 8 MiB but the volume is declared 16 MiB"),
        "{e}"
    );
    assert_eq!(fs::metadata(config.image_path()).unwrap().len(), 8 * MIB);
}

#[test]
fn a_busy_volume_stays_attached_until_its_user_goes() {
    if !require("a_busy_volume_stays_attached_until_its_user_goes") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let mut config = VolumeConfig::new("busy", 16 * MIB, state.path());
    config.busy_timeout = Duration::from_millis(200);
    let mut volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    let e = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap_err();
    assert!(matches!(e, LocalError::AlreadyAttached { .. }), "{e}");

    // An open file (a running container) keeps the ext4 busy.
    let mut user = File::create(volume.mount_point().join("open.txt")).unwrap();
    let e = volume.detach().unwrap_err();
    assert!(matches!(e, LocalError::Busy { .. }), "{e}");
    user.write_all(b"still attached").unwrap();
    user.sync_all().unwrap();
    drop(user);
    volume.detach().unwrap();
    assert_eq!(leftovers(state.path()), Vec::<String>::new());
}

fn peak_rss_kib() -> u64 {
    status_kib("self", "VmHWM:")
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: &str, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_full_volume_gives_enospc_and_the_image_stays_clean() {
    if !require("a_full_volume_gives_enospc_and_the_image_stays_clean") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let config = VolumeConfig::new("full", 64 * MIB, state.path());
    let mut volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    let mnt = volume.mount_point().to_path_buf();
    write_synced(&mnt.join("keep.txt"), b"still here");

    let started = Instant::now();
    let chunk = vec![0x5au8; MIB as usize];
    let mut f = File::create(mnt.join("filler")).unwrap();
    let mut written = 0u64;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += MIB,
            Err(e) => break e,
        }
        assert!(written <= 64 * MIB, "wrote more than the volume holds");
    };
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC to the writer: {err}");
    // What fitted is durable; fsync of a full ext4 still works.
    f.sync_all().unwrap();
    drop(f);
    eprintln!(
        "filled {} MiB in {:?}; peak RSS of the test process {} MiB",
        written / MIB,
        started.elapsed(),
        peak_rss_kib() / 1024
    );
    volume.detach().unwrap();
    drop(volume);
    fsck_clean(&config.image_path());

    let mut volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    assert_eq!(fs::read(mnt.join("keep.txt")).unwrap(), b"still here");
    assert_eq!(
        fs::metadata(mnt.join("filler")).unwrap().len(),
        written,
        "the filler kept what was written before ENOSPC"
    );
    fs::remove_file(mnt.join("filler")).unwrap();
    write_synced(&mnt.join("after.txt"), b"space again");
    volume.detach().unwrap();
    assert_eq!(leftovers(state.path()), Vec::<String>::new());
}

/// The helper the kill test runs in a child process: attaches a volume,
/// writes and fsyncs a file, says READY and waits to be killed.
#[test]
#[ignore = "run by killed_agent_leftovers_are_cleaned_up_and_the_volume_reattaches"]
fn helper_attach_and_wait_for_kill() {
    let Some(state) = std::env::var_os(HELPER_STATE_ENV) else {
        return;
    };
    let config = VolumeConfig::new("killed", 64 * MIB, Path::new(&state));
    let volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    write_synced(&volume.mount_point().join("before-kill.txt"), b"durable");
    sync_dir(volume.mount_point());
    // Not fsynced: may or may not survive, must not corrupt anything.
    fs::write(volume.mount_point().join("unsynced.txt"), b"maybe").unwrap();
    println!("{HELPER_READY}");
    std::io::stdout().flush().unwrap();
    // Until killed (or the parent goes away).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::mem::forget(volume);
}

const HELPER_STATE_ENV: &str = "MESH_VOLUMES_TEST_HELPER_STATE";
/// The helper's line once attached (libtest may print the test's name
/// before it on the same line).
const HELPER_READY: &str = "MESH-VOLUMES-HELPER-READY";

/// Runs `cleanup_stale` on drop, for a test that fails half-way.
struct CleanupOnDrop<'a>(&'a Path);

impl Drop for CleanupOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = cleanup_stale(self.0) {
            eprintln!("cleanup_stale({}): {e}", self.0.display());
        }
    }
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_agent_leftovers_are_cleaned_up_and_the_volume_reattaches() {
    if !require("killed_agent_leftovers_are_cleaned_up_and_the_volume_reattaches") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // Dropped before `state`: also a failed run leaves no stale mounts.
    let _cleanup = CleanupOnDrop(state.path());
    let config = VolumeConfig::new("killed", 64 * MIB, state.path());
    // A live volume in the same state directory, which cleanup must leave.
    let mut alive = LocalVolume::attach(
        &VolumeConfig::new("alive", 16 * MIB, state.path()),
        Arc::new(LocalSink),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_attach_and_wait_for_kill",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_STATE_ENV, state.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(HELPER_READY) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the helper attached the volume and said READY within 60 s");

    // A write burst through the child's FUSE server: its memory stays
    // bounded (it holds no write data beyond the request in hand).
    let pid = child.0.id().to_string();
    let rss_before = status_kib(&pid, "VmRSS:");
    let started = Instant::now();
    let burst = vec![0xa5u8; 40 * MIB as usize];
    write_synced(&config.mount_point.join("burst.bin"), &burst);
    let peak = status_kib(&pid, "VmHWM:");
    eprintln!(
        "40 MiB burst + fsync through the FUSE server in {:?}; server RSS {} MiB before, peak {} MiB",
        started.elapsed(),
        rss_before / 1024,
        peak / 1024
    );
    assert!(peak < 64 * 1024, "the FUSE server peaked at {peak} kB");

    // SIGKILL: no detach, no destructor.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let e = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap_err();
    assert!(matches!(e, LocalError::StaleMount { .. }), "{e}");

    let started = Instant::now();
    let cleaned = cleanup_stale(state.path()).unwrap();
    eprintln!("cleanup took {:?}:", started.elapsed());
    for c in &cleaned {
        eprintln!("  {c}");
    }
    assert!(
        matches!(&cleaned[..], [
            Cleaned::Unmounted { mount_point, .. },
            Cleaned::LoopDetached { .. },
            Cleaned::FuseUnmounted { mount_point: fuse },
        ] if *mount_point == config.mount_point && *fuse == config.fuse_dir()),
        "{cleaned:?}"
    );
    assert_eq!(
        cleanup_stale(state.path()).unwrap(),
        Vec::<Cleaned>::new(),
        "nothing left"
    );
    write_synced(&alive.mount_point().join("still.txt"), b"served");
    alive.detach().unwrap();
    assert_eq!(leftovers(state.path()), Vec::<String>::new());

    let mut volume = LocalVolume::attach(&config, Arc::new(LocalSink)).unwrap();
    let report = volume.report().unwrap();
    eprintln!("reattach after kill: {:?}", report.fsck);
    assert!(!report.formatted);
    assert!(matches!(report.fsck.as_ref().map(|f| f.code), Some(0 | 1)));
    assert_eq!(
        fs::read(volume.mount_point().join("before-kill.txt")).unwrap(),
        b"durable"
    );
    assert_eq!(
        fs::read(volume.mount_point().join("burst.bin")).unwrap(),
        burst
    );
    volume.detach().unwrap();
    drop(volume);
    fsck_clean(&config.image_path());
}

/// Mounts and loop devices of this process that lie under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let dir = fs::canonicalize(dir).unwrap();
    let mut out: Vec<String> = mesh_volumes::local::mounts::mounts()
        .unwrap()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&dir))
        .map(|m| format!("mount {}", m.mount_point.display()))
        .collect();
    out.extend(
        mesh_volumes::local::mounts::loop_devices()
            .unwrap()
            .into_iter()
            .filter(|l| l.backing_file.starts_with(&dir))
            .map(|l| {
                format!(
                    "loop {} over {}",
                    l.device.display(),
                    l.backing_file.display()
                )
            }),
    );
    out
}
