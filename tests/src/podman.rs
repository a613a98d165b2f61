//! A Podman service of a test's own (own storage, own socket, optionally
//! inside a test host's namespace) and a tiny busybox image imported into
//! it, so container tests need no registry and share nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use mesh_node_agent::runtime::service::{PodmanService, ServiceConfig};

use crate::netns::Host;

pub const BUSYBOX_IMAGE: &str = "localhost/mesh-test-busybox:latest";

pub struct TestPodman {
    pub service: Option<PodmanService>,
    pub config: ServiceConfig,
    _dir: tempfile::TempDir,
}

impl TestPodman {
    pub async fn start(host: Option<&Host>) -> TestPodman {
        let dir = tempfile::Builder::new()
            .prefix("mesh-podman-")
            .tempdir()
            .expect("temp dir");
        let mut config = ServiceConfig::sandbox_defaults(dir.path().join("state"));
        config.netns = host.map(|h| PathBuf::from(h.netns_path()));
        let service = PodmanService::start(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let podman = TestPodman {
            service: Some(service),
            config,
            _dir: dir,
        };
        podman.import_busybox(podman._dir.path());
        podman
    }

    pub fn socket(&self) -> PathBuf {
        self.config.state_dir.join("podman.sock")
    }

    /// `podman` CLI against this instance.
    pub fn cli(&self) -> Command {
        let mut c = Command::new("podman");
        for (k, v) in self.config.cli_env() {
            c.env(k, v);
        }
        c
    }

    fn import_busybox(&self, work: &Path) {
        import_busybox_into(&work.join("busybox-rootfs"), self.cli());
    }
}

impl Drop for TestPodman {
    fn drop(&mut self) {
        let podman = self.cli();
        drop(self.service.take());
        release_state(&self.config.state_dir, podman);
    }
}

/// Removes every container of a Podman instance whose state lives in
/// `state_dir`, ends its service and helpers, and unmounts its storage, so
/// the directory can be deleted. `podman` is that instance's CLI.
pub fn release_state(state_dir: &Path, mut podman: Command) {
    let _ = podman.args(["rm", "-a", "-f", "-t", "0"]).output();
    // What is left: the service and Podman's conmon helpers (kept alive
    // for minutes after an exec by --exit-delay), all naming the state
    // dir. conmon forwards SIGTERM to its container, and a container's
    // PID 1 may ignore it, so children and helpers get SIGKILL.
    for _ in 0..50 {
        let pids = Command::new("pgrep")
            .arg("-f")
            .arg(state_dir.as_os_str())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if pids.trim().is_empty() {
            break;
        }
        for pid in pids.split_whitespace() {
            let _ = Command::new("pkill").args(["-KILL", "-P", pid]).output();
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let overlay = state_dir.join("root").join("overlay");
    for _ in 0..20 {
        let _ = Command::new("umount").arg("-R").arg(&overlay).output();
        let still = std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.contains(overlay.to_string_lossy().as_ref()));
        if !still {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Podman is required where CI runs; elsewhere a missing podman skips.
pub fn require_podman(test: &str) -> bool {
    if !crate::require_root(test) {
        return false;
    }
    let ok = Command::new("podman").arg("--version").output().is_ok()
        && Path::new("/usr/bin/busybox").exists();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: podman and busybox-static are required in CI (scripts/install-deps.sh)"
            );
        }
        eprintln!("SKIPPED {test}: podman or busybox-static missing");
    }
    ok
}

/// Imports the busybox test image into the system image store, which
/// every agent's own Podman shares read-only. Once per test process.
pub fn ensure_system_busybox_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("podman")
            .args(["image", "exists", BUSYBOX_IMAGE])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            return;
        }
        let work = tempfile::tempdir().expect("temp dir");
        let rootfs = work.path().join("rootfs");
        import_busybox_into(&rootfs, Command::new("podman"));
    });
}

fn import_busybox_into(rootfs: &Path, podman: Command) {
    import_rootfs_image(rootfs, podman, BUSYBOX_IMAGE, &[]);
}

/// Imports a busybox userland plus `files` (path in the image, contents) as image `name`
/// with `podman` (an instance's CLI), building the rootfs in `rootfs`.
pub fn import_rootfs_image(
    rootfs: &Path,
    mut podman: Command,
    name: &str,
    files: &[(&str, &[u8])],
) {
    for (path, contents) in files {
        let dest = rootfs.join(path.trim_start_matches('/'));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).expect("rootfs dir");
        }
        std::fs::write(&dest, contents).expect("rootfs file");
    }
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("rootfs");
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed; run scripts/install-deps.sh");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in [
        "sh", "sleep", "echo", "true", "false", "nc", "cat", "httpd", "mkdir",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    let out = podman
        .args(["import", "-", name])
        .stdin(tar.stdout.take().expect("tar stdout"))
        .output()
        .expect("podman import");
    let _ = tar.wait();
    assert!(
        out.status.success(),
        "podman import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The demo service image (`scripts/build-demo-image.sh`), which the
/// example topology runs.
pub const DEMO_IMAGE: &str = "localhost/mesh-demo:latest";

/// Makes sure the demo image is in the system image store (which every
/// agent's own Podman shares read-only), building it once if missing.
/// `scripts/test.sh` builds it before the tests, so this rarely builds.
pub fn ensure_demo_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("podman")
            .args(["image", "exists", DEMO_IMAGE])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new("bash")
            .arg(root.join("scripts/build-demo-image.sh"))
            .arg(DEMO_IMAGE)
            .current_dir(&root)
            .output()
            .expect("run scripts/build-demo-image.sh");
        assert!(
            out.status.success(),
            "scripts/build-demo-image.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
