//! From the TOML service form (`mesh_topology::service::ServiceSpec`, shared
//! by containers files and topologies) to the API's `ContainerSpec`.

use mesh_topology::service::{parse_port, parse_volume, ServiceSpec, VolumeEntry};

use crate::v1::health_check::Probe;
use crate::v1::{
    ContainerSpec, ExecProbe, HealthCheck, HttpProbe, PortMapping, Resources, TcpProbe,
    VolumeMount, ZmqProbe,
};

/// Converts the TOML form into the API's spec; errors name the service.
pub fn container_spec(s: &ServiceSpec) -> Result<ContainerSpec, String> {
    let ports = s
        .ports
        .iter()
        .map(|p| {
            parse_port(p).map(|p| PortMapping {
                container_port: u32::from(p.container),
                host_port: u32::from(p.host),
                protocol: p.protocol,
                host_ip: String::new(),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("{}: {e}", s.name))?;
    let volumes = s
        .volumes
        .iter()
        .map(|v| {
            let v = match v {
                VolumeEntry::Mount(m) => m,
                VolumeEntry::Managed(m) => {
                    return Ok(VolumeMount {
                        source: String::new(),
                        target: m.target.clone(),
                        read_only: false,
                        managed: m.name.clone(),
                    })
                }
            };
            parse_volume(v).map(|v| VolumeMount {
                source: v.source,
                target: v.target,
                read_only: v.read_only,
                managed: String::new(),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("{}: {e}", s.name))?;
    let health = match &s.health {
        None => None,
        Some(h) => {
            if h.probe_count() != 1 {
                return Err(format!(
                    "{}: a health check needs exactly one of tcp, http, exec, zmq",
                    s.name
                ));
            }
            let probe = if let Some(t) = &h.tcp {
                Probe::Tcp(TcpProbe {
                    port: u32::from(t.port),
                })
            } else if let Some(x) = &h.http {
                Probe::Http(HttpProbe {
                    port: u32::from(x.port),
                    path: x.path.clone(),
                })
            } else if let Some(z) = &h.zmq {
                Probe::Zmq(ZmqProbe {
                    port: u32::from(z.port),
                    request: z.request.clone(),
                    expect: z.expect.clone(),
                })
            } else {
                Probe::Exec(ExecProbe {
                    command: h.exec.clone().unwrap_or_default(),
                })
            };
            Some(HealthCheck {
                probe: Some(probe),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                retries: h.retries,
                start_period_ms: h.start_period_ms,
            })
        }
    };
    Ok(ContainerSpec {
        name: s.name.clone(),
        group: if s.group.is_empty() {
            s.name.clone()
        } else {
            s.group.clone()
        },
        service: s.name.clone(),
        image: s.image.clone(),
        command: s.command.clone(),
        env: s.env.clone(),
        ports,
        volumes,
        resources: Some(Resources {
            cpus: s.cpus,
            memory_mib: s.memory_mib,
            gpus: s.gpus.clone(),
            vram_mib: s.vram_mib,
        }),
        labels: s.labels.clone(),
        health,
        hold: 0,
        restart: crate::spec::restart_policy(&s.restart).map_err(|e| format!("{}: {e}", s.name))?
            as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_topology::service::ManagedVolume;

    #[test]
    fn a_managed_volume_becomes_a_mount_of_its_name() {
        let s = ServiceSpec {
            name: "memory-orchestrator".into(),
            image: "img".into(),
            volumes: vec![
                "models:/models:ro".into(),
                VolumeEntry::Managed(ManagedVolume {
                    name: "memory-data".into(),
                    target: "/data".into(),
                    size_mib: 1024,
                    replicate: true,
                    import: String::new(),
                }),
            ],
            ..Default::default()
        };
        let spec = container_spec(&s).unwrap();
        assert_eq!(spec.volumes.len(), 2);
        assert_eq!(spec.volumes[0].source, "models");
        assert!(spec.volumes[0].managed.is_empty());
        assert_eq!(spec.volumes[1].managed, "memory-data");
        assert_eq!(spec.volumes[1].target, "/data");
        assert!(spec.volumes[1].source.is_empty());
    }
}
