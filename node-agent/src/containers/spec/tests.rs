use super::*;
use mesh_proto::v1::{PortMapping, Resources, VolumeMount};

fn spec() -> ContainerSpec {
    ContainerSpec {
        name: "memory-orchestrator".into(),
        group: "memory-system".into(),
        service: "memory-orchestrator".into(),
        image: "localhost/mesh-demo:latest".into(),
        env: [
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect(),
        ports: vec![PortMapping {
            container_port: 7140,
            host_port: 7140,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn hash_is_stable_and_sensitive() {
    let a = spec();
    let mut b = spec();
    // Same content inserted in another order: same hash.
    b.env = [
        ("A".to_string(), "1".to_string()),
        ("B".to_string(), "2".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(spec_hash(&a), spec_hash(&b));
    b.image = "localhost/mesh-demo:v2".into();
    assert_ne!(spec_hash(&a), spec_hash(&b));
    assert_eq!(spec_hash(&a).len(), 16);
}

#[test]
fn ownership_labels_carry_identity() {
    let labels = ownership_labels("home", &spec(), 7);
    assert_eq!(labels[LABEL_MESH], "home");
    assert_eq!(labels[LABEL_GROUP], "memory-system");
    assert_eq!(labels[LABEL_GENERATION], "7");
    assert_eq!(labels[LABEL_SPEC_HASH], spec_hash(&spec()));
    assert_eq!(container_name("x"), "mesh-x");
}

#[test]
fn validation_reports_every_problem() {
    let mut s = spec();
    s.name = "Bad Name".into();
    s.image = " ".into();
    s.ports.push(PortMapping {
        container_port: 7141,
        host_port: 7140,
        ..Default::default()
    });
    s.ports.push(PortMapping {
        container_port: 0,
        host_port: 1,
        protocol: "sctp".into(),
        ..Default::default()
    });
    s.volumes.push(VolumeMount {
        source: "data".into(),
        target: "relative".into(),
        read_only: false,
    });
    s.resources = Some(Resources {
        cpus: -1.0,
        ..Default::default()
    });
    s.restart_policy = "sometimes".into();
    let problems = validate(&s).unwrap_err();
    let text = problems.join("\n");
    for needle in [
        "name 'Bad Name'",
        "image is empty",
        "host port 7140/tcp is mapped twice",
        "container port 0",
        "protocol 'sctp'",
        "must be an absolute path",
        "cpus -1",
        "unknown restart policy",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(validate(&spec()).is_ok());
}

#[test]
fn gpu_translation() {
    let none = gpu_access(&[], true, 1);
    assert!(none.cdi_devices.is_empty() && none.device_nodes.is_empty() && none.env.is_empty());

    let cdi = gpu_access(&["0".into(), "1".into()], true, 2);
    assert_eq!(
        cdi.cdi_devices,
        vec!["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    );
    assert!(cdi.device_nodes.is_empty());
    assert_eq!(
        gpu_access(&["all".into()], true, 2).cdi_devices,
        vec!["nvidia.com/gpu=all"]
    );

    let raw = gpu_access(&["1".into()], false, 2);
    assert!(raw.cdi_devices.is_empty());
    assert!(raw.device_nodes.contains(&"/dev/nvidiactl".to_string()));
    assert!(raw.device_nodes.contains(&"/dev/nvidia1".to_string()));
    assert!(!raw.device_nodes.contains(&"/dev/nvidia0".to_string()));
    assert_eq!(raw.env["NVIDIA_VISIBLE_DEVICES"], "1");

    let all = gpu_access(&["all".into()], false, 2);
    assert!(all.device_nodes.contains(&"/dev/nvidia0".to_string()));
    assert!(all.device_nodes.contains(&"/dev/nvidia1".to_string()));
    assert_eq!(all.env["NVIDIA_VISIBLE_DEVICES"], "all");

    let uuid = gpu_access(&["GPU-abc".into()], false, 1);
    assert_eq!(uuid.env["NVIDIA_VISIBLE_DEVICES"], "GPU-abc");
    assert_eq!(uuid.device_nodes.len(), 3, "control nodes only: {uuid:?}");
}
