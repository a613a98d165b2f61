use super::*;
use mesh_proto::v1::VolumeRole;

const S: Duration = Duration::from_secs(1);

fn record() -> VolumeRecord {
    VolumeRecord {
        group: "memory".into(),
        name: "db".into(),
        size_bytes: 1 << 26,
        replicate: true,
        primary: "pc2".into(),
        standby: "mainpc".into(),
        epoch: 3,
        attached: true,
        home: "pc2".into(),
        ..Default::default()
    }
}

fn records(r: VolumeRecord) -> BTreeMap<RecordKey, VolumeRecord> {
    [(r.key(), r)].into()
}

fn status(role: VolumeRole, phase: VolumePhase, disk: DiskState, epoch: u64) -> VolumeStatus {
    VolumeStatus {
        group: "memory".into(),
        name: "db".into(),
        role: role as i32,
        phase: phase as i32,
        disk: disk as i32,
        epoch,
        standing: ReplicationStanding::InSync as i32,
        ..Default::default()
    }
}

/// pc2 attached and in sync, mainpc serving UpToDate, both at `epoch`.
fn healthy(epoch: u64) -> BTreeMap<String, Vec<VolumeStatus>> {
    [
        (
            "pc2".to_string(),
            vec![status(
                VolumeRole::Primary,
                VolumePhase::Attached,
                DiskState::UpToDate,
                epoch,
            )],
        ),
        (
            "mainpc".to_string(),
            vec![status(
                VolumeRole::Standby,
                VolumePhase::Serving,
                DiskState::UpToDate,
                epoch,
            )],
        ),
    ]
    .into()
}

fn both_heard() -> BTreeMap<String, Duration> {
    [
        ("pc2".to_string(), Duration::ZERO),
        ("mainpc".to_string(), Duration::ZERO),
    ]
    .into()
}

#[test]
fn an_in_sync_group_moves_to_its_standby() {
    let m = check(
        &records(record()),
        &healthy(3),
        &both_heard(),
        2 * S,
        "memory",
        "",
    )
    .unwrap();
    assert_eq!(
        m,
        Move {
            group: "memory".into(),
            from: "pc2".into(),
            to: "mainpc".into(),
            epoch: 3
        }
    );
    // Naming the standby is the same move.
    assert_eq!(
        check(
            &records(record()),
            &healthy(3),
            &both_heard(),
            2 * S,
            "memory",
            "mainpc"
        ),
        Ok(m)
    );
}

#[test]
fn refusals_name_what_is_wrong() {
    let rs = records(record());
    let err =
        |reports: &BTreeMap<String, Vec<VolumeStatus>>,
         silence: &BTreeMap<String, Duration>,
         group: &str,
         to: &str| { check(&rs, reports, silence, 2 * S, group, to).unwrap_err() };
    assert!(err(&healthy(3), &both_heard(), "web", "").contains("no replicated volume"));
    assert!(err(&healthy(3), &both_heard(), "memory", "pc3")
        .contains("pc3 is not the standby of 'memory' (its standby is mainpc)"));
    assert!(err(&healthy(3), &both_heard(), "memory", "pc2").contains("already runs on pc2"));
    let pc2_silent: BTreeMap<String, Duration> = [
        ("pc2".to_string(), 5 * S),
        ("mainpc".to_string(), Duration::ZERO),
    ]
    .into();
    assert!(err(&healthy(3), &pc2_silent, "memory", "").contains("automatic failover"));
    let mut resyncing = healthy(3);
    resyncing.get_mut("mainpc").unwrap()[0].disk = DiskState::Inconsistent as i32;
    assert!(err(&resyncing, &both_heard(), "memory", "").contains("Inconsistent, not UpToDate"));
    let mut lagging = healthy(3);
    lagging.get_mut("pc2").unwrap()[0].standing = ReplicationStanding::Resyncing as i32;
    assert!(err(&lagging, &both_heard(), "memory", "").contains("not attached and in sync"));
    let outdated = VolumeRecord {
        standby_outdated: true,
        ..record()
    };
    assert!(check(
        &records(outdated),
        &healthy(3),
        &both_heard(),
        2 * S,
        "memory",
        ""
    )
    .unwrap_err()
    .contains("Outdated"));
    let busy = VolumeRecord {
        handover: true,
        ..record()
    };
    assert!(check(
        &records(busy),
        &healthy(3),
        &both_heard(),
        2 * S,
        "memory",
        ""
    )
    .unwrap_err()
    .contains("already under way"));
}

#[test]
fn the_standby_is_promoted_only_once_every_volume_is_handed_over() {
    let m = check(
        &records(record()),
        &healthy(3),
        &both_heard(),
        2 * S,
        "memory",
        "",
    )
    .unwrap();
    let begun = begin(&records(record()), &m);
    assert!(begun.iter().all(|r| r.handover));
    let rs = records(begun[0].clone());
    // Still attached on pc2: wait.
    assert!(matches!(
        progress(&rs, &healthy(3)).get("memory"),
        Some(Progress::Stopping { .. })
    ));
    // Handed over, at an older epoch: not this switchover's.
    let mut handed = healthy(3);
    handed.get_mut("pc2").unwrap()[0] = status(
        VolumeRole::Primary,
        VolumePhase::HandedOver,
        DiskState::UpToDate,
        2,
    );
    assert!(matches!(
        progress(&rs, &handed).get("memory"),
        Some(Progress::Stopping { .. })
    ));
    handed.get_mut("pc2").unwrap()[0].epoch = 3;
    let Some(Progress::Promote(p)) = progress(&rs, &handed).get("memory").cloned() else {
        panic!("expected a promotion");
    };
    assert_eq!(
        (p.from.as_str(), p.to.as_str(), p.epoch),
        ("pc2", "mainpc", 4)
    );
    let after = promoted(&rs, &p);
    assert_eq!(after.len(), 1);
    let r = &after[0];
    assert_eq!(
        (r.primary.as_str(), r.standby.as_str(), r.epoch),
        ("mainpc", "pc2", 4)
    );
    assert!(r.clean_handover && !r.handover);
    // The old primary is resynced before it counts as a standby again.
    assert!(r.standby_outdated);
}

#[test]
fn an_aborted_switchover_leaves_the_group_where_it_was() {
    let busy = VolumeRecord {
        handover: true,
        ..record()
    };
    let back = abort(&records(busy), "memory");
    assert_eq!(back, vec![record()]);
    assert!(abort(&records(record()), "memory").is_empty());
    assert!(progress(&records(record()), &healthy(3)).is_empty());
}

#[test]
fn failback_waits_out_the_hold_down_with_the_home_host_a_valid_standby() {
    // Failed over to mainpc; pc2 (home) is back as an UpToDate standby.
    let away = VolumeRecord {
        primary: "mainpc".into(),
        standby: "pc2".into(),
        ..record()
    };
    let mut reports = healthy(3);
    let (p, s) = (
        reports.remove("pc2").unwrap(),
        reports.remove("mainpc").unwrap(),
    );
    reports.insert("mainpc".into(), p);
    reports.insert("pc2".into(), s);
    let def = crate::decide::volumes::VolumeDef {
        group: "memory".into(),
        name: "db".into(),
        replicate: true,
        lease: 2 * S,
        failback_hold: Some(30 * S),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let rs = records(away.clone());
    let (since, moves) = failbacks(
        &rs,
        &reports,
        &both_heard(),
        std::slice::from_ref(&def),
        &BTreeMap::new(),
        t0,
    );
    assert!(moves.is_empty());
    assert_eq!(since.get("memory"), Some(&t0));
    let (since, moves) = failbacks(
        &rs,
        &reports,
        &both_heard(),
        std::slice::from_ref(&def),
        &since,
        t0 + 29 * S,
    );
    assert!(moves.is_empty());
    let (_, moves) = failbacks(
        &rs,
        &reports,
        &both_heard(),
        std::slice::from_ref(&def),
        &since,
        t0 + 30 * S,
    );
    assert_eq!(moves.len(), 1);
    assert_eq!(
        (moves[0].from.as_str(), moves[0].to.as_str()),
        ("mainpc", "pc2")
    );
    // A standby that stops being valid starts the hold-down over.
    let mut resyncing = reports.clone();
    resyncing.get_mut("pc2").unwrap()[0].disk = DiskState::Inconsistent as i32;
    let (after, moves) = failbacks(
        &rs,
        &resyncing,
        &both_heard(),
        std::slice::from_ref(&def),
        &since,
        t0 + 31 * S,
    );
    assert!(moves.is_empty() && after.is_empty());
    // Manual failback (the default) never moves, and a group at home stays.
    let manual = crate::decide::volumes::VolumeDef {
        failback_hold: None,
        ..def.clone()
    };
    assert!(
        failbacks(&rs, &reports, &both_heard(), &[manual], &since, t0 + 99 * S)
            .1
            .is_empty()
    );
    assert!(failbacks(
        &records(record()),
        &healthy(3),
        &both_heard(),
        &[def],
        &since,
        t0 + 99 * S
    )
    .1
    .is_empty());
}
