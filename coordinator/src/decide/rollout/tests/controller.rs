//! The rollout controller over time: what it pushes, announces and
//! concludes, with `now` given.

use std::time::{Duration, Instant};

use super::*;
use crate::decide::rollout::controller::{advance, Controller};
use mesh_proto::v1::{rollout_event, RolloutEvent, RolloutSummary};

fn controller(t0: Instant) -> Controller {
    let (plan, hosts) = system();
    let unplaced = vec![mesh_proto::v1::UnplacedGroup {
        group: "gpu".into(),
        reasons: vec!["no GPU".into()],
    }];
    Controller::new(plan, hosts, unplaced, t0, Duration::from_secs(60))
}

fn summaries(events: &[RolloutEvent]) -> Vec<&RolloutSummary> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Some(rollout_event::Body::Summary(s)) => Some(s),
            _ => None,
        })
        .collect()
}

fn progressed(events: &[RolloutEvent]) -> Vec<(String, ServicePhase)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Some(rollout_event::Body::Progress(p)) => Some((
                p.service.clone(),
                ServicePhase::try_from(p.phase).expect("known phase"),
            )),
            _ => None,
        })
        .collect()
}

fn hosts_pushed(pushes: &[(String, Vec<ContainerSpec>)]) -> Vec<&str> {
    pushes.iter().map(|(h, _)| h.as_str()).collect()
}

#[test]
fn only_hosts_that_reported_get_a_set_and_nothing_is_released_onto_the_others() {
    let t0 = Instant::now();
    let (c, events, pushes) = advance(controller(t0), &Observed::new(), t0);
    assert!(pushes.is_empty(), "no host reported");
    assert!(c.released.is_empty());
    assert_eq!(progressed(&events).len(), 5, "one row per planned service");
    let mainpc: Observed = [("mainpc".to_string(), vec![])].into();
    let (c, _, pushes) = advance(c, &mainpc, t0 + Duration::from_millis(200));
    assert_eq!(hosts_pushed(&pushes), vec!["mainpc"]);
    assert_eq!(names(&pushes[0].1), vec!["registry"]);
    assert!(c.released.contains("registry"));
}

#[test]
fn progress_is_announced_once_per_change() {
    let t0 = Instant::now();
    let (c, first, _) = advance(controller(t0), &Observed::new(), t0);
    assert!(!first.is_empty());
    let (c, again, _) = advance(c, &Observed::new(), t0 + Duration::from_millis(200));
    assert!(again.is_empty(), "{again:?}");
    let (plan, _) = system();
    let obs = observe(&plan, &["registry"], &[]);
    let (_, changed, _) = advance(c, &obs, t0 + Duration::from_millis(400));
    assert_eq!(
        progressed(&changed),
        vec![
            ("registry".to_string(), ServicePhase::Healthy),
            ("orchestrator".to_string(), ServicePhase::Starting),
        ]
    );
}

#[test]
fn a_healthy_mesh_ends_the_rollout_once_and_tells_started_from_unchanged() {
    let t0 = Instant::now();
    let (plan, _) = system();
    // registry already ran when the rollout began.
    let before = observe(&plan, &["registry"], &[]);
    let (c, events, _) = advance(controller(t0), &before, t0);
    assert!(summaries(&events).is_empty());
    let all = observe(&plan, &["registry", "orchestrator", "session"], &[]);
    let (c, events, pushes) = advance(c, &all, t0 + Duration::from_secs(3));
    let s = summaries(&events);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].unchanged, vec!["registry".to_string()]);
    assert_eq!(s[0].started, vec!["orchestrator", "session"]);
    assert!(!s[0].ok, "the gpu group is unplaced");
    assert_eq!(s[0].elapsed_ms, 3000);
    assert_eq!(c.halted, None);
    assert_eq!(hosts_pushed(&pushes), vec!["mainpc", "pc2"]);
    let (c, events, _) = advance(c, &all, t0 + Duration::from_secs(4));
    assert!(summaries(&events).is_empty(), "ended once");
    assert!(c.summary.is_some());
}

#[test]
fn a_failure_halts_the_rollout_and_says_where() {
    let t0 = Instant::now();
    let (plan, _) = system();
    let mut obs = observe(&plan, &["registry"], &[]);
    let mut crashed = status(&plan[1], HealthState::Starting);
    crashed.crash_looping = true;
    crashed.last_exit_code = Some(3);
    obs.entry("pc2".into()).or_default().push(crashed);
    let (c, events, _) = advance(controller(t0), &obs, t0);
    let s = summaries(&events);
    assert_eq!(s.len(), 1);
    assert!(!s[0].ok);
    assert_eq!(
        s[0].message,
        "stopped: orchestrator on pc2: crash loop (last exit code 3); nothing healthy was torn down"
    );
    assert!(c.halted.is_some());
    // Halted: the session is not handed out even once its dependency heals.
    let healed = observe(&plan, &["registry", "orchestrator"], &[]);
    let (_, _, pushes) = advance(c, &healed, t0 + Duration::from_secs(1));
    let pc2 = pushes
        .iter()
        .find(|(h, _)| h == "pc2")
        .expect("pc2 reported");
    assert_eq!(names(&pc2.1), vec!["orchestrator"]);
}

#[test]
fn the_timeout_counts_from_the_start_in_the_given_time() {
    let t0 = Instant::now();
    let (c, events, _) = advance(
        controller(t0),
        &Observed::new(),
        t0 + Duration::from_secs(60),
    );
    assert!(summaries(&events).is_empty(), "not past 60 s yet");
    let (c, events, _) = advance(c, &Observed::new(), t0 + Duration::from_millis(60_001));
    let s = summaries(&events);
    assert_eq!(s.len(), 1);
    assert!(s[0].message.starts_with("stopped: timed out after 60 s"));
    assert_eq!(
        s[0].not_started.len(),
        5,
        "blocked ones count as not started"
    );
    assert!(c.halted.is_some());
}

#[test]
fn a_newer_apply_ends_a_running_rollout_but_not_a_finished_one() {
    let t0 = Instant::now();
    let c = controller(t0);
    let event = c.replaced(t0 + Duration::from_secs(2)).expect("running");
    let s = summaries(std::slice::from_ref(&event));
    assert_eq!(s[0].message, "replaced by a newer apply");
    assert_eq!(s[0].elapsed_ms, 2000);
    let (c, _, _) = advance(c, &Observed::new(), t0 + Duration::from_secs(61));
    assert!(c.replaced(t0 + Duration::from_secs(62)).is_none());
}

#[test]
fn with_copy_images_a_missing_image_waits_instead_of_halting() {
    let t0 = Instant::now();
    let (plan, _) = system();
    let mut obs = observe(&plan, &["registry"], &[]);
    let orchestrator = &plan[1];
    obs.entry("pc2".into())
        .or_default()
        .push(mesh_proto::v1::ContainerStatus {
            name: orchestrator.spec.name.clone(),
            state: mesh_proto::v1::ContainerState::Error as i32,
            error: "image localhost/x missing".into(),
            failure: mesh_proto::v1::ContainerFailure::ImageMissing as i32,
            desired_spec_hash: mesh_proto::spec::spec_hash(&orchestrator.spec),
            ..Default::default()
        });
    // Without copy_images: the rollout stops on it.
    let (c, events, _) = advance(controller(t0), &obs, t0);
    assert!(c.halted.is_some(), "{:?}", summaries(&events));
    // With it: still waiting, nothing halted, the service stays handed out.
    let mut waiting = controller(t0);
    waiting.wait_for_images = true;
    let (c, events, pushes) = advance(waiting, &obs, t0);
    assert!(c.halted.is_none(), "{:?}", summaries(&events));
    assert!(summaries(&events).is_empty());
    let pc2 = pushes
        .iter()
        .find(|(h, _)| h == "pc2")
        .expect("pc2 reported");
    assert!(names(&pc2.1).contains(&"orchestrator"));
}
