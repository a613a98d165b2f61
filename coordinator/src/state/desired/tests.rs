use super::*;

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "img".into(),
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> DesiredStore {
    let store = Arc::new(Store::open(dir).expect("open"));
    DesiredStore::new(Numbering::new(Some(store.clone())), Some(store)).expect("load")
}

fn hold_of(d: &DesiredContainers, name: &str) -> Hold {
    d.containers
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.hold())
        .expect("in the set")
}

#[test]
fn generations_only_grow() {
    let store = DesiredStore::default();
    let a = store.set("pc2", vec![], 1000).expect("set");
    let b = store.set("pc2", vec![], 1000).expect("set");
    assert!(b.generation > a.generation);
    assert_eq!(store.get("pc2").expect("set").generation, b.generation);
    assert!(store.get("mainpc").is_none());
}

#[test]
fn a_reopened_store_numbers_the_next_set_above_the_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = open(dir.path()).set("pc2", vec![], 2000).expect("set");
    // Restarted, with the wall clock stepped back.
    let after = open(dir.path()).set("pc2", vec![], 1000).expect("set");
    assert!(after.generation > before.generation);
}

#[test]
fn a_hold_makes_a_new_generation_and_lifting_it_another() {
    let store = DesiredStore::default();
    let first = store
        .set("pc2", vec![spec("mem"), spec("web")], 1000)
        .expect("set");
    let held = store
        .hold("pc2", "mem", Hold::Stopped, 1000)
        .expect("hold")
        .expect("mem is in the set");
    assert!(held.generation > first.generation);
    assert_eq!(hold_of(&held, "mem"), Hold::Stopped);
    assert_eq!(hold_of(&held, "web"), Hold::None);
    assert_eq!(store.get("pc2"), Some(held.clone()));
    assert_eq!(
        store.hold("pc2", "mem", Hold::Stopped, 1000).expect("hold"),
        None,
        "held already: nothing new to send"
    );
    let lifted = store
        .hold("pc2", "mem", Hold::None, 1000)
        .expect("lift")
        .expect("changed");
    assert!(lifted.generation > held.generation);
    assert_eq!(hold_of(&lifted, "mem"), Hold::None);
    assert!(store.holds_of("pc2").is_empty());
}

#[test]
fn a_hold_on_a_container_not_in_the_set_yet_is_carried_by_the_next_set() {
    let store = DesiredStore::default();
    assert_eq!(
        store.hold("pc2", "mem", Hold::Paused, 1).expect("hold"),
        None
    );
    let set = store.set("pc2", vec![spec("mem")], 2).expect("set");
    assert_eq!(hold_of(&set, "mem"), Hold::Paused);
}

#[test]
fn holds_survive_a_restart_and_every_set_built_after_it_carries_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store.set("pc2", vec![spec("mem")], 1).expect("set");
        store.hold("pc2", "mem", Hold::Killed, 1).expect("hold");
        store.hold("mainpc", "web", Hold::Stopped, 1).expect("hold");
        store.hold("mainpc", "web", Hold::None, 1).expect("lift");
    }
    let store = open(dir.path());
    assert!(
        store.get("pc2").is_none(),
        "sets are re-derived, not stored"
    );
    // E.g. the topology rollout re-deriving pc2's set after the restart.
    let set = store
        .set("pc2", vec![spec("mem"), spec("web")], 2)
        .expect("set");
    assert_eq!(hold_of(&set, "mem"), Hold::Killed);
    assert_eq!(hold_of(&set, "web"), Hold::None);
    let mainpc = store.set("mainpc", vec![spec("web")], 2).expect("set");
    assert_eq!(
        hold_of(&mainpc, "web"),
        Hold::None,
        "lifted before the restart"
    );
}
