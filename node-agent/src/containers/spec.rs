//! Container specs on the agent: the shared rules (validation, hash,
//! ownership labels, from `mesh_proto::spec`) and the translation of GPU
//! requests into devices, which only an agent needs.

use std::collections::BTreeMap;
use std::path::Path;

pub use mesh_proto::spec::*;

/// How a GPU request reaches the container runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuAccess {
    /// CDI device names (`nvidia.com/gpu=0`) when a CDI spec exists.
    pub cdi_devices: Vec<String>,
    /// Raw device nodes otherwise.
    pub device_nodes: Vec<String>,
    /// NVIDIA_VISIBLE_DEVICES for the container (the fallback path).
    pub env: BTreeMap<String, String>,
}

/// Translates requested GPUs (indices, UUIDs or "all"). With a CDI spec
/// for nvidia.com/gpu the runtime injects devices and libraries itself;
/// without one the agent passes the device nodes and tells the NVIDIA
/// container libraries which GPUs to expose. Pure: `cdi_available` and
/// `gpu_count` are facts the caller looked up.
pub fn gpu_access(requested: &[String], cdi_available: bool, gpu_count: u32) -> GpuAccess {
    let mut access = GpuAccess {
        cdi_devices: Vec::new(),
        device_nodes: Vec::new(),
        env: BTreeMap::new(),
    };
    if requested.is_empty() {
        return access;
    }
    let all = requested.iter().any(|g| g == "all");
    if cdi_available {
        access.cdi_devices = if all {
            vec!["nvidia.com/gpu=all".into()]
        } else {
            requested
                .iter()
                .map(|g| format!("nvidia.com/gpu={g}"))
                .collect()
        };
        return access;
    }
    let indices: Vec<String> = if all {
        (0..gpu_count).map(|i| i.to_string()).collect()
    } else {
        requested.to_vec()
    };
    for control in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
        access.device_nodes.push(control.into());
    }
    for g in &indices {
        // UUIDs cannot be mapped to a /dev node without NVML; indices can.
        if g.chars().all(|c| c.is_ascii_digit()) {
            access.device_nodes.push(format!("/dev/nvidia{g}"));
        }
    }
    access.env.insert(
        "NVIDIA_VISIBLE_DEVICES".into(),
        if all {
            "all".into()
        } else {
            requested.join(",")
        },
    );
    access
}

/// Whether this host has a CDI spec for NVIDIA GPUs.
pub fn cdi_spec_present() -> bool {
    [
        "/etc/cdi/nvidia.yaml",
        "/var/run/cdi/nvidia.yaml",
        "/etc/cdi/nvidia.json",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

#[cfg(test)]
mod tests;
