//! Each container's resource usage, as `podman stats` and `nvidia-smi`
//! would show it by hand: CPU, memory, block and network I/O from Podman's
//! stats API, sampled every few seconds, and GPU memory from NVML's
//! per-process accounting, given to the container whose cgroup holds the
//! process. The heartbeat carries the latest sample.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_proto::spec::{LABEL_GROUP, LABEL_NAME, LABEL_SERVICE};
use mesh_proto::v1::{ContainerUsage, GpuProcess};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::runtime::ContainerRuntime;

/// How often usage is sampled (Podman computes CPU over the interval
/// between two samples).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The Podman container id in a process's `/proc/PID/cgroup`, if it runs
/// in one: a 64-hex segment, bare or as `libpod-ID` / `libpod-ID.scope`
/// (cgroups v1 and v2, with or without systemd). Conmon's own cgroup
/// (`libpod-conmon-ID`) is not the container.
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        for segment in path.split('/') {
            if segment.starts_with("libpod-conmon-") {
                continue;
            }
            let id = segment.strip_prefix("libpod-").unwrap_or(segment);
            let id = id.strip_suffix(".scope").unwrap_or(id);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_string());
            }
        }
    }
    None
}

/// The container id of process `pid` on this host, from /proc.
pub fn container_of_pid(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .as_deref()
        .and_then(container_id_from_cgroup)
}

/// Adds each GPU process's memory to the container it belongs to.
pub fn attribute_gpu(usage: &mut [ContainerUsage], processes: &[GpuProcess]) {
    for u in usage.iter_mut() {
        let mine: Vec<&GpuProcess> = processes
            .iter()
            .filter(|p| !p.container_id.is_empty() && p.container_id == u.id)
            .collect();
        u.gpu_memory_bytes = mine.iter().filter_map(|p| p.used_bytes).sum();
        let mut indices: Vec<u32> = mine.iter().map(|p| p.gpu_index).collect();
        indices.sort_unstable();
        indices.dedup();
        u.gpu_indices = indices;
    }
}

/// One sample of the mesh's running containers (by their labels).
pub async fn sample<R: ContainerRuntime>(
    runtime: &R,
    mesh: &str,
) -> crate::runtime::Result<Vec<ContainerUsage>> {
    let listed = runtime.list(mesh).await?;
    let running: BTreeMap<String, &crate::runtime::ObservedContainer> = listed
        .iter()
        .filter(|c| c.status == "running")
        .map(|c| (c.id.clone(), c))
        .collect();
    let ids: Vec<String> = running.keys().cloned().collect();
    let samples = runtime.stats(&ids).await?;
    let mut out: Vec<ContainerUsage> = samples
        .into_iter()
        .filter_map(|s| {
            let c = running.get(&s.id)?;
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            Some(ContainerUsage {
                name: label(LABEL_NAME),
                group: label(LABEL_GROUP),
                service: label(LABEL_SERVICE),
                id: s.id,
                cpu_percent: (s.cpu_percent * 100.0).round() / 100.0,
                memory_bytes: s.memory_bytes,
                memory_limit_bytes: s.memory_limit_bytes,
                block_read_bytes: s.block_read_bytes,
                block_write_bytes: s.block_write_bytes,
                net_rx_bytes: s.net_rx_bytes,
                net_tx_bytes: s.net_tx_bytes,
                pids: s.pids,
                ..Default::default()
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Samples every [`SAMPLE_EVERY`] until `shutdown`. A runtime that does not
/// answer leaves the usage empty (the container report says why).
pub async fn run<R: ContainerRuntime>(
    runtime: R,
    mesh: String,
    tx: watch::Sender<Vec<ContainerUsage>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sample(&runtime, &mesh).await {
            Ok(u) => {
                logged = false;
                tx.send_replace(u);
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(error = %e, "cannot sample container usage");
                    logged = true;
                }
                tx.send_replace(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::StatsSample;

    const ID: &str = "b46dd0b9c65330b9678a7bfcc5ef5a5402213a8d0f2b2114341d55a4ff78f896";

    #[test]
    fn container_ids_come_from_every_cgroup_layout() {
        // cgroups v1 without systemd (as Podman runs on these machines).
        let v1 =
            format!("9:name=systemd:/libpod_parent/libpod-{ID}\n0::/libpod_parent/libpod-{ID}\n");
        assert_eq!(container_id_from_cgroup(&v1).as_deref(), Some(ID));
        // cgroups v2 with systemd, and a process in a nested cgroup.
        let v2 = format!("0::/machine.slice/libpod-{ID}.scope/container\n");
        assert_eq!(container_id_from_cgroup(&v2).as_deref(), Some(ID));
        // Conmon's cgroup is not the container's; a host process is none.
        let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
        assert_eq!(container_id_from_cgroup(&conmon), None);
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/session-1.scope\n"),
            None
        );
        assert_eq!(container_id_from_cgroup(""), None);
    }

    #[test]
    fn gpu_memory_goes_to_the_container_of_each_process() {
        let mut usage = vec![
            ContainerUsage {
                name: "llm".into(),
                id: ID.into(),
                ..Default::default()
            },
            ContainerUsage {
                name: "web".into(),
                id: "other".into(),
                ..Default::default()
            },
        ];
        // As a fake NVML would report them: two processes of the llm
        // container on GPUs 1 and 0, one host process, one unaccounted.
        let procs = [
            GpuProcess {
                gpu_index: 1,
                pid: 10,
                used_bytes: Some(6 << 30),
                container_id: ID.into(),
            },
            GpuProcess {
                gpu_index: 0,
                pid: 11,
                used_bytes: Some(1 << 30),
                container_id: ID.into(),
            },
            GpuProcess {
                gpu_index: 0,
                pid: 12,
                used_bytes: Some(2 << 30),
                container_id: String::new(),
            },
            GpuProcess {
                gpu_index: 0,
                pid: 13,
                used_bytes: None,
                container_id: "other".into(),
            },
        ];
        attribute_gpu(&mut usage, &procs);
        assert_eq!(usage[0].gpu_memory_bytes, 7 << 30);
        assert_eq!(usage[0].gpu_indices, [0, 1]);
        assert_eq!(
            (usage[1].gpu_memory_bytes, usage[1].gpu_indices.clone()),
            (0, vec![0])
        );
    }

    #[tokio::test]
    async fn a_sample_covers_the_running_containers_by_their_labels() {
        let rt = FakeRuntime::new();
        let spec = |name: &str| mesh_proto::v1::ContainerSpec {
            name: name.into(),
            group: "memory".into(),
            service: name.into(),
            image: "localhost/x".into(),
            ..Default::default()
        };
        rt.create("prod", &spec("db"), 1).await.expect("create");
        rt.create("prod", &spec("idle"), 1).await.expect("create");
        rt.start("mesh-db").await.expect("start");
        rt.set_stats(
            "mesh-db",
            StatsSample {
                cpu_percent: 12.345,
                memory_bytes: 5 << 20,
                pids: 3,
                ..Default::default()
            },
        );
        let u = sample(&rt, "prod").await.expect("sample");
        assert_eq!(u.len(), 1, "only running containers: {u:?}");
        assert_eq!(
            (
                u[0].name.as_str(),
                u[0].group.as_str(),
                u[0].cpu_percent,
                u[0].memory_bytes,
                u[0].pids
            ),
            ("db", "memory", 12.35, 5 << 20, 3)
        );
        assert!(sample(&rt, "other").await.expect("sample").is_empty());
    }
}
