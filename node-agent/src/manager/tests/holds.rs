use std::time::Duration;

use mesh_proto::v1::ContainerState;

use super::*;
use crate::runtime::fake::Op;

#[tokio::test(start_paused = true)]
async fn a_hold_in_the_desired_set_stops_and_is_never_started_until_lifted() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    m.set_desired(desired(2, vec![held("a", WireHold::Stopped)]));
    m.pass().await;
    assert_eq!(status(&report, "a").phase, "holding");
    settle().await;
    m.pass().await;
    let a = status(&report, "a");
    assert_eq!(a.state, ContainerState::Stopped as i32);
    assert_eq!(
        (a.phase.as_str(), a.hold),
        ("held", WireHold::Stopped as i32)
    );
    // Neither the restart policy nor reconcile starts it, however long.
    run_for(&mut m, 600).await;
    assert_eq!(host.rt.calls_of(Op::Start).len(), 1);
    assert_eq!(status(&report, "a").restart_count, 0);
    // Lifted by a newer desired set: started at once.
    m.set_desired(desired(3, vec![spec("a")]));
    m.pass().await;
    assert_eq!(host.rt.calls_of(Op::Start).len(), 2);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    assert_eq!(status(&report, "a").hold, WireHold::None as i32);
}

#[tokio::test(start_paused = true)]
async fn pause_and_kill_holds_are_applied_and_lifted() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("p"), spec("k")]));
    m.pass().await;
    m.set_desired(desired(
        2,
        vec![held("p", WireHold::Paused), held("k", WireHold::Killed)],
    ));
    passes(&mut m).await;
    assert_eq!(host.rt.status("mesh-p").as_deref(), Some("paused"));
    assert_eq!(host.rt.container("mesh-k").unwrap().exit_code, 137);
    assert_eq!(status(&report, "k").hold, WireHold::Killed as i32);
    run_for(&mut m, 120).await;
    assert_eq!(host.rt.calls_of(Op::Start), vec!["mesh-k", "mesh-p"]);
    m.set_desired(desired(3, vec![spec("p"), spec("k")]));
    m.pass().await;
    assert_eq!(host.rt.calls_of(Op::Unpause), vec!["mesh-p"]);
    assert_eq!(host.rt.status("mesh-p").as_deref(), Some("running"));
    assert_eq!(host.rt.status("mesh-k").as_deref(), Some("running"));
}

#[tokio::test(start_paused = true)]
async fn a_held_container_that_is_started_outside_is_held_again() {
    let host = Host::new();
    let (mut m, _report) = host.manager();
    m.set_desired(desired(1, vec![held("a", WireHold::Stopped)]));
    passes(&mut m).await;
    assert_eq!(host.rt.calls_of(Op::Start).len(), 0, "created, not started");
    host.rt.set_status("mesh-a", "running");
    tokio::time::advance(Duration::from_secs(1)).await;
    passes(&mut m).await;
    assert_eq!(host.rt.calls_of(Op::Stop), vec!["mesh-a"]);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("exited"));
}

#[tokio::test(start_paused = true)]
async fn a_container_on_its_way_to_a_hold_gets_no_health_verdict() {
    use mesh_proto::v1::health_check::Probe;
    use mesh_proto::v1::{ContainerFailure, ExecProbe, HealthCheck};
    let host = Host::new();
    let (mut m, report) = host.manager();
    let with_check = |hold: WireHold| {
        let mut s = held("web", hold);
        s.health = Some(HealthCheck {
            probe: Some(Probe::Exec(ExecProbe {
                command: vec!["true".into()],
            })),
            interval_ms: 1000,
            retries: 1,
            ..Default::default()
        });
        s
    };
    m.set_desired(desired(1, vec![with_check(WireHold::None)]));
    m.pass().await;
    // It ignores SIGTERM (the stop takes 10 s) and stops answering.
    host.rt.delay(Op::Stop, "mesh-web", Duration::from_secs(10));
    host.rt.set_exec("mesh-web", 1);
    m.set_desired(desired(2, vec![with_check(WireHold::Stopped)]));
    run_for(&mut m, 5).await;
    let web = status(&report, "web");
    assert_eq!(web.phase, "holding");
    assert_ne!(web.failure, ContainerFailure::Unhealthy as i32);
    run_for(&mut m, 7).await;
    assert_eq!(status(&report, "web").phase, "held");
}
