use mesh_proto::v1::VolumeMount;

use super::*;
use crate::runtime::fake::Op;
use crate::volumes::{VolumeLink, VolumeMounts};

fn with_volume(name: &str) -> ContainerSpec {
    let mut s = spec(name);
    s.group = "memory".into();
    s.volumes.push(VolumeMount {
        target: "/data".into(),
        managed: "memory-data".into(),
        ..Default::default()
    });
    s
}

fn link(mounts: &VolumeMounts) -> VolumeLink {
    let (assignments, _) = tokio::sync::watch::channel(Vec::new());
    VolumeLink {
        assignments,
        mounts: mounts.clone(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_container_waits_for_its_volume_and_mounts_it_once_attached() {
    let host = Host::new();
    let (m, report) = host.manager();
    let mounts = VolumeMounts::default();
    let mut m = m.with_volumes(link(&mounts));
    m.set_desired(desired(1, vec![with_volume("db")]));
    m.pass().await;
    assert!(host.rt.calls_of(Op::Create).is_empty());
    let waiting = status(&report, "db");
    assert!(
        waiting.error.contains("waiting for volume memory-data"),
        "{}",
        waiting.error
    );
    mounts.set(
        "memory",
        "memory-data",
        Some("/state/volumes/memory.memory-data/mnt".into()),
    );
    m.pass().await;
    assert_eq!(host.rt.calls_of(Op::Create).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_running_container_is_restarted_once_after_its_volume_is_attached_again() {
    let host = Host::new();
    let (m, _report) = host.manager();
    let mounts = VolumeMounts::default();
    mounts.set("memory", "memory-data", Some("/mnt".into()));
    let mut m = m.with_volumes(link(&mounts));
    m.set_desired(desired(1, vec![with_volume("db"), spec("other")]));
    m.pass().await;
    settle().await;
    m.pass().await;
    assert_eq!(host.rt.status("mesh-db").as_deref(), Some("running"));
    // The fake's containers started at 0; the volume comes back later.
    m.volume_attached("memory", "memory-data", 100);
    assert_eq!(m.restart_stale_mounts(), vec!["db".to_string()]);
    m.pass().await;
    settle().await;
    m.pass().await;
    assert_eq!(host.rt.status("mesh-db").as_deref(), Some("running"));
    let starts = |n: &str| {
        host.rt
            .calls_of(Op::Start)
            .iter()
            .filter(|c| c.as_str() == n)
            .count()
    };
    assert_eq!(
        starts("mesh-db"),
        2,
        "started, then restarted onto the new mount"
    );
    assert_eq!(starts("mesh-other"), 1);
    // A container that mounts no managed volume is left alone.
    assert!(host.rt.status("mesh-other").is_some());
}
