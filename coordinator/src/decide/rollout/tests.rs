use super::*;
use mesh_proto::v1::health_check::Probe;
use mesh_proto::v1::{HealthCheck, ZmqProbe};
use proptest::prelude::*;

fn spec(name: &str, group: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        group: group.into(),
        service: name.into(),
        image: "localhost/mesh-demo:latest".into(),
        health: Some(HealthCheck {
            probe: Some(Probe::Zmq(ZmqProbe {
                port: 5555,
                request: "health".into(),
                expect: "ok".into(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn planned(name: &str, group: &str, host: Option<&str>, deps: &[&str]) -> Planned {
    Planned {
        service: name.into(),
        group: group.into(),
        host: host.map(str::to_string),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        spec: spec(name, group),
    }
}

/// registry (mainpc) <- orchestrator (pc2) <- session (pc2); llm unplaced.
fn system() -> (Vec<Planned>, Vec<String>) {
    (
        vec![
            planned("registry", "core", Some("mainpc"), &[]),
            planned("orchestrator", "memory", Some("pc2"), &["registry"]),
            planned("session", "memory", Some("pc2"), &["orchestrator"]),
            planned("llm", "gpu", None, &["registry"]),
            planned("translator", "tools", Some("mainpc"), &["llm"]),
        ],
        vec!["mainpc".into(), "pc2".into()],
    )
}

fn status(p: &Planned, health: HealthState) -> ContainerStatus {
    ContainerStatus {
        name: p.spec.name.clone(),
        group: p.group.clone(),
        service: p.service.clone(),
        state: ContainerState::Running as i32,
        health: health as i32,
        spec_hash: spec_hash(&p.spec),
        ..Default::default()
    }
}

fn observe(plan: &[Planned], healthy: &[&str], other: &[(&str, HealthState)]) -> Observed {
    let mut out = Observed::new();
    for p in plan {
        let health = if healthy.contains(&p.service.as_str()) {
            Some(HealthState::Healthy)
        } else {
            other.iter().find(|(n, _)| *n == p.service).map(|(_, h)| *h)
        };
        if let (Some(h), Some(host)) = (health, &p.host) {
            out.entry(host.clone()).or_default().push(status(p, h));
        }
    }
    out
}

fn phase(step: &Step, service: &str) -> ServicePhase {
    let row = step
        .progress
        .iter()
        .find(|r| r.service == service)
        .expect("every planned service has a row");
    ServicePhase::try_from(row.phase).expect("a known phase")
}

fn names(set: &[ContainerSpec]) -> Vec<&str> {
    set.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn only_services_without_pending_dependencies_start_first() {
    let (plan, hosts) = system();
    let s = step(&plan, &hosts, &Observed::new(), &BTreeSet::new(), false, 0);
    assert_eq!(names(&s.desired["mainpc"]), vec!["registry"]);
    assert!(s.desired["pc2"].is_empty());
    assert_eq!(phase(&s, "registry"), ServicePhase::Starting);
    assert_eq!(phase(&s, "orchestrator"), ServicePhase::Waiting);
    let row = s
        .progress
        .iter()
        .find(|r| r.service == "orchestrator")
        .expect("row");
    assert_eq!(row.waiting_on, vec!["registry".to_string()]);
    assert_eq!(row.message, "waiting for registry");
    assert!(!s.complete && !s.failed);
}

#[test]
fn a_healthy_dependency_releases_the_next_service() {
    let (plan, hosts) = system();
    let obs = observe(&plan, &["registry"], &[]);
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator"]);
    assert_eq!(phase(&s, "registry"), ServicePhase::Healthy);
    assert_eq!(phase(&s, "session"), ServicePhase::Waiting);
    // A dependency that is running but still starting its health check does not count.
    let obs = observe(&plan, &[], &[("registry", HealthState::Starting)]);
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert!(s.desired["pc2"].is_empty());
}

#[test]
fn unplaced_groups_block_their_dependents_transitively() {
    let (plan, hosts) = system();
    let s = step(&plan, &hosts, &Observed::new(), &BTreeSet::new(), false, 0);
    assert_eq!(phase(&s, "llm"), ServicePhase::Blocked);
    assert_eq!(phase(&s, "translator"), ServicePhase::Blocked);
    let row = s
        .progress
        .iter()
        .find(|r| r.service == "translator")
        .expect("row");
    assert_eq!(row.message, "depends on llm, which cannot start");
    let obs = observe(&plan, &["registry", "orchestrator", "session"], &[]);
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert!(s.complete, "every placed, unblocked service is healthy");
    assert_eq!(names(&s.desired["mainpc"]), vec!["registry"]);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator", "session"]);
}

#[test]
fn a_restarted_coordinator_adopts_what_already_runs() {
    let (plan, hosts) = system();
    // Nothing released in memory, but orchestrator and session run; the
    // registry's container is gone. They must not be torn down while the
    // registry comes back.
    let obs = observe(
        &plan,
        &[],
        &[
            ("orchestrator", HealthState::Healthy),
            ("session", HealthState::Healthy),
        ],
    );
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator", "session"]);
    assert_eq!(names(&s.desired["mainpc"]), vec!["registry"]);
}

#[test]
fn a_failure_is_reported_and_a_halt_releases_nothing_new() {
    let (plan, hosts) = system();
    let mut obs = observe(&plan, &["registry"], &[]);
    let released: BTreeSet<String> = ["registry".to_string(), "orchestrator".to_string()].into();
    let orchestrator = &plan[1];
    let mut crashed = status(orchestrator, HealthState::Starting);
    crashed.crash_looping = true;
    crashed.last_exit_code = Some(3);
    obs.entry("pc2".into()).or_default().push(crashed);
    let s = step(&plan, &hosts, &obs, &released, false, 0);
    assert!(s.failed);
    assert_eq!(phase(&s, "orchestrator"), ServicePhase::Failed);
    let row = s
        .progress
        .iter()
        .find(|r| r.service == "orchestrator")
        .expect("row");
    assert_eq!(row.message, "crash loop (last exit code 3)");
    // Halted: the healthy registry and the failed orchestrator stay; the
    // session (whose dependency is not healthy anyway) is not handed out.
    let s = step(&plan, &hosts, &obs, &released, true, 0);
    assert_eq!(names(&s.desired["mainpc"]), vec!["registry"]);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator"]);
    // Halted with every dependency healthy: still nothing new.
    let obs = observe(&plan, &["registry", "orchestrator"], &[]);
    let s = step(&plan, &hosts, &obs, &released, true, 0);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator"]);
    assert_eq!(phase(&s, "session"), ServicePhase::Waiting);
}

#[test]
fn a_changed_spec_is_recreated_in_place_and_is_not_healthy_until_then() {
    let (mut plan, hosts) = system();
    let obs = observe(&plan, &["registry"], &[]);
    plan[0].spec.env.insert("LOG_LEVEL".into(), "debug".into());
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert_eq!(phase(&s, "registry"), ServicePhase::Starting);
    assert_eq!(names(&s.desired["mainpc"]), vec!["registry"]);
    assert_eq!(
        s.desired["mainpc"][0], plan[0].spec,
        "the new spec is handed out"
    );
    assert!(s.desired["pc2"].is_empty(), "old health does not count");
}

#[test]
fn same_set_ignores_order_but_not_content() {
    let a = vec![spec("a", "g"), spec("b", "g")];
    let b = vec![spec("b", "g"), spec("a", "g")];
    assert!(same_set(&a, &b));
    let mut c = b.clone();
    c[0].image = "other".into();
    assert!(!same_set(&a, &c));
}

proptest! {
    /// Whatever the agents report, a service is in a desired set only on
    /// its own host, and only if it was released before, already runs
    /// there, or (not halted) all its dependencies are healthy; and what
    /// was released before stays.
    #[test]
    fn hands_out_only_what_is_allowed(
        health in proptest::collection::vec(0u8..4, 5),
        released_mask in proptest::collection::vec(any::<bool>(), 5),
        halted in any::<bool>(),
    ) {
        let (plan, hosts) = system();
        let mut obs = Observed::new();
        for (p, h) in plan.iter().zip(&health) {
            let state = match h {
                0 => None,
                1 => Some(HealthState::Starting),
                2 => Some(HealthState::Healthy),
                _ => Some(HealthState::Unhealthy),
            };
            if let (Some(state), Some(host)) = (state, &p.host) {
                obs.entry(host.clone()).or_default().push(status(p, state));
            }
        }
        // A rollout only ever releases placed services that are not blocked.
        let never = blocked(&plan);
        let released: BTreeSet<String> = plan
            .iter()
            .zip(&released_mask)
            .filter(|(p, r)| **r && p.host.is_some() && !never.contains_key(&p.service))
            .map(|(p, _)| p.service.clone())
            .collect();
        let s = step(&plan, &hosts, &obs, &released, halted, 0);
        let healthy: BTreeSet<&str> = plan
            .iter()
            .zip(&health)
            .filter(|(p, h)| **h == 2 && p.host.is_some())
            .map(|(p, _)| p.service.as_str())
            .collect();
        for (host, set) in &s.desired {
            for c in set {
                let p = plan.iter().find(|p| p.spec.name == c.name).expect("planned");
                prop_assert_eq!(p.host.as_deref(), Some(host.as_str()));
                let present = obs.get(host).is_some_and(|l| l.iter().any(|x| x.name == c.name));
                let deps_ok = p.depends_on.iter().all(|d| healthy.contains(d.as_str()));
                prop_assert!(released.contains(&p.service) || present || (!halted && deps_ok));
            }
        }
        for r in &released {
            let host = plan.iter().find(|p| &p.service == r).and_then(|p| p.host.clone());
            if let Some(host) = host {
                prop_assert!(s.desired[&host].iter().any(|c| &c.name == r));
            }
        }
    }
}

#[test]
fn a_spec_the_agent_cannot_create_fails_and_an_older_attempt_does_not_count() {
    let (plan, hosts) = system();
    let mut obs = observe(&plan, &["registry"], &[]);
    let orchestrator = &plan[1];
    let attempt = |desired_spec_hash: String, error: &str| ContainerStatus {
        name: orchestrator.spec.name.clone(),
        state: ContainerState::Error as i32,
        error: error.into(),
        // The type decides, not the text.
        failure: if error == "pending" {
            ContainerFailure::NotCreatedYet
        } else {
            ContainerFailure::ImageMissing
        } as i32,
        desired_spec_hash,
        ..Default::default()
    };
    // Still being created: not a failure, and not a reason to hand it out.
    obs.insert(
        "pc2".into(),
        vec![attempt(spec_hash(&orchestrator.spec), "pending")],
    );
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), true, 0);
    assert!(!s.failed);
    assert!(
        s.desired["pc2"].is_empty(),
        "halted, and nothing exists yet"
    );
    // An old spec that failed: not about this rollout.
    obs.insert(
        "pc2".into(),
        vec![attempt("0123".into(), "image x is not on this host")],
    );
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), true, 0);
    assert!(!s.failed);
    // This spec failed to be created: the rollout fails, naming why.
    obs.insert(
        "pc2".into(),
        vec![attempt(
            spec_hash(&orchestrator.spec),
            "image x is not on this host",
        )],
    );
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert!(s.failed);
    assert_eq!(phase(&s, "orchestrator"), ServicePhase::Failed);
    assert_eq!(names(&s.desired["pc2"]), vec!["orchestrator"]);
}

#[test]
fn a_held_container_is_neither_healthy_nor_a_failure() {
    let (plan, hosts) = system();
    let mut obs = observe(&plan, &[], &[]);
    let mut stopped = status(&plan[0], HealthState::Unhealthy);
    stopped.state = ContainerState::Stopped as i32;
    stopped.hold = Hold::Stopped as i32;
    obs.entry("mainpc".into()).or_default().push(stopped);
    let s = step(&plan, &hosts, &obs, &BTreeSet::new(), false, 0);
    assert!(!s.failed, "the operator stopped it");
    assert_eq!(phase(&s, "registry"), ServicePhase::Starting);
    let row = s
        .progress
        .iter()
        .find(|r| r.service == "registry")
        .expect("row");
    assert_eq!(
        row.message,
        "held (stopped) by an operator; `meshctl start mainpc registry` lifts it"
    );
    assert_eq!(
        phase(&s, "orchestrator"),
        ServicePhase::Waiting,
        "not healthy"
    );
    assert_eq!(
        names(&s.desired["mainpc"]),
        vec!["registry"],
        "still desired"
    );
}

mod controller;
