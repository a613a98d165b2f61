//! Real processes inside a test host, killed on drop, with their output
//! kept in a file so a failing test can show it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Host;

pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// A command that runs inside `host` (or on this machine for `None`).
/// `nsenter --net` rather than `ip netns exec`: the latter remounts /sys,
/// which hides cgroups from container runtimes (see ENVIRONMENT.md).
pub fn command(host: Option<&Host>, program: &Path) -> Command {
    match host {
        Some(h) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", h.netns_path()))
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let log_dir = tempfile::Builder::new()
            .prefix("mesh-log-")
            .tempdir()
            .expect("temp dir");
        let log = log_dir.path().join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            _log_dir: log_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the host dies without a goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.logs());
        }
    }
}

/// Runs a short command to completion and returns its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}
