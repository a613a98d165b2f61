use super::*;
use mesh_proto::v1::VolumeRole;

const S: Duration = Duration::from_secs(1);

fn record(outdated: bool) -> VolumeRecord {
    VolumeRecord {
        group: "memory".into(),
        name: "db".into(),
        size_bytes: 1 << 26,
        replicate: true,
        primary: "pc2".into(),
        standby: "pc3".into(),
        epoch: 4,
        standby_outdated: outdated,
        attached: true,
        home: "pc2".into(),
        ..Default::default()
    }
}

fn report(disk: DiskState, epoch: u64) -> BTreeMap<String, Vec<VolumeStatus>> {
    [(
        "pc3".to_string(),
        vec![VolumeStatus {
            group: "memory".into(),
            name: "db".into(),
            role: VolumeRole::Standby as i32,
            disk: disk as i32,
            epoch,
            ..Default::default()
        }],
    )]
    .into()
}

fn run(
    r: VolumeRecord,
    silence: &[(&str, Duration)],
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    uptime: Duration,
) -> (Vec<Promote>, Vec<Blocked>) {
    let records = [(r.key(), r)].into();
    let silence = silence.iter().map(|(n, d)| (n.to_string(), *d)).collect();
    decide(&Inputs {
        records: &records,
        silence: &silence,
        reports,
        uptime,
        leases: &BTreeMap::new(),
        missing_images: &BTreeMap::new(),
    })
}

#[test]
fn a_primary_silent_for_the_lease_is_replaced_by_its_up_to_date_standby() {
    let (p, b) = run(
        record(false),
        &[("pc2", 2 * S), ("pc3", Duration::ZERO)],
        &report(DiskState::UpToDate, 4),
        60 * S,
    );
    assert!(b.is_empty(), "{b:?}");
    assert_eq!(
        p,
        vec![Promote {
            group: "memory".into(),
            from: "pc2".into(),
            to: "pc3".into(),
            epoch: 5
        }]
    );
}

#[test]
fn not_before_the_lease_has_passed() {
    let (p, b) = run(
        record(false),
        &[
            ("pc2", 1900 * Duration::from_millis(1)),
            ("pc3", Duration::ZERO),
        ],
        &report(DiskState::UpToDate, 4),
        60 * S,
    );
    assert!(p.is_empty() && b.is_empty());
}

#[test]
fn a_restarted_coordinator_waits_one_full_lease() {
    // Never heard since the start 1 s ago: silent, but maybe still leased.
    let (p, b) = run(
        record(false),
        &[("pc3", Duration::ZERO)],
        &report(DiskState::UpToDate, 4),
        S,
    );
    assert!(p.is_empty());
    assert!(b[0].reason.contains("waits one full lease"), "{b:?}");
    let (p, _) = run(
        record(false),
        &[("pc3", Duration::ZERO)],
        &report(DiskState::UpToDate, 4),
        3 * S,
    );
    assert_eq!(p.len(), 1);
}

#[test]
fn no_promotion_to_an_outdated_inconsistent_stale_or_silent_standby() {
    let gone = [("pc2", 5 * S), ("pc3", Duration::ZERO)];
    let cases = [
        (
            run(record(true), &gone, &report(DiskState::UpToDate, 4), 60 * S),
            "Outdated",
        ),
        (
            run(
                record(false),
                &gone,
                &report(DiskState::Inconsistent, 4),
                60 * S,
            ),
            "Inconsistent",
        ),
        (
            run(
                record(false),
                &gone,
                &report(DiskState::UpToDate, 3),
                60 * S,
            ),
            "epoch 3",
        ),
        (
            run(record(false), &gone, &BTreeMap::new(), 60 * S),
            "does not report",
        ),
        (
            run(
                record(false),
                &[("pc2", 5 * S), ("pc3", 5 * S)],
                &report(DiskState::UpToDate, 4),
                60 * S,
            ),
            "not heartbeating",
        ),
    ];
    for ((p, b), want) in cases {
        assert!(p.is_empty(), "{want}: {p:?}");
        assert!(b[0].reason.contains(want), "{want}: {b:?}");
    }
}

#[test]
fn the_promoted_records_swap_the_roles_at_the_new_epoch() {
    let r = record(false);
    let records = [(r.key(), r)].into();
    let p = Promote {
        group: "memory".into(),
        from: "pc2".into(),
        to: "pc3".into(),
        epoch: 5,
    };
    let out = promoted(&records, &p);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].primary.as_str(),
            out[0].standby.as_str(),
            out[0].epoch
        ),
        ("pc3", "pc2", 5)
    );
    assert!(out[0].standby_outdated);
    assert_eq!(out[0].home, "pc2");
}

#[test]
fn a_standby_that_still_hears_its_primary_is_not_promoted() {
    let gone = [("pc2", 5 * S), ("pc3", Duration::ZERO)];
    let mut reports = report(DiskState::UpToDate, 4);
    reports.get_mut("pc3").unwrap()[0].primary_ack_age_ms = Some(300);
    let (p, b) = run(record(false), &gone, &reports, 60 * S);
    assert!(p.is_empty(), "{p:?}");
    assert!(b[0].reason.contains("still replicates"), "{b:?}");
    assert!(
        b[0].reason.contains("only cut off from the coordinator"),
        "{b:?}"
    );
    // Past lease - margin (1.5 s of a 2 s lease) it may be promoted.
    reports.get_mut("pc3").unwrap()[0].primary_ack_age_ms = Some(1600);
    let (p, _) = run(record(false), &gone, &reports, 60 * S);
    assert_eq!(p.len(), 1);
}

#[test]
fn what_if_names_the_promotion_or_why_not_and_the_unprotected() {
    let r = record(false);
    let records: BTreeMap<RecordKey, VolumeRecord> = [(r.key(), r)].into();
    let mut reports = report(DiskState::UpToDate, 4);
    // The standby hears its primary now; the what-if takes the primary away.
    reports.get_mut("pc3").unwrap()[0].primary_ack_age_ms = Some(10);
    let nodes = vec!["pc2".to_string(), "pc3".to_string()];
    let lines = what_if(
        &records,
        &reports,
        &BTreeMap::new(),
        &BTreeMap::new(),
        &nodes,
        &["pc2".into()],
    );
    assert_eq!(
        lines,
        vec!["memory: its primary pc2 gone, failover to pc3 at epoch 5 (standby UpToDate)"]
    );
    let stale = report(DiskState::Inconsistent, 4);
    let lines = what_if(
        &records,
        &stale,
        &BTreeMap::new(),
        &BTreeMap::new(),
        &nodes,
        &["pc2".into()],
    );
    assert!(
        lines[0].starts_with("memory: would stay down:"),
        "{lines:?}"
    );
    let lines = what_if(
        &records,
        &reports,
        &BTreeMap::new(),
        &BTreeMap::new(),
        &nodes,
        &["pc3".into()],
    );
    assert_eq!(
        lines,
        vec!["memory: keeps running, unprotected: its standby pc3 is gone"]
    );
}

#[test]
fn a_standby_without_the_groups_images_is_not_valid() {
    let records = [(record(false).key(), record(false))].into();
    let silence = [
        ("pc2".to_string(), 3 * S),
        ("pc3".to_string(), Duration::ZERO),
    ]
    .into();
    let missing = [(
        ("memory".to_string(), "pc3".to_string()),
        vec!["memory-orchestrator:v3".to_string()],
    )]
    .into();
    let (p, b) = decide(&Inputs {
        records: &records,
        silence: &silence,
        reports: &report(DiskState::UpToDate, 4),
        uptime: 60 * S,
        leases: &BTreeMap::new(),
        missing_images: &missing,
    });
    assert!(p.is_empty());
    assert!(
        b[0].reason
            .contains("pc3 lacks the group's image(s) memory-orchestrator:v3"),
        "{b:?}"
    );
}
