use super::*;
use crate::v1::{PortMapping, Resources, VolumeMount};

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
        ..Default::default()
    });
    s.resources = Some(Resources {
        cpus: -1.0,
        ..Default::default()
    });
    s.restart = 42;
    s.hold = 9;
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
        "unknown hold",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(validate(&spec()).is_ok());
}

#[test]
fn sets_refuse_duplicate_names_and_shared_host_ports() {
    let a = spec();
    let mut b = spec();
    b.name = "session-memory".into();
    let problems = validate_set(&[a.clone(), a.clone(), b])
        .unwrap_err()
        .join("\n");
    assert!(
        problems.contains("'memory-orchestrator' is used twice"),
        "{problems}"
    );
    assert!(
        problems.contains(
            "host port 7140/tcp is claimed by both memory-orchestrator and session-memory"
        ),
        "{problems}"
    );
    assert!(validate_set(&[a]).is_ok());
}

#[test]
fn holding_a_container_keeps_its_hash() {
    let a = spec();
    let mut b = spec();
    b.hold = crate::v1::Hold::Stopped as i32;
    assert_eq!(spec_hash(&a), spec_hash(&b));
    b.image = "other".into();
    assert_ne!(spec_hash(&a), spec_hash(&b));
}

#[test]
fn restart_words() {
    use crate::v1::RestartPolicy;
    assert_eq!(restart_policy(""), Ok(RestartPolicy::Always));
    assert_eq!(restart_policy("no"), Ok(RestartPolicy::Never));
    assert_eq!(restart_policy("on-failure"), Ok(RestartPolicy::OnFailure));
    assert!(restart_policy("sometimes")
        .unwrap_err()
        .contains("on-failure"));
}
