//! Reconcile: what to do so that the containers on this host match the
//! desired set. Pure and idempotent: the same inputs give the same plan,
//! and a host that already matches gets an empty plan (zero runtime writes).
//! Only containers carrying this mesh's ownership labels are considered.
//!
//! The set-level view, for tools and tests of a whole host; the manager
//! itself steps each container's lifecycle machine (`super::machine`).

use std::collections::{BTreeMap, BTreeSet};

use mesh_proto::v1::ContainerSpec;

use super::lifecycle::State;
use super::spec::spec_hash;

/// A container as the runtime reports it, with its ownership labels read.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The spec name from the `mesh.name` label.
    pub name: String,
    pub mesh: String,
    pub spec_hash: String,
    pub generation: u64,
    pub state: State,
    pub exit_code: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Not there: create and start it.
    Create(ContainerSpec),
    /// There with another spec: remove it, then create the new one.
    Recreate(ContainerSpec),
    /// Owned but no longer desired.
    Remove(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Desired and matching but not running: the restart policy decides.
    pub exited: Vec<(String, i64)>,
    /// Created but never started (an agent crash between create and start).
    pub to_start: Vec<String>,
}

impl Plan {
    /// True when nothing needs writing to the runtime right now.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.to_start.is_empty()
    }
}

pub fn plan(mesh: &str, desired: &[ContainerSpec], observed: &[Observed]) -> Plan {
    let ours: BTreeMap<&str, &Observed> = observed
        .iter()
        .filter(|o| o.mesh == mesh && o.state != State::Deleted)
        .map(|o| (o.name.as_str(), o))
        .collect();
    let wanted: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
    let mut plan = Plan::default();
    let mut sorted: Vec<&ContainerSpec> = desired.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for spec in sorted {
        match ours.get(spec.name.as_str()) {
            None => plan.actions.push(Action::Create(spec.clone())),
            Some(o) if o.spec_hash != spec_hash(spec) => {
                plan.actions.push(Action::Recreate(spec.clone()))
            }
            Some(o) => match o.state {
                State::Created => plan.to_start.push(spec.name.clone()),
                State::Stopped | State::Error => plan.exited.push((spec.name.clone(), o.exit_code)),
                // Running, Starting, Paused (an operator's pause), Stopping: leave alone.
                _ => {}
            },
        }
    }
    for name in ours.keys() {
        if !wanted.contains(name) {
            plan.actions.push(Action::Remove(name.to_string()));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    fn running(s: &ContainerSpec) -> Observed {
        Observed {
            name: s.name.clone(),
            mesh: "home".into(),
            spec_hash: spec_hash(s),
            generation: 1,
            state: State::Running,
            exit_code: 0,
        }
    }

    #[test]
    fn creates_recreates_removes_and_leaves_alone() {
        let a = spec("a", "img:1");
        let b = spec("b", "img:1");
        let c_new = spec("c", "img:2");
        let c_old = spec("c", "img:1");
        let observed = vec![
            running(&a),
            running(&c_old),
            running(&spec("gone", "img:1")),
        ];
        let p = plan("home", &[a, b.clone(), c_new.clone()], &observed);
        assert_eq!(
            p.actions,
            vec![
                Action::Create(b),
                Action::Recreate(c_new),
                Action::Remove("gone".into())
            ]
        );
    }

    #[test]
    fn never_touches_other_meshes_containers() {
        let mut foreign = running(&spec("x", "img"));
        foreign.mesh = "other".into();
        assert!(plan("home", &[], &[foreign]).is_noop());
    }

    #[test]
    fn fifty_unchanged_containers_need_no_writes() {
        let specs: Vec<ContainerSpec> = (0..50).map(|i| spec(&format!("s{i}"), "img")).collect();
        let observed: Vec<Observed> = specs.iter().map(running).collect();
        let p = plan("home", &specs, &observed);
        assert!(p.is_noop() && p.exited.is_empty(), "{p:?}");
    }

    #[test]
    fn exited_and_created_are_reported_for_the_restart_policy() {
        let a = spec("a", "img");
        let b = spec("b", "img");
        let mut oa = running(&a);
        oa.state = State::Error;
        oa.exit_code = 137;
        let mut ob = running(&b);
        ob.state = State::Created;
        let p = plan("home", &[a, b], &[oa, ob]);
        assert_eq!(p.exited, vec![("a".to_string(), 137)]);
        assert_eq!(p.to_start, vec!["b".to_string()]);
        assert!(p.actions.is_empty());
    }

    /// Applying a plan as the runtime would gives a host whose next plan is empty.
    fn apply(mesh: &str, observed: &mut Vec<Observed>, p: &Plan) {
        for action in &p.actions {
            match action {
                Action::Create(s) | Action::Recreate(s) => {
                    observed.retain(|o| !(o.mesh == mesh && o.name == s.name));
                    let mut o = running(s);
                    o.mesh = mesh.into();
                    observed.push(o);
                }
                Action::Remove(n) => observed.retain(|o| !(o.mesh == mesh && &o.name == n)),
            }
        }
        for name in &p.to_start {
            for o in observed
                .iter_mut()
                .filter(|o| o.mesh == mesh && &o.name == name)
            {
                o.state = State::Running;
            }
        }
    }

    proptest! {
        #[test]
        fn plans_converge_and_are_deterministic(
            want in proptest::collection::btree_map("[a-e]", 0u8..3, 0..5),
            have in proptest::collection::btree_map("[a-g]", (0u8..3, 0u8..3, any::<bool>()), 0..7),
        ) {
            let desired: Vec<ContainerSpec> =
                want.iter().map(|(n, v)| spec(n, &format!("img:{v}"))).collect();
            let states = [State::Running, State::Created, State::Paused];
            let mut observed: Vec<Observed> = have.iter().map(|(n, (v, st, foreign))| {
                let mut o = running(&spec(n, &format!("img:{v}")));
                o.state = states[*st as usize];
                if *foreign { o.mesh = "other".into(); }
                o
            }).collect();
            let foreign_before: Vec<Observed> =
                observed.iter().filter(|o| o.mesh != "home").cloned().collect();
            let first = plan("home", &desired, &observed);
            prop_assert_eq!(&first, &plan("home", &desired, &observed));
            apply("home", &mut observed, &first);
            prop_assert!(plan("home", &desired, &observed).is_noop());
            let foreign_after: Vec<Observed> =
                observed.iter().filter(|o| o.mesh != "home").cloned().collect();
            prop_assert_eq!(foreign_before, foreign_after);
        }
    }
}
