use std::time::Duration;

use mesh_proto::v1::health_check::Probe;
use mesh_proto::v1::{
    ContainerFailure, ContainerState, ExecProbe, HealthCheck, HealthState,
    RestartPolicy as WireRestart,
};
use tokio::time::Instant;

use super::*;
use crate::runtime::fake::Op;
use crate::runtime::RuntimeError;

#[tokio::test(start_paused = true)]
async fn creates_and_starts_then_leaves_running_containers_alone() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a"), spec("b")]));
    m.pass().await;
    assert_eq!(host.rt.calls_of(Op::Create), vec!["mesh-a", "mesh-b"]);
    assert_eq!(host.rt.calls_of(Op::Start), vec!["mesh-a", "mesh-b"]);
    let a = status(&report, "a");
    assert_eq!(a.state, ContainerState::Running as i32);
    assert_eq!(a.failure, ContainerFailure::None as i32);
    assert_eq!(a.phase, "starting");
    let writes = host.rt.writes();
    run_for(&mut m, 60).await;
    assert_eq!(
        host.rt.writes(),
        writes,
        "a host that matches gets no writes"
    );
    assert_eq!(status(&report, "a").phase, "running");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_created_or_removed_until_a_desired_set_is_known() {
    let host = Host::new();
    host.rt.adopt(MESH, &spec("old"), 1, "running");
    let (mut m, report) = host.manager();
    run_for(&mut m, 30).await;
    assert_eq!(host.rt.writes(), 0);
    let old = status(&report, "old");
    assert_eq!(old.error, "adopted; waiting for a desired set");
    // Once known, what is not desired goes, in the background.
    m.set_desired(desired(1, vec![spec("a")]));
    passes(&mut m).await;
    assert_eq!(host.rt.calls_of(Op::Remove), vec!["mesh-old"]);
    assert_eq!(host.rt.status("mesh-old"), None);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    assert!(!m.tracked.contains_key("old"));
}

#[tokio::test(start_paused = true)]
async fn a_changed_spec_recreates_but_a_hold_alone_does_not() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    let mut v2 = spec("a");
    v2.image = "img:2".into();
    m.set_desired(desired(2, vec![v2.clone()]));
    m.pass().await;
    assert_eq!(status(&report, "a").phase, "removing");
    settle().await;
    m.pass().await;
    assert_eq!(host.rt.calls_of(Op::Create), vec!["mesh-a", "mesh-a"]);
    assert_eq!(host.rt.container("mesh-a").unwrap().image, "img:2");
    let a = status(&report, "a");
    assert_eq!(a.spec_hash, a.desired_spec_hash);
    // Holding it changes the desired set but not the spec hash.
    let mut h = v2;
    h.hold = WireHold::Stopped as i32;
    m.set_desired(desired(3, vec![h]));
    passes(&mut m).await;
    assert_eq!(host.rt.calls_of(Op::Create).len(), 2);
    assert_eq!(host.rt.calls_of(Op::Remove).len(), 1);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("exited"));
}

#[tokio::test(start_paused = true)]
async fn crashes_restart_with_backoff_and_flag_a_crash_loop() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    host.rt.crash_on_start("mesh-a", Some(3));
    host.rt.set_logs("mesh-a", &["boom"]);
    m.set_desired(desired(1, vec![spec("a")]));
    let t0 = Instant::now();
    m.pass().await;
    let mut starts = Vec::new();
    let mut seen = 1;
    for _ in 0..200 {
        tokio::time::advance(Duration::from_millis(250)).await;
        m.pass().await;
        let n = host.rt.calls_of(Op::Start).len();
        if n > seen {
            starts.push(t0.elapsed().as_millis() / 250);
            seen = n;
        }
    }
    // Started at 0; each exit is seen a pass (250 ms) later, then 1, 2, 4, 8, 16 s.
    let gaps: Vec<u128> = std::iter::once(0)
        .chain(starts.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(gaps, vec![5, 9, 17, 33, 65], "in 250 ms steps: {starts:?}");
    let a = status(&report, "a");
    assert!(a.crash_looping);
    // Five restarts done, the sixth decided and waiting.
    assert_eq!(a.restart_count, 6);
    assert_eq!(a.last_exit_code, Some(3));
    assert_eq!(a.failure, ContainerFailure::Exited as i32);
    assert_eq!(a.error, "exited with code 3");
    assert_eq!(a.last_logs, vec!["boom"]);
    assert_eq!(a.phase, "backing off");
    assert!(a.next_restart_unix_ms > 0);
}

#[tokio::test(start_paused = true)]
async fn a_policy_of_never_keeps_a_clean_exit_stopped() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    let mut never = spec("job");
    never.restart = WireRestart::Never as i32;
    m.set_desired(desired(1, vec![never]));
    m.pass().await;
    host.rt.exit("mesh-job", 0);
    run_for(&mut m, 300).await;
    assert_eq!(host.rt.calls_of(Op::Start).len(), 1);
    let job = status(&report, "job");
    assert_eq!(job.phase, "staying stopped");
    assert_eq!(job.failure, ContainerFailure::None as i32);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_run_resets_the_backoff() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    let mut web = spec("web");
    web.health = Some(HealthCheck {
        probe: Some(Probe::Exec(ExecProbe {
            command: vec!["true".into()],
        })),
        interval_ms: 1000,
        retries: 1,
        ..Default::default()
    });
    m.set_desired(desired(1, vec![web]));
    m.pass().await;
    for _ in 0..3 {
        host.rt.exit("mesh-web", 1);
        run_for(&mut m, 1).await;
        run_for(&mut m, 70).await;
    }
    assert_eq!(m.tracked["web"].machine.restart.consecutive, 0);
    assert_eq!(status(&report, "web").health, HealthState::Healthy as i32);
    assert_eq!(status(&report, "web").restart_count, 3);
    host.rt.set_exec("mesh-web", 1);
    run_for(&mut m, 2).await;
    let web = status(&report, "web");
    assert_eq!(web.health, HealthState::Unhealthy as i32);
    assert_eq!(web.failure, ContainerFailure::Unhealthy as i32);
    host.rt.set_exec("mesh-web", 0);
    run_for(&mut m, 2).await;
    assert_eq!(
        status(&report, "web").failure,
        ContainerFailure::None as i32
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_is_typed_and_retried_with_backoff() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    let missing = RuntimeError::ImageMissing {
        image: "img:1".into(),
    };
    host.rt.fail_next(Op::Create, "mesh-a", missing.clone());
    host.rt.fail_next(Op::Create, "mesh-a", missing);
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    let a = status(&report, "a");
    assert_eq!(a.failure, ContainerFailure::ImageMissing as i32);
    assert!(a.error.contains("build or load it here"), "{}", a.error);
    assert_eq!(a.phase, "failed");
    assert_eq!(host.rt.calls_of(Op::Start).len(), 0);
    run_for(&mut m, 1).await; // retried after 1 s, fails again
    assert_eq!(host.rt.calls_of(Op::Create).len(), 2);
    run_for(&mut m, 1).await; // next retry after 2 s: not yet
    assert_eq!(host.rt.calls_of(Op::Create).len(), 2);
    run_for(&mut m, 1).await;
    assert_eq!(host.rt.calls_of(Op::Create).len(), 3);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    assert_eq!(status(&report, "a").failure, ContainerFailure::None as i32);
    // A held one is only created: that alone ends the failure.
    host.rt.fail_next(
        Op::Create,
        "mesh-h",
        RuntimeError::PortTaken { port: "80".into() },
    );
    m.set_desired(desired(2, vec![spec("a"), held("h", WireHold::Stopped)]));
    m.pass().await;
    assert_eq!(
        status(&report, "h").failure,
        ContainerFailure::PortTaken as i32
    );
    run_for(&mut m, 2).await; // retried, created; then seen held
    let h = status(&report, "h");
    assert_eq!(
        (h.failure, h.phase.as_str()),
        (ContainerFailure::None as i32, "held")
    );
}

#[tokio::test(start_paused = true)]
async fn a_desired_container_not_created_yet_says_so() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.publish(&[], m.desired.clone().as_ref());
    let a = status(&report, "a");
    assert_eq!(a.failure, ContainerFailure::NotCreatedYet as i32);
    assert_eq!(a.error, mesh_proto::spec::NOT_CREATED_YET);
}

#[tokio::test(start_paused = true)]
async fn an_agent_restart_adopts_containers_as_they_are() {
    let host = Host::new();
    {
        let (mut m, _) = host.manager();
        m.set_desired(desired(7, vec![spec("a"), held("b", WireHold::Stopped)]));
        passes(&mut m).await;
    }
    host.rt.clear_calls();
    // A new agent with no coordinator: the persisted set is kept as it was.
    let (mut m, report) = host.manager();
    run_for(&mut m, 120).await;
    assert_eq!(host.rt.writes(), 0, "{:?}", host.rt.calls());
    assert_eq!(report.borrow().desired_generation, 7);
    assert_eq!(status(&report, "a").phase, "running");
    let b = status(&report, "b");
    assert_eq!(
        (b.phase.as_str(), b.hold),
        ("held", WireHold::Stopped as i32)
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_coordinator_or_runtime_changes_nothing() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a"), spec("b")]));
    m.pass().await;
    let (inputs, rx) = tokio::sync::mpsc::channel(1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(m.run(rx, shutdown.clone()));
    let writes = host.rt.writes();
    // Ten minutes without a word from the coordinator.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(host.rt.writes(), writes);
    // Podman gone for a while: reported, nothing touched.
    host.rt.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!report.borrow().runtime_available);
    host.rt.set_unavailable(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(report.borrow().runtime_available);
    assert_eq!(host.rt.writes(), writes);
    assert_eq!(host.rt.status("mesh-b").as_deref(), Some("running"));
    shutdown.cancel();
    drop(inputs);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fifty_unchanged_containers_need_no_writes_and_a_slow_removal_blocks_nothing() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    let specs: Vec<_> = (0..50).map(|i| spec(&format!("s{i}"))).collect();
    m.set_desired(desired(1, specs.clone()));
    passes(&mut m).await;
    let writes = host.rt.writes();
    run_for(&mut m, 30).await;
    assert_eq!(host.rt.writes(), writes);
    assert_eq!(m.writes as usize, writes);
    // One goes, slowly (a container that ignores SIGTERM): the others are kept.
    host.rt
        .delay(Op::Remove, "mesh-s0", Duration::from_secs(10));
    m.set_desired(desired(2, specs[1..].to_vec()));
    m.pass().await;
    host.rt.exit("mesh-s1", 1);
    run_for(&mut m, 3).await;
    assert_eq!(
        host.rt
            .calls_of(Op::Start)
            .iter()
            .filter(|n| *n == "mesh-s1")
            .count(),
        2
    );
    assert!(host.rt.status("mesh-s0").is_some(), "still being removed");
    run_for(&mut m, 10).await;
    assert_eq!(host.rt.status("mesh-s0"), None);
    assert!(!m.tracked.contains_key("s0"));
    assert_eq!(report.borrow().containers.len(), 49);
}
