//! [`ContainerRuntime`] over Podman's libpod REST API (`podman-api`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use mesh_proto::v1::ContainerSpec;
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ContainerLogsOpts,
    ContainerStopOpts, ExecCreateOpts, ExecStartOpts, ImageListOpts,
};
use podman_api::Podman;

use super::create::{create_opts, GpuFacts};
use super::{
    ContainerRuntime, ImageInfo, ObservedContainer, Result, RuntimeError, RuntimeInfo, StatsSample,
};
use crate::containers::spec::{container_name, LABEL_MESH};

#[derive(Clone)]
pub struct PodmanRuntime {
    podman: Podman,
    socket: PathBuf,
    gpus: GpuFacts,
}

impl PodmanRuntime {
    pub fn new(socket: &Path, gpus: GpuFacts) -> PodmanRuntime {
        PodmanRuntime {
            podman: Podman::unix(socket),
            socket: socket.to_path_buf(),
            gpus,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Classifies a podman-api error into what the operator must fix.
    fn error(&self, e: podman_api::Error, subject: &str) -> RuntimeError {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let fault = matches!(e, podman_api::Error::Fault { .. });
        if !fault {
            return RuntimeError::Unavailable {
                socket: self.socket.display().to_string(),
                reason: text,
            };
        }
        if lower.contains("image not known")
            || lower.contains("no such image")
            || lower.contains("unable to find image")
            || lower.contains("repository name must")
            || lower.contains("pinging container registry")
        {
            RuntimeError::ImageMissing {
                image: subject.to_string(),
            }
        } else if lower.contains("address already in use")
            || lower.contains("port is already allocated")
        {
            RuntimeError::PortTaken {
                port: port_in(&text).unwrap_or_else(|| subject.to_string()),
            }
        } else if lower.contains("no such container") {
            RuntimeError::NotFound {
                name: subject.to_string(),
            }
        } else {
            RuntimeError::Podman(text)
        }
    }
}

/// "listen tcp4 0.0.0.0:7150: bind: address already in use" -> "7150".
fn port_in(text: &str) -> Option<String> {
    let before = text.split(": bind").next()?;
    let port = before.rsplit(':').next()?;
    port.chars()
        .all(|c| c.is_ascii_digit())
        .then(|| port.to_string())
}

impl ContainerRuntime for PodmanRuntime {
    async fn ping(&self) -> Result<RuntimeInfo> {
        let info = self
            .podman
            .ping()
            .await
            .map_err(|e| self.error(e, "ping"))?;
        Ok(RuntimeInfo {
            version: info.libpod_api_version,
        })
    }

    async fn list(&self, mesh: &str) -> Result<Vec<ObservedContainer>> {
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::LabelKeyVal(
                LABEL_MESH.into(),
                mesh.into(),
            )])
            .build();
        let list = self
            .podman
            .containers()
            .list(&opts)
            .await
            .map_err(|e| self.error(e, "list"))?;
        Ok(list
            .into_iter()
            .map(|c| ObservedContainer {
                id: c.id.unwrap_or_default(),
                podman_name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                status: c.state.unwrap_or_default(),
                exit_code: i64::from(c.exit_code.unwrap_or(0)),
                started_at: c.started_at.unwrap_or(0),
            })
            .collect())
    }

    async fn create(&self, mesh: &str, spec: &ContainerSpec, generation: u64) -> Result<String> {
        let opts = create_opts(mesh, spec, generation, self.gpus)?;
        let created = self
            .podman
            .containers()
            .create(&opts)
            .await
            .map_err(|e| self.error(e, &spec.image))?;
        Ok(created.id)
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.podman
            .containers()
            .get(name)
            .start(None)
            .await
            .map_err(|e| self.error(e, name))
    }

    async fn stop(&self, name: &str, timeout: Duration) -> Result<()> {
        let opts = ContainerStopOpts::builder()
            .timeout(timeout.as_secs().max(1) as usize)
            .build();
        self.podman
            .containers()
            .get(name)
            .stop(&opts)
            .await
            .map_err(|e| self.error(e, name))
    }

    async fn kill(&self, name: &str) -> Result<()> {
        self.podman
            .containers()
            .get(name)
            .kill()
            .await
            .map_err(|e| self.error(e, name))
    }

    async fn pause(&self, name: &str) -> Result<()> {
        self.podman
            .containers()
            .get(name)
            .pause()
            .await
            .map_err(|e| self.error(e, name))
    }

    async fn unpause(&self, name: &str) -> Result<()> {
        self.podman
            .containers()
            .get(name)
            .unpause()
            .await
            .map_err(|e| self.error(e, name))
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .volumes(false)
            .build();
        match self.podman.containers().get(name).delete(&opts).await {
            Ok(()) => Ok(()),
            Err(e) => match self.error(e, name) {
                RuntimeError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        let opts = ContainerLogsOpts::builder()
            .stdout(true)
            .stderr(true)
            .tail(tail.to_string())
            .build();
        let container = self.podman.containers().get(name);
        let mut stream = container.logs(&opts);
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(e, name))?;
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(tail);
        Ok(lines.into_iter().skip(skip).collect())
    }

    async fn exec(&self, name: &str, command: &[String]) -> Result<i64> {
        let container = self.podman.containers().get(name);
        let exec = container
            .create_exec(
                &ExecCreateOpts::builder()
                    .command(command.to_vec())
                    .attach_stdout(true)
                    .attach_stderr(true)
                    .build(),
            )
            .await
            .map_err(|e| self.error(e, name))?;
        if let Some(mut output) = exec
            .start(&ExecStartOpts::builder().build())
            .await
            .map_err(|e| self.error(e, name))?
        {
            // Drain the output; the exit code is read from inspect.
            while let Some(chunk) = output.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        }
        let inspect = exec.inspect().await.map_err(|e| self.error(e, name))?;
        Ok(inspect
            .get("ExitCode")
            .and_then(|c| c.as_i64())
            .unwrap_or(-1))
    }

    async fn address(&self, name: &str) -> Result<Option<std::net::IpAddr>> {
        self.inspect_address(name).await
    }

    async fn stats(&self, ids: &[String]) -> Result<Vec<StatsSample>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let opts = podman_api::opts::ContainerStatsOpts::builder()
            .containers(ids.iter().cloned())
            .build();
        let v = self
            .podman
            .containers()
            .stats(&opts)
            .await
            .map_err(|e| self.error(e, "stats"))?;
        parse_stats(v).map_err(RuntimeError::Podman)
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        let list = self
            .podman
            .images()
            .list(&ImageListOpts::builder().all(false).build())
            .await
            .map_err(|e| self.error(e, "images"))?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id.unwrap_or_default(),
                names: i.names.or(i.repo_tags).unwrap_or_default(),
                size_bytes: i.size.unwrap_or(0).max(0) as u64,
            })
            .collect())
    }
}

impl super::LogFollower for PodmanRuntime {
    fn follow(&self, name: &str, tail: usize) -> super::LogStream {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let podman = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let opts = ContainerLogsOpts::builder()
                .stdout(true)
                .stderr(true)
                .follow(true)
                .tail(tail.to_string())
                .build();
            let container = podman.podman.containers().get(&name);
            let mut stream = container.logs(&opts);
            let mut lines = super::LineSplitter::default();
            while let Some(chunk) = stream.next().await {
                let out = match chunk {
                    Ok(c) => lines.push(&c),
                    Err(e) => {
                        let _ = tx.send(Err(podman.error(e, &name))).await;
                        return;
                    }
                };
                for line in out {
                    if tx.send(Ok(line)).await.is_err() {
                        return; // nobody follows any more
                    }
                }
            }
            if let Some(last) = lines.finish() {
                let _ = tx.send(Ok(last)).await;
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// Podman's one-shot stats answer (`{"Error": ..., "Stats": [...]}`), as
/// samples.
pub fn parse_stats(v: serde_json::Value) -> std::result::Result<Vec<StatsSample>, String> {
    if let Some(e) = v.get("Error").filter(|e| !e.is_null()) {
        return Err(format!("Podman stats: {e}"));
    }
    let rows: Vec<podman_api::models::ContainerStats> =
        serde_json::from_value(v.get("Stats").cloned().unwrap_or_default())
            .map_err(|e| format!("Podman stats: unexpected answer: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| StatsSample {
            id: r.container_id.unwrap_or_default(),
            cpu_percent: r.cpu.unwrap_or(0.0),
            memory_bytes: r.mem_usage.unwrap_or(0),
            memory_limit_bytes: r.mem_limit.unwrap_or(0),
            block_read_bytes: r.block_input.unwrap_or(0),
            block_write_bytes: r.block_output.unwrap_or(0),
            net_rx_bytes: r.net_input.unwrap_or(0),
            net_tx_bytes: r.net_output.unwrap_or(0),
            pids: r.pi_ds.unwrap_or(0),
        })
        .collect())
}

impl PodmanRuntime {
    async fn inspect_address(&self, name: &str) -> Result<Option<std::net::IpAddr>> {
        let data = self
            .podman
            .containers()
            .get(name)
            .inspect()
            .await
            .map_err(|e| self.error(e, name))?;
        let settings = match data.network_settings {
            Some(s) => s,
            None => return Ok(None),
        };
        let from_networks = settings.networks.as_ref().and_then(|n| {
            n.values()
                .filter_map(|net| net.ip_address.clone())
                .find(|ip| !ip.is_empty())
        });
        let ip = settings
            .ip_address
            .filter(|ip| !ip.is_empty())
            .or(from_networks);
        Ok(ip.and_then(|ip| ip.parse().ok()))
    }
}

/// The Podman name for a spec name; re-exported for callers of the runtime.
pub fn podman_name(spec_name: &str) -> String {
    container_name(spec_name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_is_read_from_bind_errors() {
        assert_eq!(
            super::port_in("rootlessport listen tcp 0.0.0.0:7150: bind: address already in use"),
            Some("7150".into())
        );
        assert_eq!(super::port_in("something else"), None);
    }
}
