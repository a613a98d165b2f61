//! Container specs: validation with messages that say what to fix, the
//! hash that tells the agent a spec changed, the ownership labels, and the
//! translation of GPU requests into devices.

use std::collections::BTreeMap;
use std::path::Path;

use mesh_proto::v1::ContainerSpec;
use prost::Message;

use super::restart::RestartPolicy;

/// Labels the agent puts on every container it creates.
pub const LABEL_MESH: &str = "mesh.mesh";
pub const LABEL_GROUP: &str = "mesh.group";
pub const LABEL_SERVICE: &str = "mesh.service";
pub const LABEL_NAME: &str = "mesh.name";
pub const LABEL_SPEC_HASH: &str = "mesh.spec-hash";
pub const LABEL_GENERATION: &str = "mesh.generation";

/// Podman container name of a spec.
pub fn container_name(spec_name: &str) -> String {
    format!("mesh-{spec_name}")
}

/// A stable hash of everything that shapes the container. Encoding is
/// deterministic (fields in tag order, maps ordered), so equal specs hash
/// equally in every process.
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let bytes = spec.encode_to_vec();
    // FNV-1a, 64 bit: change detection, not security.
    let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

/// The labels that mark a container as owned by this agent for `mesh`.
pub fn ownership_labels(
    mesh: &str,
    spec: &ContainerSpec,
    generation: u64,
) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_MESH.into(), mesh.into());
    labels.insert(LABEL_GROUP.into(), spec.group.clone());
    labels.insert(LABEL_SERVICE.into(), spec.service.clone());
    labels.insert(LABEL_NAME.into(), spec.name.clone());
    labels.insert(LABEL_SPEC_HASH.into(), spec_hash(spec));
    labels.insert(LABEL_GENERATION.into(), generation.to_string());
    labels
}

/// Everything wrong with a spec, each naming the field.
pub fn validate(spec: &ContainerSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let n = &spec.name;
    if mesh_certs::validate_name("container name", n).is_err() {
        problems.push(format!(
            "name '{n}': use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"
        ));
    }
    if spec.image.trim().is_empty() {
        problems.push(format!(
            "{n}: image is empty; name an image such as localhost/mesh-demo:latest"
        ));
    }
    let mut host_ports = BTreeMap::new();
    for p in &spec.ports {
        if p.container_port == 0 || p.container_port > 65535 {
            problems.push(format!(
                "{n}: container port {} is not in 1..=65535",
                p.container_port
            ));
        }
        if p.host_port > 65535 {
            problems.push(format!(
                "{n}: host port {} is not in 0..=65535",
                p.host_port
            ));
        }
        if !matches!(p.protocol.as_str(), "" | "tcp" | "udp") {
            problems.push(format!("{n}: protocol '{}' is not tcp or udp", p.protocol));
        }
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            &p.protocol
        };
        if p.host_port != 0
            && host_ports
                .insert((p.host_port, proto.to_string()), ())
                .is_some()
        {
            problems.push(format!(
                "{n}: host port {}/{proto} is mapped twice",
                p.host_port
            ));
        }
    }
    for v in &spec.volumes {
        if !v.target.starts_with('/') {
            problems.push(format!(
                "{n}: volume target '{}' must be an absolute path",
                v.target
            ));
        }
        if v.source.is_empty() {
            problems.push(format!("{n}: volume for '{}' has no source", v.target));
        }
    }
    if let Some(r) = &spec.resources {
        if r.cpus < 0.0 || !r.cpus.is_finite() {
            problems.push(format!("{n}: cpus {} must be a positive number", r.cpus));
        }
    }
    if let Err(e) = RestartPolicy::parse(&spec.restart_policy) {
        problems.push(format!("{n}: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

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
