//! A Podman API service of the agent's own: its own storage root, runroot,
//! containers.conf and socket, so two agents on one machine (the demo, the
//! tests) never share state. On a real PC the agent can use the system's
//! service instead (`podman.socket`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::podman::PodmanRuntime;
use super::ContainerRuntime;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Everything lives under here: root/, runroot/, *.conf, podman.sock.
    pub state_dir: PathBuf,
    /// OCI runtime: "runc" where crun cannot run (cgroups v1 hybrid), "crun" elsewhere.
    pub oci_runtime: String,
    /// Read-only image stores shared with this instance (e.g. the system's
    /// /var/lib/containers/storage), so an image built once serves every agent.
    pub shared_image_stores: Vec<PathBuf>,
    /// Ulimits for containers; sandboxes may forbid Podman's defaults.
    pub default_ulimits: Vec<String>,
    /// Run the service inside this network namespace (a /run/netns path),
    /// so its containers' networks and published ports live there.
    pub netns: Option<PathBuf>,
}

impl ServiceConfig {
    /// What this project's machines need (see ENVIRONMENT.md): runc and
    /// modest ulimits. Real hosts with cgroups v2 may use crun instead.
    pub fn sandbox_defaults(state_dir: PathBuf) -> ServiceConfig {
        ServiceConfig {
            state_dir,
            oci_runtime: "runc".into(),
            shared_image_stores: vec![PathBuf::from("/var/lib/containers/storage")],
            default_ulimits: vec!["nofile=1024:1024".into(), "nproc=1024:1024".into()],
            netns: None,
        }
    }

    /// Environment that makes a `podman` CLI use this instance's settings.
    pub fn cli_env(&self) -> Vec<(String, PathBuf)> {
        vec![
            (
                "CONTAINERS_CONF".into(),
                self.state_dir.join("containers.conf"),
            ),
            (
                "CONTAINERS_STORAGE_CONF".into(),
                self.state_dir.join("storage.conf"),
            ),
        ]
    }
}

pub struct PodmanService {
    child: Child,
    socket: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot prepare Podman state in {path}: {reason}")]
    Prepare { path: PathBuf, reason: String },
    #[error(
        "cannot start `podman system service`: {0}; is podman installed (scripts/install-deps.sh)?"
    )]
    Spawn(std::io::Error),
    #[error("Podman service did not answer on {socket} within {waited:?}: {reason}")]
    NotReady {
        socket: PathBuf,
        waited: Duration,
        reason: String,
    },
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// containers.conf and storage.conf text for `config`.
pub fn config_files(config: &ServiceConfig) -> (String, String) {
    let containers = format!(
        "[containers]\ndefault_ulimits = [{}]\n\n[engine]\nruntime = {:?}\n",
        quote_list(&config.default_ulimits),
        config.oci_runtime
    );
    let stores: Vec<String> = config
        .shared_image_stores
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let storage = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = {:?}\nrunroot = {:?}\n\n[storage.options]\nadditionalimagestores = [{}]\n",
        config.state_dir.join("root").display().to_string(),
        config.state_dir.join("runroot").display().to_string(),
        quote_list(&stores)
    );
    (containers, storage)
}

impl PodmanService {
    pub async fn start(config: &ServiceConfig) -> Result<PodmanService, ServiceError> {
        let dir = &config.state_dir;
        let prepare = |path: &Path, e: std::io::Error| ServiceError::Prepare {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
        let (containers, storage) = config_files(config);
        let containers_conf = dir.join("containers.conf");
        let storage_conf = dir.join("storage.conf");
        std::fs::write(&containers_conf, containers).map_err(|e| prepare(&containers_conf, e))?;
        std::fs::write(&storage_conf, storage).map_err(|e| prepare(&storage_conf, e))?;
        let socket = dir.join("podman.sock");
        let _ = std::fs::remove_file(&socket);
        let mut command = match &config.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg("podman");
                c
            }
            None => Command::new("podman"),
        };
        // Storage locations come from storage.conf only: with --root and
        // --runroot flags Podman ignores additionalimagestores (seen with 4.3).
        let child = command
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env("CONTAINERS_CONF", &containers_conf)
            .env("CONTAINERS_STORAGE_CONF", &storage_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(ServiceError::Spawn)?;
        let service = PodmanService { child, socket };
        service.wait_ready(Duration::from_secs(20)).await?;
        Ok(service)
    }

    async fn wait_ready(&self, limit: Duration) -> Result<(), ServiceError> {
        let runtime = PodmanRuntime::new(&self.socket, Default::default());
        let start = Instant::now();
        loop {
            match runtime.ping().await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > limit => {
                    return Err(ServiceError::NotReady {
                        socket: self.socket.clone(),
                        waited: limit,
                        reason: e.to_string(),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Resolves when the service process exits.
    pub async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.wait().await.ok()
    }
}

/// Keeps an own Podman service running: starts it, and starts it again
/// with backoff whenever it exits, until `shutdown`. Containers survive a
/// service restart (conmon holds them); the agent reports the runtime as
/// unavailable in between.
pub async fn supervise(config: ServiceConfig, shutdown: tokio_util::sync::CancellationToken) {
    let mut attempt: u32 = 0;
    loop {
        match PodmanService::start(&config).await {
            Ok(mut service) => {
                attempt = 0;
                tracing::info!(socket = %service.socket().display(), "own Podman service running");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        service.stop().await;
                        return;
                    }
                    status = service.wait() => {
                        tracing::warn!(?status, "own Podman service exited; starting it again");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "own Podman service did not start"),
        }
        let delay = crate::containers::restart::delay_for(attempt).min(Duration::from_secs(10));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_name_runtime_ulimits_and_stores() {
        let config = ServiceConfig {
            state_dir: PathBuf::from("/state"),
            oci_runtime: "runc".into(),
            shared_image_stores: vec![PathBuf::from("/"), PathBuf::from("/nonexistent/store")],
            default_ulimits: vec!["nofile=1024:1024".into()],
            netns: None,
        };
        let (containers, storage) = config_files(&config);
        assert!(containers.contains("runtime = \"runc\""), "{containers}");
        assert!(
            containers.contains("default_ulimits = [\"nofile=1024:1024\"]"),
            "{containers}"
        );
        assert!(storage.contains("graphroot = \"/state/root\""), "{storage}");
        // Stores that do not exist are left out rather than breaking Podman.
        assert!(
            storage.contains("additionalimagestores = [\"/\"]"),
            "{storage}"
        );
    }
}
