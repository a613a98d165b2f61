//! The mesh as system services: `deploy/install.sh` stages binaries, systemd units, default
//! configuration, completions and man pages; the units pass `systemd-analyze verify` (and a
//! broken one does not); `deploy/build-deb.sh` packages the same files; and the agent runs
//! containers on a Podman API service started the way `podman.socket` starts it (socket
//! activation, the system store), not on one of its own. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_system_busybox_image, require_podman, BUSYBOX_IMAGE};
use mesh_tests::process::Proc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where the test's binaries are (mesh-agent, mesh-coordinator, meshctl).
fn bin_dir() -> PathBuf {
    mesh_tests::binaries::path("meshctl")
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `program --config config` says on stderr when it refuses to start (it must).
fn refusal(program: &str, config: &Path) -> String {
    let out = Command::new(bin_dir().join(program))
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{program} started from {config:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stage(node: Option<&str>) -> tempfile::TempDir {
    let stage = tempfile::Builder::new()
        .prefix("mesh-stage-")
        .tempdir()
        .unwrap();
    let mut cmd = Command::new(repo().join("deploy/install.sh"));
    cmd.arg("--destdir")
        .arg(stage.path())
        .args(["--prefix", "/usr", "--from"])
        .arg(bin_dir());
    if let Some(node) = node {
        cmd.args(["--node", node, "--coordinator", "10.0.0.1:7443"]);
    }
    run(&mut cmd);
    stage
}

/// `systemd-analyze verify` of our units inside `root`, with the host's own units copied
/// beside them (targets, podman.socket) so dependencies resolve there.
fn verify(root: &Path) -> std::process::Output {
    let units = root.join("lib/systemd/system");
    run(Command::new("cp")
        .arg("-rn")
        .arg("/lib/systemd/system/.")
        .arg(&units));
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .args([
            "/lib/systemd/system/mesh-agent.service",
            "/lib/systemd/system/mesh-coordinator.service",
        ])
        .output()
        .expect("systemd-analyze (apt install systemd)")
}

#[test]
fn installed_units_verify_and_a_broken_one_does_not() {
    let stage = stage(Some("pc2"));
    let root = stage.path();
    for f in [
        "usr/bin/mesh-agent",
        "usr/bin/mesh-coordinator",
        "usr/bin/meshctl",
        "etc/mesh/agent.toml",
        "etc/mesh/coordinator.toml",
        "usr/share/bash-completion/completions/meshctl",
        "usr/share/zsh/vendor-completions/_meshctl",
        "usr/share/fish/vendor_completions.d/meshctl.fish",
        "usr/share/man/man1/meshctl.1",
        "usr/share/man/man1/meshctl-place.1",
        "usr/share/man/man1/meshctl-certs-issue.1",
    ] {
        assert!(root.join(f).exists(), "{f} not installed");
    }
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/mesh-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/mesh-agent --config /etc/mesh/agent.toml"));
    assert!(unit.contains("Wants=network-online.target podman.socket"));
    assert!(unit.contains("StateDirectory=mesh"));

    // The configuration it wrote is one the agent accepts: the agent reads it and gets as
    // far as the (absent) certificates, naming the file it looked for.
    let agent_toml = root.join("etc/mesh/agent.toml");
    let text = std::fs::read_to_string(&agent_toml).unwrap();
    assert!(text.contains("node = \"pc2\"") && text.contains("coordinator = \"10.0.0.1:7443\""));
    let err = refusal("mesh-agent", &agent_toml);
    assert!(err.contains("/etc/mesh/certs"), "{err}");
    let err = refusal("mesh-coordinator", &root.join("etc/mesh/coordinator.toml"));
    assert!(err.contains("/etc/mesh/certs"), "{err}");

    let out = verify(root);
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Negative control: the same check fails on a unit whose program is not there.
    let path = root.join("lib/systemd/system/mesh-agent.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/mesh-agent", "/usr/bin/mesh-agent-missing"),
    )
    .unwrap();
    let out = verify(root);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mesh-agent-missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_keeps_an_existing_configuration_and_comments_out_what_it_does_not_know() {
    let stage = stage(None);
    let agent_toml = stage.path().join("etc/mesh/agent.toml");
    let text = std::fs::read_to_string(&agent_toml).unwrap();
    assert!(text.contains("# node = \"pc2\"  (set this"), "{text}");
    assert!(!text.contains('@'), "a placeholder left in: {text}");
    // Without a node the agent says which key is missing.
    let err = refusal("mesh-agent", &agent_toml);
    assert!(err.contains("node") && err.contains("missing"), "{err}");

    std::fs::write(&agent_toml, "node = \"mine\"\n").unwrap();
    let out = run(Command::new(repo().join("deploy/install.sh"))
        .arg("--destdir")
        .arg(stage.path())
        .args(["--prefix", "/usr", "--node", "other", "--from"])
        .arg(bin_dir()));
    assert!(out.contains("kept"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&agent_toml).unwrap(),
        "node = \"mine\"\n"
    );
}

#[test]
fn the_deb_holds_the_installed_files_and_its_meshctl_runs() {
    let out_dir = tempfile::tempdir().unwrap();
    let deb = run(Command::new(repo().join("deploy/build-deb.sh"))
        .arg("--from")
        .arg(bin_dir())
        .arg("--out")
        .arg(out_dir.path()));
    let deb = PathBuf::from(deb.trim());
    assert!(deb.exists(), "{}", deb.display());
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: mesh") && info.contains("Depends: podman"));
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for f in [
        "./usr/bin/mesh-agent",
        "./lib/systemd/system/mesh-agent.service",
        "./lib/systemd/system/mesh-coordinator.service",
        "./etc/mesh/agent.toml",
        "./usr/share/man/man1/meshctl.1",
    ] {
        assert!(listing.contains(f), "{f} not in the package:\n{listing}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .args(["--info"])
        .arg(&deb)
        .arg("conffiles"));
    assert!(conffiles.contains("/etc/mesh/agent.toml"));
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    let completion =
        run(Command::new(root.path().join("usr/bin/meshctl")).args(["completions", "bash"]));
    assert!(completion.contains("complete -F _meshctl"));
    let out = verify(root.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The socket-activated service and the container it ran, removed on drop.
struct SystemPodman {
    service: Option<Proc>,
    container: String,
    _dir: tempfile::TempDir,
}

impl Drop for SystemPodman {
    fn drop(&mut self) {
        drop(self.service.take());
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.container])
            .output();
    }
}

#[test]
fn the_agent_runs_containers_on_a_socket_activated_system_podman() {
    if !require_podman("the_agent_runs_containers_on_a_socket_activated_system_podman") {
        return;
    }
    ensure_system_busybox_image();
    let dir = tempfile::Builder::new()
        .prefix("mesh-syspodman-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("podman.sock");
    // As podman.socket does: systemd holds the listening socket and hands it to
    // `podman system service` (LISTEN_FDS), which serves the system store.
    // The system store, with the containers.conf this sandbox needs (runc; ulimits it
    // allows), given as the service's environment rather than written to /etc.
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    // (systemd-socket-activate passes on only the environment it is told to.)
    cmd.arg(format!("--setenv=CONTAINERS_CONF={}", conf.display()));
    cmd.arg("-l")
        .arg(&socket)
        .args(["podman", "system", "service", "--time=0"]);
    let name = format!("sys{}", std::process::id());
    let _podman = SystemPodman {
        service: Some(Proc::spawn("system-podman", cmd)),
        container: format!("mesh-{name}"),
        _dir: dir,
    };
    mesh_tests::wait::until(
        "the activation socket",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok(socket.exists().then_some(())),
    );
    let mesh = MeshFixture::start(
        &["mainpc"],
        MeshOptions {
            agent_env: vec![(
                "MESH_PODMAN_SOCKET".into(),
                socket.to_string_lossy().into_owned(),
            )],
            ..MeshOptions::default()
        },
    );
    mesh.wait_ready_with_inventory("mainpc", Duration::from_secs(30));
    let out = mesh.set_containers(
        "mainpc",
        &format!(
            r#"
[[containers]]
name = "{name}"
group = "system-podman"
image = "{BUSYBOX_IMAGE}"
command = ["/bin/sh", "-c", "exec sleep 3600"]
memory_mib = 32
"#
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mesh.wait_container("mainpc", &name, "running", Duration::from_secs(60), |r| {
        r["state"] == "running"
    });
    // It is the system store's container, as `podman ps` (no socket, no own storage) sees it.
    let ps = run(Command::new("podman").args(["ps", "--format", "{{.Names}}"]));
    assert!(ps.lines().any(|l| l == format!("mesh-{name}")), "{ps}");
}
