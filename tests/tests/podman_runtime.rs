//! The Podman runtime against a real Podman service (own storage, own
//! network namespace): create, start, observe through ownership labels,
//! logs, exec, pause, stop, remove, images; and the errors an operator
//! must be able to act on (missing image, taken port). Needs root and
//! podman: runs in CI, skips with a reason elsewhere.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_node_agent::containers::lifecycle::State;
use mesh_node_agent::containers::reconcile;
use mesh_node_agent::runtime::podman::PodmanRuntime;
use mesh_node_agent::runtime::{ContainerRuntime, RuntimeError};
use mesh_proto::v1::{ContainerSpec, PortMapping};
use mesh_tests::netns::Lan;
use mesh_tests::podman::{require_podman, TestPodman, BUSYBOX_IMAGE};

fn sleeper(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        group: "g".into(),
        service: name.into(),
        image: BUSYBOX_IMAGE.into(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo started $MESSAGE; exec sleep 600".into(),
        ],
        env: [("MESSAGE".to_string(), "hello".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

async fn state_of(runtime: &PodmanRuntime, name: &str) -> Option<State> {
    runtime
        .list("testmesh")
        .await
        .unwrap()
        .iter()
        .filter_map(|c| c.owned())
        .find(|o| o.name == name)
        .map(|o| o.state)
}

#[tokio::test(flavor = "multi_thread")]
async fn container_lifecycle_through_the_podman_api() {
    if !require_podman("container_lifecycle_through_the_podman_api") {
        return;
    }
    let mut lan = Lan::new();
    let host = lan.add_host("pc2");
    let podman = TestPodman::start(Some(&host)).await;
    let runtime = PodmanRuntime::new(&podman.socket(), Default::default());
    assert!(!runtime.ping().await.unwrap().version.is_empty());

    let spec = sleeper("svc");
    runtime.create("testmesh", &spec, 4).await.unwrap();
    assert_eq!(state_of(&runtime, "svc").await, Some(State::Created));
    runtime.start("mesh-svc").await.unwrap();
    assert_eq!(state_of(&runtime, "svc").await, Some(State::Running));

    // Ownership labels carry what reconcile needs; an unchanged host plans nothing.
    let observed: Vec<_> = runtime
        .list("testmesh")
        .await
        .unwrap()
        .iter()
        .filter_map(|c| c.owned())
        .collect();
    assert_eq!(observed[0].generation, 4);
    assert!(reconcile::plan("testmesh", std::slice::from_ref(&spec), &observed).is_noop());
    // Another mesh's agent sees nothing of ours.
    assert!(runtime.list("othermesh").await.unwrap().is_empty());

    let mut logs = Vec::new();
    for _ in 0..50 {
        logs = runtime.logs("mesh-svc", 10).await.unwrap();
        if !logs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logs, vec!["started hello".to_string()]);
    assert_eq!(runtime.exec("mesh-svc", &["true".into()]).await.unwrap(), 0);
    assert_eq!(
        runtime.exec("mesh-svc", &["false".into()]).await.unwrap(),
        1
    );

    runtime.pause("mesh-svc").await.unwrap();
    assert_eq!(state_of(&runtime, "svc").await, Some(State::Paused));
    runtime.unpause("mesh-svc").await.unwrap();
    runtime.kill("mesh-svc").await.unwrap();
    let state = state_of(&runtime, "svc").await;
    assert_eq!(state, Some(State::Error), "killed by SIGKILL exits 137");

    runtime.remove("mesh-svc").await.unwrap();
    assert_eq!(state_of(&runtime, "svc").await, None);
    // Removing what is gone is not an error: reconcile may repeat itself.
    runtime.remove("mesh-svc").await.unwrap();

    let images = runtime.images().await.unwrap();
    let busybox = images
        .iter()
        .find(|i| i.names.iter().any(|n| n == BUSYBOX_IMAGE))
        .unwrap();
    assert!(busybox.size_bytes > 500_000, "{busybox:?}");
    drop(lan);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_and_taken_port_are_clear_errors() {
    if !require_podman("missing_image_and_taken_port_are_clear_errors") {
        return;
    }
    let mut lan = Lan::new();
    let host = lan.add_host("mainpc");
    let podman = TestPodman::start(Some(&host)).await;
    let runtime = PodmanRuntime::new(&podman.socket(), Default::default());

    let mut missing = sleeper("nope");
    missing.image = "localhost/not-built-here:1".into();
    let err = runtime.create("testmesh", &missing, 1).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageMissing { ref image } if image == "localhost/not-built-here:1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no registry"), "{err}");
    assert!(
        runtime.list("testmesh").await.unwrap().is_empty(),
        "nothing was created"
    );

    let with_port = |name: &str| {
        let mut s = sleeper(name);
        s.ports = vec![PortMapping {
            container_port: 8080,
            host_port: 18080,
            ..Default::default()
        }];
        s
    };
    runtime
        .create("testmesh", &with_port("first"), 1)
        .await
        .unwrap();
    runtime.start("mesh-first").await.unwrap();
    runtime
        .create("testmesh", &with_port("second"), 1)
        .await
        .unwrap();
    let err = runtime.start("mesh-second").await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::PortTaken { ref port } if port == "18080"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("host port 18080 is already taken"),
        "{err}"
    );
    // The first one is untouched.
    let first = runtime
        .list("testmesh")
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.podman_name == "mesh-first")
        .unwrap();
    assert_eq!(first.status, "running");
}

#[tokio::test]
async fn dead_podman_service_is_reported_with_the_fix() {
    let runtime = PodmanRuntime::new(
        std::path::Path::new("/nonexistent/podman.sock"),
        Default::default(),
    );
    let err = runtime.list("testmesh").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("podman system service"), "{err}");
}
