//! What to do about the volumes of this host: a pure function of what is
//! held and what the coordinator assigns.
//!
//! A primary is never detached for a change of its standby: the sink is
//! pointed elsewhere ([`Step::Repoint`]) while the containers keep their
//! mount. A change of role or size takes the volume down and up again (a
//! size change is then refused by the attach, which names both sizes).

use std::collections::BTreeMap;

use mesh_proto::v1::{VolumeAssignment, VolumeRole};

use super::assignment_id;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Attach the volume here and let its containers mount it.
    Attach(VolumeAssignment),
    /// Serve the volume's image to its primary.
    Serve(VolumeAssignment),
    /// Replicate an attached primary to another standby, or none, or at
    /// another epoch.
    Repoint(VolumeAssignment),
    /// Stop serving or detach (the id is `GROUP.NAME`).
    Release(String),
    /// A switchover: once the containers are gone, detach, flush every
    /// write to the standby, and hold the volume as handed over.
    HandOver(VolumeAssignment),
}

/// The steps from `held` (id -> the assignment it was set up for) to
/// `desired`, releases first.
pub fn plan(held: &BTreeMap<String, VolumeAssignment>, desired: &[VolumeAssignment]) -> Vec<Step> {
    let wanted: BTreeMap<String, &VolumeAssignment> =
        desired.iter().map(|a| (assignment_id(a), a)).collect();
    let mut releases = Vec::new();
    let mut setups = Vec::new();
    for (id, h) in held {
        match wanted.get(id) {
            None => releases.push(Step::Release(id.clone())),
            Some(d) if d.role != h.role || d.size_bytes != h.size_bytes => {
                releases.push(Step::Release(id.clone()));
            }
            Some(_) => {}
        }
    }
    for (id, d) in &wanted {
        let setup = || match d.role() {
            VolumeRole::Primary => Some(Step::Attach((*d).clone())),
            VolumeRole::Standby => Some(Step::Serve((*d).clone())),
            VolumeRole::Unspecified => None,
        };
        match held.get(id) {
            None => setups.extend(setup()),
            Some(h) if h.role != d.role || h.size_bytes != d.size_bytes => setups.extend(setup()),
            Some(h) if d.role() == VolumeRole::Primary && d.handover != h.handover => {
                if d.handover {
                    setups.push(Step::HandOver((*d).clone()));
                } else {
                    // A switchover called off: attach again.
                    releases.push(Step::Release(id.clone()));
                    setups.push(Step::Attach((*d).clone()));
                }
            }
            Some(h) => {
                let moved = h.peer != d.peer || h.epoch != d.epoch;
                match d.role() {
                    VolumeRole::Primary if moved => setups.push(Step::Repoint((*d).clone())),
                    // A standby serves one primary at one epoch: serve anew.
                    VolumeRole::Standby if moved => {
                        releases.push(Step::Release(id.clone()));
                        setups.push(Step::Serve((*d).clone()));
                    }
                    _ => {}
                }
            }
        }
    }
    releases.extend(setups);
    releases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, role: VolumeRole, peer: &str) -> VolumeAssignment {
        VolumeAssignment {
            group: "memory".into(),
            name: name.into(),
            size_bytes: 64 << 20,
            role: role as i32,
            replicate: true,
            peer: peer.into(),
            epoch: 1,
            ..Default::default()
        }
    }

    fn held(list: &[VolumeAssignment]) -> BTreeMap<String, VolumeAssignment> {
        list.iter().map(|a| (assignment_id(a), a.clone())).collect()
    }

    #[test]
    fn new_assignments_are_set_up_by_role() {
        let steps = plan(
            &BTreeMap::new(),
            &[
                a("db", VolumeRole::Primary, "pc2"),
                a("log", VolumeRole::Standby, "mainpc"),
            ],
        );
        assert_eq!(
            steps,
            vec![
                Step::Attach(a("db", VolumeRole::Primary, "pc2")),
                Step::Serve(a("log", VolumeRole::Standby, "mainpc")),
            ]
        );
    }

    #[test]
    fn what_is_held_as_assigned_needs_nothing() {
        let list = [a("db", VolumeRole::Primary, "pc2")];
        assert!(plan(&held(&list), &list).is_empty());
        // The outdated flag is the sink's business, not a reason to act.
        let mut flagged = list[0].clone();
        flagged.standby_outdated = true;
        assert!(plan(&held(&list), &[flagged]).is_empty());
    }

    #[test]
    fn a_primary_whose_standby_changes_is_repointed_not_detached() {
        let before = [a("db", VolumeRole::Primary, "pc2")];
        let after = a("db", VolumeRole::Primary, "pc3");
        assert_eq!(
            plan(&held(&before), std::slice::from_ref(&after)),
            vec![Step::Repoint(after)]
        );
    }

    #[test]
    fn a_standby_for_another_primary_serves_anew() {
        let before = [a("db", VolumeRole::Standby, "mainpc")];
        let after = a("db", VolumeRole::Standby, "pc3");
        assert_eq!(
            plan(&held(&before), std::slice::from_ref(&after)),
            vec![Step::Release("memory.db".into()), Step::Serve(after)]
        );
    }

    #[test]
    fn a_switchover_hands_the_primary_over_and_calling_it_off_attaches_again() {
        let before = [a("db", VolumeRole::Primary, "mainpc")];
        let mut handing = a("db", VolumeRole::Primary, "mainpc");
        handing.handover = true;
        assert_eq!(
            plan(&held(&before), std::slice::from_ref(&handing)),
            vec![Step::HandOver(handing.clone())]
        );
        // Handed over: nothing more until the coordinator moves on.
        assert!(plan(
            &held(std::slice::from_ref(&handing)),
            std::slice::from_ref(&handing)
        )
        .is_empty());
        assert_eq!(
            plan(&held(std::slice::from_ref(&handing)), &before),
            vec![
                Step::Release("memory.db".into()),
                Step::Attach(before[0].clone())
            ]
        );
        // Promoted elsewhere: the handed-over volume becomes a standby.
        let mut standby = a("db", VolumeRole::Standby, "mainpc");
        standby.epoch = 2;
        assert_eq!(
            plan(
                &held(std::slice::from_ref(&handing)),
                std::slice::from_ref(&standby)
            ),
            vec![
                Step::Release("memory.db".into()),
                Step::Serve(standby.clone())
            ]
        );
    }

    #[test]
    fn unassigned_or_changed_role_is_released_first() {
        let before = [
            a("db", VolumeRole::Standby, "mainpc"),
            a("old", VolumeRole::Primary, ""),
        ];
        let after = a("db", VolumeRole::Primary, "mainpc");
        assert_eq!(
            plan(&held(&before), std::slice::from_ref(&after)),
            vec![
                Step::Release("memory.db".into()),
                Step::Release("memory.old".into()),
                Step::Attach(after),
            ]
        );
    }
}
