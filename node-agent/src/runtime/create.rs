//! Translation of a mesh container spec into Podman's create options.
//! Pure apart from the GPU facts passed in, so it is unit-tested by the JSON
//! it produces.

use mesh_proto::v1::ContainerSpec;
use podman_api::models::{
    LinuxCpu, LinuxDevice, LinuxMemory, LinuxResources, NamedVolume, PortMapping,
};
use podman_api::opts::{ContainerCreateOpts, ContainerCreateOptsBuilder};

use crate::containers::spec::{container_name, gpu_access, ownership_labels, validate};

use super::RuntimeError;

/// CPU quota period (Podman's default), microseconds.
const CPU_PERIOD: u64 = 100_000;

/// Facts about this host's GPUs that the translation needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuFacts {
    pub cdi_available: bool,
    pub gpu_count: u32,
}

pub fn create_opts(
    mesh: &str,
    spec: &ContainerSpec,
    generation: u64,
    gpus: GpuFacts,
) -> Result<ContainerCreateOpts, RuntimeError> {
    validate(spec).map_err(|problems| RuntimeError::InvalidSpec(problems.join("; ")))?;
    let mut env = spec.env.clone();
    let resources = spec.resources.clone().unwrap_or_default();
    let access = gpu_access(&resources.gpus, gpus.cdi_available, gpus.gpu_count);
    env.extend(access.env.clone());

    let mut builder: ContainerCreateOptsBuilder = ContainerCreateOpts::builder()
        .name(container_name(&spec.name))
        .image(&spec.image)
        .labels(ownership_labels(mesh, spec, generation))
        .env(env);
    if !spec.command.is_empty() {
        builder = builder.command(spec.command.clone());
    }
    if !spec.ports.is_empty() {
        builder = builder.portmappings(spec.ports.iter().map(|p| PortMapping {
            container_port: u16::try_from(p.container_port).ok(),
            host_port: u16::try_from(p.host_port).ok().filter(|p| *p != 0),
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            protocol: Some(if p.protocol.is_empty() {
                "tcp".into()
            } else {
                p.protocol.clone()
            }),
            range: None,
        }));
    }
    if let Some(v) = spec
        .volumes
        .iter()
        .find(|v| !v.managed.is_empty() && !v.source.starts_with('/'))
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "{}: the managed volume '{}' is not attached on this host",
            spec.name, v.managed
        )));
    }
    // A managed volume arrives resolved to its mount point (an absolute
    // source); it is bind-mounted with rslave propagation, so a volume
    // re-attached under a running container shows up inside it.
    let (binds, named): (Vec<_>, Vec<_>) =
        spec.volumes.iter().partition(|v| v.source.starts_with('/'));
    if !named.is_empty() {
        builder = builder.volumes(named.iter().map(|v| NamedVolume {
            name: Some(v.source.clone()),
            dest: Some(v.target.clone()),
            options: Some(if v.read_only {
                vec!["ro".into()]
            } else {
                vec![]
            }),
            is_anonymous: None,
        }));
    }
    if !binds.is_empty() {
        builder = builder.mounts(binds.iter().map(|v| podman_api::models::ContainerMount {
            _type: Some("bind".into()),
            source: Some(v.source.clone()),
            destination: Some(v.target.clone()),
            options: Some({
                let mut o = vec![if v.read_only { "ro" } else { "rw" }.to_string()];
                if !v.managed.is_empty() {
                    o.push("rslave".into());
                }
                o
            }),
            uid_mappings: None,
            gid_mappings: None,
        }));
    }
    let mut limits = LinuxResources {
        block_io: None,
        cpu: None,
        devices: None,
        hugepage_limits: None,
        memory: None,
        network: None,
        pids: None,
        rdma: None,
        unified: None,
    };
    let mut limited = false;
    if resources.cpus > 0.0 {
        limits.cpu = Some(LinuxCpu {
            period: Some(CPU_PERIOD),
            quota: Some((resources.cpus * CPU_PERIOD as f64).round() as i64),
            cpus: None,
            mems: None,
            realtime_period: None,
            realtime_runtime: None,
            shares: None,
        });
        limited = true;
    }
    if resources.memory_mib > 0 {
        limits.memory = Some(LinuxMemory {
            limit: Some((resources.memory_mib * 1024 * 1024) as i64),
            disable_oom_killer: None,
            kernel: None,
            kernel_tcp: None,
            reservation: None,
            swap: None,
            swappiness: None,
            use_hierarchy: None,
        });
        limited = true;
    }
    if limited {
        builder = builder.resource_limits(limits);
    }
    // CDI names and raw device nodes both travel as devices; Podman
    // resolves "nvidia.com/gpu=N" through its CDI registry.
    let devices: Vec<LinuxDevice> = access
        .cdi_devices
        .iter()
        .chain(access.device_nodes.iter())
        .map(|path| LinuxDevice {
            path: Some(path.clone()),
            file_mode: None,
            gid: None,
            major: None,
            minor: None,
            type_: None,
            uid: None,
        })
        .collect();
    if !devices.is_empty() {
        builder = builder.devices(devices);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{PortMapping as Port, Resources, VolumeMount};

    fn json(opts: &ContainerCreateOpts) -> serde_json::Value {
        serde_json::from_slice(&opts.serialize_vec().unwrap()).unwrap()
    }

    #[test]
    fn a_resolved_managed_mount_is_an_rslave_bind_labelled_with_the_desired_hash() {
        let desired = ContainerSpec {
            name: "memory-db".into(),
            group: "memory".into(),
            image: "img".into(),
            volumes: vec![VolumeMount {
                target: "/data".into(),
                managed: "memory-data".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let refused = create_opts("home", &desired, 1, GpuFacts::default()).unwrap_err();
        assert!(refused.to_string().contains("not attached"), "{refused}");
        let mut resolved = desired.clone();
        resolved.volumes[0].source = "/state/volumes/memory.memory-data/mnt".into();
        let j = json(&create_opts("home", &resolved, 1, GpuFacts::default()).unwrap());
        assert_eq!(
            j["mounts"][0]["source"],
            "/state/volumes/memory.memory-data/mnt"
        );
        assert_eq!(
            j["mounts"][0]["options"],
            serde_json::json!(["rw", "rslave"])
        );
        assert_eq!(
            j["labels"][crate::containers::spec::LABEL_SPEC_HASH],
            crate::containers::spec::spec_hash(&desired)
        );
    }

    #[test]
    fn full_spec_translates() {
        let spec = ContainerSpec {
            name: "tinyllama".into(),
            group: "gpu-services".into(),
            service: "tinyllama".into(),
            image: "localhost/mesh-demo:latest".into(),
            command: vec!["--mode".into(), "rep".into()],
            env: [("A".to_string(), "1".to_string())].into_iter().collect(),
            ports: vec![Port {
                container_port: 5555,
                host_port: 7150,
                ..Default::default()
            }],
            volumes: vec![
                VolumeMount {
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: false,
                    ..Default::default()
                },
                VolumeMount {
                    source: "/etc/models".into(),
                    target: "/models".into(),
                    read_only: true,
                    ..Default::default()
                },
            ],
            resources: Some(Resources {
                cpus: 0.5,
                memory_mib: 64,
                gpus: vec!["0".into()],
                vram_mib: 3072,
            }),
            ..Default::default()
        };
        let j = json(
            &create_opts(
                "home",
                &spec,
                3,
                GpuFacts {
                    cdi_available: false,
                    gpu_count: 1,
                },
            )
            .unwrap(),
        );
        assert_eq!(j["name"], "mesh-tinyllama");
        assert_eq!(j["image"], "localhost/mesh-demo:latest");
        assert_eq!(j["command"], serde_json::json!(["--mode", "rep"]));
        assert_eq!(j["labels"]["mesh.mesh"], "home");
        assert_eq!(j["labels"]["mesh.generation"], "3");
        assert_eq!(j["env"]["A"], "1");
        assert_eq!(j["env"]["NVIDIA_VISIBLE_DEVICES"], "0");
        assert_eq!(j["portmappings"][0]["container_port"], 5555);
        assert_eq!(j["portmappings"][0]["host_port"], 7150);
        assert_eq!(
            j["volumes"][0]["Name"]
                .as_str()
                .or(j["volumes"][0]["name"].as_str()),
            Some("data")
        );
        assert_eq!(
            j["mounts"][0]["source"]
                .as_str()
                .or(j["mounts"][0]["Source"].as_str()),
            Some("/etc/models")
        );
        assert_eq!(j["resource_limits"]["cpu"]["quota"], 50_000);
        assert_eq!(j["resource_limits"]["memory"]["limit"], 64 * 1024 * 1024);
        let devices: Vec<&str> = j["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert!(
            devices.contains(&"/dev/nvidia0") && devices.contains(&"/dev/nvidiactl"),
            "{devices:?}"
        );
    }

    #[test]
    fn cdi_devices_and_no_limits() {
        let spec = ContainerSpec {
            name: "phi".into(),
            image: "img".into(),
            resources: Some(Resources {
                gpus: vec!["all".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let j = json(
            &create_opts(
                "home",
                &spec,
                1,
                GpuFacts {
                    cdi_available: true,
                    gpu_count: 2,
                },
            )
            .unwrap(),
        );
        assert_eq!(j["devices"][0]["path"], "nvidia.com/gpu=all");
        assert!(j.get("resource_limits").is_none());
        assert!(j["env"].get("NVIDIA_VISIBLE_DEVICES").is_none());
    }

    #[test]
    fn invalid_spec_is_refused_with_reasons() {
        let spec = ContainerSpec {
            name: "x".into(),
            ..Default::default()
        };
        let err = create_opts("home", &spec, 1, GpuFacts::default()).unwrap_err();
        assert!(err.to_string().contains("image is empty"), "{err}");
    }
}
