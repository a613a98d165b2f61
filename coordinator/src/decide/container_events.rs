//! Container lifecycle and health changes as events: a pure diff of what
//! the agents reported last time and now (state, health, restarts, crash
//! loop), so a change seen in any heartbeat becomes one event.

use std::collections::BTreeMap;

use mesh_proto::v1::{ContainerState, HealthState};

use super::rollout::Observed;

/// What is compared of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub state: ContainerState,
    pub health: HealthState,
    pub restarts: u32,
    pub crash_looping: bool,
    pub exit_code: Option<i64>,
}

/// (node, container) -> what was seen, and its group.
pub type Snapshot = BTreeMap<(String, String), (Seen, String)>;

pub fn snapshot(observed: &Observed) -> Snapshot {
    let mut out = Snapshot::new();
    for (node, list) in observed {
        for c in list {
            out.insert(
                (node.clone(), c.name.clone()),
                (
                    Seen {
                        state: c.state(),
                        health: c.health(),
                        restarts: c.restart_count,
                        crash_looping: c.crash_looping,
                        exit_code: c.last_exit_code,
                    },
                    c.group.clone(),
                ),
            );
        }
    }
    out
}

/// One event per change from `prev` to `next`: (node, group, message).
/// Containers of a node absent from `next` (not reporting) say nothing.
pub fn changes(prev: &Snapshot, next: &Snapshot) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for ((node, name), (now, group)) in next {
        let say = |m: String| (node.clone(), group.clone(), format!("{node}/{name}: {m}"));
        let Some((before, _)) = prev.get(&(node.clone(), name.clone())) else {
            out.push(say(format!("appeared, {}", now.state.label())));
            continue;
        };
        if now.restarts > before.restarts {
            out.push(say(format!(
                "restarted by its agent ({} in all{})",
                now.restarts,
                now.exit_code
                    .map(|c| format!(", last exit code {c}"))
                    .unwrap_or_default()
            )));
        } else if now.state != before.state {
            let exit = match (now.state, now.exit_code) {
                (ContainerState::Stopped | ContainerState::Error, Some(c)) => {
                    format!(" (exit code {c})")
                }
                _ => String::new(),
            };
            out.push(say(format!(
                "{} -> {}{exit}",
                before.state.label(),
                now.state.label()
            )));
        }
        if now.health != before.health
            && matches!(now.health, HealthState::Healthy | HealthState::Unhealthy)
        {
            let word = if now.health == HealthState::Healthy {
                "healthy"
            } else {
                "unhealthy"
            };
            out.push(say(word.to_string()));
        }
        if now.crash_looping && !before.crash_looping {
            out.push(say("crash loop: restarts back off".into()));
        }
    }
    let reporting: std::collections::BTreeSet<&String> = next.keys().map(|(n, _)| n).collect();
    for ((node, name), (_, group)) in prev {
        if reporting.contains(node) && !next.contains_key(&(node.clone(), name.clone())) {
            out.push((
                node.clone(),
                group.clone(),
                format!("{node}/{name}: removed"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::ContainerStatus;

    fn observed(list: &[(&str, ContainerState, HealthState, u32)]) -> Observed {
        let mut o = Observed::new();
        for (name, state, health, restarts) in list {
            o.entry("pc2".to_string())
                .or_default()
                .push(ContainerStatus {
                    name: name.to_string(),
                    group: "memory".into(),
                    state: *state as i32,
                    health: *health as i32,
                    restart_count: *restarts,
                    last_exit_code: Some(137),
                    ..Default::default()
                });
        }
        o
    }

    #[test]
    fn lifecycle_health_and_restarts_become_one_event_each() {
        use ContainerState::{Running, Starting};
        use HealthState::{Healthy, None};
        let a = snapshot(&observed(&[
            ("db", Starting, HealthState::Starting, 0),
            ("old", Running, None, 0),
        ]));
        let b = snapshot(&observed(&[("db", Running, Healthy, 0)]));
        let c = snapshot(&observed(&[("db", Running, Healthy, 1)]));
        let first = changes(&Snapshot::new(), &a);
        assert_eq!(first.len(), 2, "{first:?}");
        let msgs: Vec<String> = changes(&a, &b).into_iter().map(|(_, _, m)| m).collect();
        assert_eq!(
            msgs,
            [
                "pc2/db: starting -> running",
                "pc2/db: healthy",
                "pc2/old: removed"
            ]
        );
        let msgs: Vec<String> = changes(&b, &c).into_iter().map(|(_, _, m)| m).collect();
        assert_eq!(
            msgs,
            ["pc2/db: restarted by its agent (1 in all, last exit code 137)"]
        );
        assert!(changes(&c, &c).is_empty(), "no change, no event");
        // A node that does not report now says nothing about its containers.
        assert!(changes(&c, &Snapshot::new()).is_empty());
    }
}
