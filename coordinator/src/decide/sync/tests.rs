use super::*;

fn directory(generation: u64) -> Directory {
    Directory {
        generation,
        ..Default::default()
    }
}

fn desired(generation: u64) -> DesiredContainers {
    DesiredContainers {
        generation,
        ..Default::default()
    }
}

/// (kind, generation) of each message, in order.
fn kinds(v: &[Body]) -> Vec<(Kind, u64)> {
    v.iter().filter_map(kind_of).collect()
}

#[test]
fn on_connect_the_directory_goes_before_the_container_set() {
    let out = sync_messages(Held::NOTHING, &directory(7), Some(&desired(9)));
    assert_eq!(kinds(&out), vec![(Kind::Directory, 7), (Kind::Desired, 9)]);
}

#[test]
fn every_combination_of_lagging_keeps_the_order_and_sends_only_what_lags() {
    for held_dir in [None, Some(0), Some(6), Some(7), Some(8)] {
        for held_desired in [None, Some(0), Some(8), Some(9), Some(10)] {
            for with_set in [false, true] {
                let held = Held {
                    directory: held_dir,
                    desired: held_desired,
                };
                let set = desired(9);
                let out = sync_messages(held, &directory(7), with_set.then_some(&set));
                let mut want = Vec::new();
                if held_dir.unwrap_or(0) < 7 {
                    want.push((Kind::Directory, 7));
                }
                if with_set && held_desired.unwrap_or(0) < 9 {
                    want.push((Kind::Desired, 9));
                }
                assert_eq!(kinds(&out), want, "{held:?} set={with_set}");
            }
        }
    }
}

#[test]
fn an_unnumbered_directory_is_never_sent() {
    assert!(sync_messages(Held::NOTHING, &directory(0), None).is_empty());
}

#[test]
fn the_same_generation_is_resent_only_after_a_second() {
    let t0 = Instant::now();
    let mut sent = Sent::default();
    let lagging = Held {
        directory: Some(1),
        desired: Some(1),
    };
    let (dir, set) = (directory(5), desired(6));
    let first = plan(lagging, &dir, Some(&set), &sent, t0);
    assert_eq!(
        kinds(&first),
        vec![(Kind::Directory, 5), (Kind::Desired, 6)]
    );
    for b in &first {
        sent.record(b, t0);
    }
    let soon = t0 + Duration::from_millis(999);
    assert!(plan(lagging, &dir, Some(&set), &sent, soon).is_empty());
    // A new generation is not held back by the one sent before.
    let newer = desired(7);
    assert_eq!(
        kinds(&plan(lagging, &dir, Some(&newer), &sent, soon)),
        vec![(Kind::Desired, 7)]
    );
    let later = t0 + RESEND_AFTER;
    assert_eq!(
        kinds(&plan(lagging, &dir, Some(&set), &sent, later)),
        vec![(Kind::Directory, 5), (Kind::Desired, 6)]
    );
    // Held: nothing more, however long it has been.
    let caught_up = Held {
        directory: Some(5),
        desired: Some(6),
    };
    assert!(plan(caught_up, &dir, Some(&set), &sent, later + RESEND_AFTER).is_empty());
}

#[test]
fn messages_outside_the_sync_are_always_due() {
    let sent = Sent::default();
    let ack = Body::HeartbeatAck(mesh_proto::v1::HeartbeatAck {
        seq: 1,
        leases: vec![],
    });
    assert!(sent.due(&ack, false, Instant::now()));
    assert_eq!(kind_of(&ack), None);
}

#[test]
fn what_an_agent_does_not_report_is_sent_once_per_generation() {
    let t0 = Instant::now();
    let mut sent = Sent::default();
    let unknown = Held {
        directory: None,
        desired: None,
    };
    let (dir, set) = (directory(5), desired(6));
    let first = plan(unknown, &dir, Some(&set), &sent, t0);
    assert_eq!(
        kinds(&first),
        vec![(Kind::Directory, 5), (Kind::Desired, 6)]
    );
    for b in &first {
        sent.record(b, t0);
    }
    let much_later = t0 + 100 * RESEND_AFTER;
    assert!(plan(unknown, &dir, Some(&set), &sent, much_later).is_empty());
    let changed = directory(8);
    assert_eq!(
        kinds(&plan(unknown, &changed, Some(&set), &sent, much_later)),
        vec![(Kind::Directory, 8)]
    );
}
