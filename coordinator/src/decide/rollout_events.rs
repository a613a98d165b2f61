//! Which rollout and placement changes become entries of the event
//! history, and their words: each service's step (waiting, starting,
//! healthy, failed, blocked), the rollout's end, and each group a new
//! topology starts, moves, stops or updates. A service that was already
//! healthy when the rollout began (a coordinator restart, a re-apply) is
//! not news.

use std::collections::BTreeSet;

use mesh_proto::v1::{rollout_event, ChangeKind, PlacementChange, RolloutEvent, ServicePhase};

/// One entry: kind, node, group, message.
pub type Entry = (&'static str, String, String, String);

/// The history entry of a rollout event, if it is one.
pub fn rollout_entry(event: &RolloutEvent, unchanged: &BTreeSet<String>) -> Option<Entry> {
    match event.body.as_ref()? {
        rollout_event::Body::Progress(p) => {
            let phase = ServicePhase::try_from(p.phase).unwrap_or(ServicePhase::Unspecified);
            if phase == ServicePhase::Healthy && unchanged.contains(&p.service) {
                return None;
            }
            let at = if p.host.is_empty() {
                p.service.clone()
            } else {
                format!("{}/{}", p.host, p.service)
            };
            let mut message = format!("rollout: {at} {}", phase.label());
            if !p.waiting_on.is_empty() {
                message.push_str(&format!(" (on {})", p.waiting_on.join(", ")));
            }
            if !p.message.is_empty() {
                message.push_str(&format!(": {}", p.message));
            }
            if phase == ServicePhase::Healthy {
                message.push_str(&format!(
                    " {:.1} s into the rollout",
                    p.elapsed_ms as f64 / 1000.0
                ));
            }
            Some(("rollout", p.host.clone(), p.group.clone(), message))
        }
        rollout_event::Body::Summary(s) => {
            let how = if s.ok {
                "rollout complete".to_string()
            } else {
                format!("rollout {}", s.message)
            };
            Some((
                "rollout",
                String::new(),
                String::new(),
                format!(
                    "{how} after {:.1} s: {} started, {} unchanged, {} failed, {} not started, {} unplaced",
                    s.elapsed_ms as f64 / 1000.0,
                    s.started.len(),
                    s.unchanged.len(),
                    s.failed.len(),
                    s.not_started.len(),
                    s.unplaced.len()
                ),
            ))
        }
        rollout_event::Body::Plan(_) => None,
    }
}

/// The history entry of a placement change a new topology makes; none
/// for a group it keeps where it is unchanged.
pub fn placement_entry(c: &PlacementChange) -> Option<Entry> {
    let kind = ChangeKind::try_from(c.kind).unwrap_or(ChangeKind::Unspecified);
    let (node, message) = match kind {
        ChangeKind::Start => (
            c.to_host.clone(),
            format!("{} placed on {}", c.group, c.to_host),
        ),
        ChangeKind::Move => (
            c.to_host.clone(),
            format!(
                "{} moves {} -> {}: {}",
                c.group, c.from_host, c.to_host, c.reason
            ),
        ),
        ChangeKind::Stop => (
            c.from_host.clone(),
            format!("{} stops on {}: {}", c.group, c.from_host, c.reason),
        ),
        ChangeKind::Update => (
            c.to_host.clone(),
            format!(
                "{} updated in place on {}: {}",
                c.group, c.to_host, c.reason
            ),
        ),
        ChangeKind::Keep | ChangeKind::Unspecified => return None,
    };
    Some(("placement", node, c.group.clone(), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{RolloutSummary, ServiceProgress};

    fn progress(service: &str, phase: ServicePhase) -> RolloutEvent {
        RolloutEvent {
            body: Some(rollout_event::Body::Progress(ServiceProgress {
                service: service.into(),
                group: "memory".into(),
                host: "pc2".into(),
                phase: phase as i32,
                elapsed_ms: 2100,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn steps_become_entries_but_an_already_healthy_service_does_not() {
        let unchanged: BTreeSet<String> = ["memory-redis".to_string()].into();
        let e = rollout_entry(&progress("memory-db", ServicePhase::Healthy), &unchanged)
            .expect("entry");
        assert_eq!(
            e,
            (
                "rollout",
                "pc2".to_string(),
                "memory".to_string(),
                "rollout: pc2/memory-db healthy 2.1 s into the rollout".to_string()
            )
        );
        assert!(
            rollout_entry(&progress("memory-redis", ServicePhase::Healthy), &unchanged).is_none()
        );
        // Its other steps are news.
        assert!(
            rollout_entry(&progress("memory-redis", ServicePhase::Failed), &unchanged).is_some()
        );
        let summary = RolloutEvent {
            body: Some(rollout_event::Body::Summary(RolloutSummary {
                ok: true,
                elapsed_ms: 21_300,
                started: vec!["a".into(), "b".into()],
                ..Default::default()
            })),
        };
        let (_, _, _, m) = rollout_entry(&summary, &unchanged).expect("summary");
        assert_eq!(
            m,
            "rollout complete after 21.3 s: 2 started, 0 unchanged, 0 failed, 0 not started, 0 unplaced"
        );
    }

    #[test]
    fn placement_changes_but_not_keeps_become_entries() {
        let mut c = PlacementChange {
            kind: ChangeKind::Move as i32,
            group: "memory".into(),
            from_host: "pc2".into(),
            to_host: "mainpc".into(),
            reason: "pc2 is down".into(),
            services: vec![],
        };
        let e = placement_entry(&c).expect("move");
        assert_eq!(e.3, "memory moves pc2 -> mainpc: pc2 is down");
        assert_eq!(e.1, "mainpc");
        c.kind = ChangeKind::Keep as i32;
        assert!(placement_entry(&c).is_none());
    }
}
