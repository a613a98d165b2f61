//! Operator holds as desired state: which hold a lifecycle command puts on
//! a container or lifts, and the container sets that carry them. Pure.
//!
//! `meshctl stop/pause/kill` hold a container; `start/resume/restart` lift
//! the hold. A hold is recorded, set on the container's spec in its node's
//! desired set, and only then is the command forwarded for an immediate
//! result, so a restarted agent or coordinator keeps the container held.

use std::collections::BTreeMap;

use mesh_proto::v1::{CommandAction, ContainerSpec, Hold};

/// Holds of one node: container -> hold (never NONE).
pub type NodeHolds = BTreeMap<String, Hold>;

/// What `action` does to a hold: Some(hold) to set (Hold::None lifts it),
/// None to leave it as it is (logs).
pub fn hold_for(action: CommandAction) -> Option<Hold> {
    match action {
        CommandAction::Stop => Some(Hold::Stopped),
        CommandAction::Pause => Some(Hold::Paused),
        CommandAction::Kill => Some(Hold::Killed),
        CommandAction::Start | CommandAction::Resume | CommandAction::Restart => Some(Hold::None),
        CommandAction::Logs | CommandAction::Unspecified => None,
    }
}

/// `holds` with `container` set to `hold` (removed for Hold::None).
pub fn record(mut holds: NodeHolds, container: &str, hold: Hold) -> NodeHolds {
    if hold == Hold::None {
        holds.remove(container);
    } else {
        holds.insert(container.to_string(), hold);
    }
    holds
}

/// `containers` as the agent should get them: each with its hold, and
/// no hold on those without one.
pub fn with_holds(mut containers: Vec<ContainerSpec>, holds: &NodeHolds) -> Vec<ContainerSpec> {
    for c in &mut containers {
        c.hold = holds.get(&c.name).copied().unwrap_or(Hold::None) as i32;
    }
    containers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img".into(),
            ..Default::default()
        }
    }

    #[test]
    fn stop_pause_kill_hold_and_start_resume_restart_lift() {
        for (action, want) in [
            (CommandAction::Stop, Some(Hold::Stopped)),
            (CommandAction::Pause, Some(Hold::Paused)),
            (CommandAction::Kill, Some(Hold::Killed)),
            (CommandAction::Start, Some(Hold::None)),
            (CommandAction::Resume, Some(Hold::None)),
            (CommandAction::Restart, Some(Hold::None)),
            (CommandAction::Logs, None),
            (CommandAction::Unspecified, None),
        ] {
            assert_eq!(hold_for(action), want, "{action:?}");
        }
    }

    #[test]
    fn sets_carry_exactly_the_recorded_holds() {
        let holds = record(NodeHolds::new(), "mem", Hold::Stopped);
        let holds = record(holds, "llm", Hold::Paused);
        let holds = record(holds, "llm", Hold::None);
        assert_eq!(holds.len(), 1);
        let mut stale = spec("llm");
        stale.hold = Hold::Killed as i32;
        let out = with_holds(vec![spec("mem"), stale, spec("web")], &holds);
        let got: Vec<(&str, Hold)> = out.iter().map(|c| (c.name.as_str(), c.hold())).collect();
        assert_eq!(
            got,
            vec![
                ("mem", Hold::Stopped),
                ("llm", Hold::None),
                ("web", Hold::None)
            ]
        );
    }

    #[test]
    fn a_hold_does_not_change_the_spec_hash() {
        let plain = spec("mem");
        let held = with_holds(
            vec![plain.clone()],
            &record(NodeHolds::new(), "mem", Hold::Stopped),
        );
        assert_eq!(
            mesh_proto::spec::spec_hash(&plain),
            mesh_proto::spec::spec_hash(&held[0]),
            "holding a container never recreates it"
        );
    }
}
