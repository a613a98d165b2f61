//! GPU inventory behind one seam: measured through NVML where the driver
//! is present, otherwise what the configuration declares (always marked
//! declared), otherwise nothing, with the reason NVML was unavailable.

use mesh_proto::v1::{Gpu, GpuProcess, GpuReport, GpuSource};
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;
use serde::Deserialize;

const MIB: u64 = 1024 * 1024;

/// Something that can say which GPUs a host has right now.
pub trait GpuProbe: Send {
    fn report(&mut self) -> GpuReport;
}

/// A GPU named in the agent configuration, for hosts without NVML.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGpu {
    pub name: String,
    pub vram_mib: u64,
    #[serde(default)]
    pub uuid: Option<String>,
}

/// NVML, with the declared list as the fallback when NVML cannot start.
pub struct HostGpus {
    nvml: Result<Nvml, String>,
    declared: Vec<DeclaredGpu>,
}

impl HostGpus {
    pub fn detect(declared: Vec<DeclaredGpu>) -> HostGpus {
        let nvml = Nvml::init().map_err(|e| format!("no NVML: {e}"));
        match &nvml {
            Ok(_) => tracing::info!("NVML initialised"),
            Err(reason) => tracing::info!(%reason, "GPUs will not be measured"),
        }
        HostGpus { nvml, declared }
    }
}

impl GpuProbe for HostGpus {
    fn report(&mut self) -> GpuReport {
        match &self.nvml {
            Ok(nvml) => measure(nvml),
            Err(reason) => declared_report(&self.declared, reason),
        }
    }
}

/// What a host without NVML reports: the declared GPUs, or none.
pub fn declared_report(declared: &[DeclaredGpu], nvml_reason: &str) -> GpuReport {
    let gpus: Vec<Gpu> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| Gpu {
            index: i as u32,
            uuid: d.uuid.clone().unwrap_or_else(|| format!("declared-{i}")),
            name: d.name.clone(),
            memory_total_bytes: d.vram_mib * MIB,
            memory_used_bytes: 0,
            memory_free_bytes: d.vram_mib * MIB,
            utilization_percent: None,
            temperature_celsius: None,
            declared: true,
        })
        .collect();
    GpuReport {
        source: if gpus.is_empty() {
            GpuSource::None
        } else {
            GpuSource::Declared
        } as i32,
        nvml_unavailable: nvml_reason.to_string(),
        gpus,
        ..Default::default()
    }
}

fn measure(nvml: &Nvml) -> GpuReport {
    let mut report = GpuReport {
        source: GpuSource::Nvml as i32,
        driver_version: nvml.sys_driver_version().unwrap_or_default(),
        cuda_version: nvml
            .sys_cuda_driver_version()
            .map(|v| {
                format!(
                    "{}.{}",
                    nvml_wrapper::cuda_driver_version_major(v),
                    nvml_wrapper::cuda_driver_version_minor(v)
                )
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            report.nvml_unavailable = format!("NVML device count failed: {e}");
            return report;
        }
    };
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(index, error = %e, "GPU not readable");
                continue;
            }
        };
        let memory = device.memory_info().ok();
        report.gpus.push(Gpu {
            index,
            uuid: device.uuid().unwrap_or_default(),
            name: device.name().unwrap_or_default(),
            memory_total_bytes: memory.as_ref().map_or(0, |m| m.total),
            memory_used_bytes: memory.as_ref().map_or(0, |m| m.used),
            memory_free_bytes: memory.as_ref().map_or(0, |m| m.free),
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
            declared: false,
        });
        // Per-process accounting (compute and graphics; a process using
        // both is listed once), with each process's container.
        let mut seen = std::collections::BTreeSet::new();
        let procs = device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .chain(device.running_graphics_processes().unwrap_or_default());
        for p in procs {
            if !seen.insert(p.pid) {
                continue;
            }
            report.processes.push(GpuProcess {
                gpu_index: index,
                pid: p.pid,
                used_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
                container_id: crate::usage::container_of_pid(p.pid).unwrap_or_default(),
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_gpus_are_marked_and_sized() {
        let declared = vec![DeclaredGpu {
            name: "RTX 4090".into(),
            vram_mib: 24576,
            uuid: None,
        }];
        let r = declared_report(&declared, "no NVML: libnvidia-ml.so.1: cannot open");
        assert_eq!(r.source, GpuSource::Declared as i32);
        assert_eq!(r.gpus.len(), 1);
        assert!(r.gpus[0].declared);
        assert_eq!(r.gpus[0].memory_total_bytes, 24 * 1024 * MIB);
        assert_eq!(r.gpus[0].uuid, "declared-0");
        assert!(r.nvml_unavailable.starts_with("no NVML"));
    }

    #[test]
    fn nothing_declared_means_none() {
        let r = declared_report(&[], "no NVML: x");
        assert_eq!(r.source, GpuSource::None as i32);
        assert!(r.gpus.is_empty());
    }

    /// On machines without the NVIDIA driver NVML must fail cleanly and the
    /// agent must say so; on a GPU machine the GPUs must be measured.
    #[test]
    fn real_probe_reports_fact_not_crash() {
        let mut probe = HostGpus::detect(vec![]);
        let r = probe.report();
        if r.source == GpuSource::Nvml as i32 {
            assert!(r
                .gpus
                .iter()
                .all(|g| !g.declared && g.memory_total_bytes > 0));
        } else {
            assert!(r.nvml_unavailable.starts_with("no NVML"), "{r:?}");
        }
    }
}
