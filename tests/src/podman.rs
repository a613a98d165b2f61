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
        c.arg("--root")
            .arg(self.config.state_dir.join("root"))
            .arg("--runroot")
            .arg(self.config.state_dir.join("runroot"));
        for (k, v) in self.config.cli_env() {
            c.env(k, v);
        }
        c
    }

    fn import_busybox(&self, work: &Path) {
        let rootfs = work.join("busybox-rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is not installed; run scripts/install-deps.sh");
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "echo", "true", "false", "nc", "cat", "httpd"] {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("tar");
        let out = self
            .cli()
            .args(["import", "-", BUSYBOX_IMAGE])
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
}

impl Drop for TestPodman {
    fn drop(&mut self) {
        // Containers first (they hold mounts under the state dir), then the service.
        let _ = self.cli().args(["rm", "-a", "-f", "-t", "0"]).output();
        let _ = self.cli().args(["volume", "prune", "-f"]).output();
        drop(self.service.take());
        // Podman keeps a conmon per finished exec alive for minutes
        // (--exit-delay); they all name our state dir.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.config.state_dir.as_os_str())
            .output();
        // Overlay mounts left behind would make the temp dir undeletable.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.config.state_dir.join("root").join("overlay"))
            .output();
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
