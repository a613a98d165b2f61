use super::*;

fn def(replicate: bool) -> VolumeDef {
    VolumeDef {
        group: "memory".into(),
        name: "db".into(),
        size_bytes: 64 * MIB,
        replicate,
        import: String::new(),
        fallbacks: vec!["pc2".into(), "pc3".into()],
        lease: std::time::Duration::from_secs(2),
        ..Default::default()
    }
}

fn placed(host: &str) -> BTreeMap<String, String> {
    [("memory".to_string(), host.to_string())].into()
}

fn ready(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

fn records(list: &[VolumeRecord]) -> BTreeMap<RecordKey, VolumeRecord> {
    list.iter().map(|r| (r.key(), r.clone())).collect()
}

fn roles(p: &VolumePlan, node: &str) -> Vec<(VolumeRole, String, bool)> {
    p.assignments
        .get(node)
        .map(|l| {
            l.iter()
                .map(|a| (a.role(), a.peer.clone(), a.standby_outdated))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_new_replicated_volume_goes_to_the_groups_host_and_its_first_ready_fallback() {
    let p = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2", "pc3"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(p.records.len(), 1);
    let r = &p.records[0];
    assert_eq!(
        (r.primary.as_str(), r.standby.as_str(), r.epoch),
        ("mainpc", "pc2", 1)
    );
    assert!(!r.standby_outdated, "both images of a new volume are empty");
    assert_eq!(
        roles(&p, "mainpc"),
        vec![(VolumeRole::Primary, "pc2".into(), false)]
    );
    assert_eq!(
        roles(&p, "pc2"),
        vec![(VolumeRole::Standby, "mainpc".into(), false)]
    );
    assert!(roles(&p, "pc3").is_empty());
}

#[test]
fn the_first_fallback_down_at_creation_makes_the_next_one_standby() {
    let p = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc3"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(p.records[0].standby, "pc3");
}

#[test]
fn a_recorded_standby_that_goes_down_stays_the_standby() {
    let first = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    let recs = records(&first.records);
    let later = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc3"]),
        &recs,
        &BTreeSet::new(),
    );
    assert!(later.records.is_empty(), "{:?}", later.records);
    assert_eq!(
        roles(&later, "pc2"),
        vec![(VolumeRole::Standby, "mainpc".into(), false)]
    );
}

#[test]
fn the_primary_stays_where_the_volume_was_made_when_the_group_is_placed_elsewhere() {
    let first = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    let recs = records(&first.records);
    let later = plan(
        &[def(true)],
        &placed("pc3"),
        &ready(&["mainpc", "pc2", "pc3"]),
        &recs,
        &BTreeSet::new(),
    );
    assert_eq!(
        roles(&later, "mainpc"),
        vec![(VolumeRole::Primary, "pc2".into(), false)]
    );
    assert!(roles(&later, "pc3").is_empty());
}

#[test]
fn a_standby_found_later_for_an_existing_volume_starts_outdated() {
    let first = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(first.records[0].standby, "");
    assert_eq!(
        roles(&first, "mainpc"),
        vec![(VolumeRole::Primary, String::new(), false)]
    );
    let recs = records(&first.records);
    let later = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &recs,
        &BTreeSet::new(),
    );
    assert_eq!(later.records[0].standby, "pc2");
    assert!(later.records[0].standby_outdated);
    assert_eq!(
        roles(&later, "pc2"),
        vec![(VolumeRole::Standby, "mainpc".into(), true)]
    );
}

#[test]
fn a_local_volume_has_no_standby_and_an_unplaced_group_none_at_all() {
    let p = plan(
        &[def(false)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(
        roles(&p, "mainpc"),
        vec![(VolumeRole::Primary, String::new(), false)]
    );
    assert!(roles(&p, "pc2").is_empty());
    let none = plan(
        &[def(true)],
        &BTreeMap::new(),
        &ready(&["mainpc"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(none, VolumePlan::default());
}

fn record() -> VolumeRecord {
    VolumeRecord {
        group: "memory".into(),
        name: "db".into(),
        size_bytes: 64 * MIB,
        replicate: true,
        primary: "mainpc".into(),
        standby: "pc2".into(),
        epoch: 3,
        standby_outdated: false,
        attached: true,
        home: "mainpc".into(),
        ..Default::default()
    }
}

fn event(kind: VolumeEventKind, epoch: u64) -> VolumeEventRequest {
    VolumeEventRequest {
        group: "memory".into(),
        volume: "db".into(),
        epoch,
        request: 1,
        kind: kind as i32,
    }
}

#[test]
fn only_the_primary_at_the_current_epoch_outdates_its_standby() {
    let r = record();
    let (a, next) = on_event(
        Some(&r),
        "mainpc",
        &event(VolumeEventKind::OutdateStandby, 3),
    );
    assert_eq!(a, VolumeEventAnswer::Recorded);
    assert!(next.unwrap().standby_outdated);
    let (a, next) = on_event(Some(&r), "pc2", &event(VolumeEventKind::OutdateStandby, 3));
    assert_eq!((a, next), (VolumeEventAnswer::NotPrimary, None));
    let (a, next) = on_event(
        Some(&r),
        "mainpc",
        &event(VolumeEventKind::OutdateStandby, 2),
    );
    assert_eq!((a, next), (VolumeEventAnswer::NewerEpoch, None));
    let (a, next) = on_event(None, "mainpc", &event(VolumeEventKind::OutdateStandby, 3));
    assert_eq!((a, next), (VolumeEventAnswer::NotPrimary, None));
}

#[test]
fn up_to_date_clears_the_flag_and_repeats_change_nothing() {
    let mut r = record();
    r.standby_outdated = true;
    let (a, next) = on_event(
        Some(&r),
        "mainpc",
        &event(VolumeEventKind::StandbyUpToDate, 3),
    );
    assert_eq!(a, VolumeEventAnswer::Recorded);
    assert!(!next.unwrap().standby_outdated);
    let (a, next) = on_event(
        Some(&r),
        "mainpc",
        &event(VolumeEventKind::OutdateStandby, 3),
    );
    assert_eq!((a, next), (VolumeEventAnswer::Recorded, None));
}

fn node(name: &str, free_mib: u64) -> mesh_proto::v1::Node {
    mesh_proto::v1::Node {
        name: name.into(),
        state: mesh_proto::v1::NodeState::Ready as i32,
        inventory: Some(mesh_proto::v1::HostInventory {
            disk: Some(mesh_proto::v1::DiskSpace {
                path: "/var/lib/mesh".into(),
                total_bytes: 1 << 40,
                available_bytes: free_mib * MIB,
                error: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_new_volume_larger_than_the_free_disk_of_its_primary_or_standby_is_refused() {
    let nodes = vec![node("mainpc", 1000), node("pc2", 10), node("pc3", 1000)];
    let problems = disk_problems(&[def(true)], &placed("mainpc"), &nodes, &BTreeMap::new());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "volume memory/db (64 MiB) needs 64 MiB on pc2, which has 10 MiB free at /var/lib/mesh"
        ),
        "{}",
        problems[0]
    );
    let roomy = vec![node("mainpc", 1000), node("pc2", 1000)];
    assert!(disk_problems(&[def(true)], &placed("mainpc"), &roomy, &BTreeMap::new()).is_empty());
}

#[test]
fn an_existing_volume_is_not_checked_again() {
    let first = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    let recs = records(&first.records);
    let nodes = vec![node("mainpc", 1), node("pc2", 1)];
    assert!(disk_problems(&[def(true)], &placed("mainpc"), &nodes, &recs).is_empty());
}

#[test]
fn a_volume_its_primary_reported_attached_must_exist_from_then_on() {
    let first = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert!(!first.assignments["mainpc"][0].existing);
    let recs = records(&first.records);
    let key = ("memory".to_string(), "db".to_string());
    let later = plan(
        &[def(true)],
        &placed("mainpc"),
        &ready(&["mainpc", "pc2"]),
        &recs,
        &[key].into(),
    );
    assert!(later.records[0].attached);
    assert!(later.assignments["mainpc"][0].existing);
    assert!(later.assignments["pc2"][0].existing);
}

#[test]
fn after_a_failover_the_old_primary_is_the_standby_though_not_a_fallback() {
    let mut r = record();
    r.primary = "pc3".into();
    r.standby = "mainpc".into();
    r.home = "mainpc".into();
    r.standby_outdated = true;
    let mut d = def(true);
    d.fallbacks = vec!["pc3".into()];
    let recs = records(&[r]);
    let p = plan(
        &[d],
        &placed("pc3"),
        &ready(&["pc3"]),
        &recs,
        &BTreeSet::new(),
    );
    assert!(p.records.is_empty(), "{:?}", p.records);
    assert_eq!(
        roles(&p, "mainpc"),
        vec![(VolumeRole::Standby, "pc3".into(), true)]
    );
    assert_eq!(
        roles(&p, "pc3"),
        vec![(VolumeRole::Primary, "mainpc".into(), true)]
    );
}
