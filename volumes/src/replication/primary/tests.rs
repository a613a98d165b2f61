use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn cfg() -> PrimaryConfig {
    PrimaryConfig {
        identity: VolumeIdentity {
            volume_id: "v".into(),
            group: "g".into(),
            size_bytes: 1 << 20,
            block_size: 4096,
        },
        max_inflight_bytes: 64 << 10,
        max_inflight_writes: 16,
        fsync_bound: Duration::from_secs(2),
        coordinator_retry: Duration::from_millis(500),
    }
}

/// A primary with a synced session (resync already done).
fn synced(now: Instant) -> Primary {
    let mut p = Primary::new(cfg(), 5, 1, false).unwrap();
    p.open_session().unwrap();
    p.on_hello_ack(5).unwrap();
    let done = p.resync_done().unwrap();
    let Message::ResyncDone { seq, .. } = done else {
        panic!()
    };
    p.on_ack(seq, true).unwrap();
    assert_eq!(p.session_synced(), Some(true));
    assert!(p.poll(now).is_empty());
    p
}

fn send(p: &mut Primary, offset: u64, len: u64, now: Instant) -> u64 {
    match p.write(offset, len, now).unwrap() {
        WriteTicket::Send { seq, .. } => seq,
        other => panic!("{other:?}"),
    }
}

#[test]
fn fsync_is_durable_only_after_the_flushed_ack_that_covers_it() {
    let now = Instant::now();
    let mut p = synced(now);
    let a = send(&mut p, 0, 4096, now);
    let b = send(&mut p, 8192, 4096, now);
    let t = p.fsync(now).unwrap();
    assert_eq!(t.barrier, b);
    assert_eq!(
        p.poll(now),
        vec![Action::Send(Message::Flush { epoch: 5, seq: b })]
    );
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    p.on_ack(b, false).unwrap(); // applied, not flushed
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    p.on_ack(a, true).unwrap(); // flushed, but not far enough
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    p.on_ack(b, true).unwrap();
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
    assert_eq!(p.inflight_writes(), 0);
}

#[test]
fn acks_of_an_unsynced_session_prove_nothing() {
    let now = Instant::now();
    let mut p = Primary::new(cfg(), 1, 1, false).unwrap();
    p.open_session().unwrap();
    p.on_hello_ack(1).unwrap();
    let s = send(&mut p, 0, 512, now);
    let t = p.fsync(now).unwrap();
    p.on_ack(s, true).unwrap();
    // The standby may still miss blocks written before this session.
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() else {
        panic!()
    };
    p.on_ack(seq, true).unwrap();
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
}

#[test]
fn a_full_window_says_wait_and_asks_for_a_flush() {
    let now = Instant::now();
    let mut p = synced(now);
    let mut last = 0;
    for i in 0..16 {
        last = send(&mut p, i * 4096, 4096, now);
    }
    assert_eq!(p.inflight_bytes(), 64 << 10);
    assert_eq!(p.write(0, 1, now).unwrap(), WriteTicket::Wait);
    // A flush was asked for at half the window, so acks will come.
    assert!(p
        .poll(now)
        .iter()
        .any(|a| matches!(a, Action::Send(Message::Flush { .. }))));
    p.on_ack(last, true).unwrap();
    assert_eq!(p.inflight_bytes(), 0);
    assert!(matches!(
        p.write(0, 1, now).unwrap(),
        WriteTicket::Send { .. }
    ));
}

#[test]
fn a_write_larger_than_the_window_still_goes_when_the_window_is_empty() {
    let now = Instant::now();
    let mut p = synced(now);
    assert!(matches!(
        p.write(0, 128 << 10, now).unwrap(),
        WriteTicket::Send { .. }
    ));
}

#[test]
fn writes_outside_the_volume_are_refused() {
    let now = Instant::now();
    let mut p = synced(now);
    assert!(matches!(
        p.write((1 << 20) - 1, 2, now),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        p.write(u64::MAX, 2, now),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn a_stuck_fsync_asks_the_coordinator_and_waits_for_its_answer() {
    let t0 = Instant::now();
    let mut p = synced(t0);
    send(&mut p, 0, 4096, t0);
    let t = p.fsync(t0).unwrap();
    p.poll(t0);
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(2)));
    assert!(p.poll(t0 + Duration::from_millis(1999)).is_empty());
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(
        p.poll(t1),
        vec![Action::AskCoordinatorToOutdateStandby {
            epoch: 5,
            request: 1
        }]
    );
    // The coordinator does not answer: never durable, asked again.
    for k in 1..10 {
        let now = t1 + Duration::from_millis(500 * k);
        assert_eq!(
            p.poll(now),
            vec![Action::AskCoordinatorToOutdateStandby {
                epoch: 5,
                request: 1 + k
            }]
        );
        assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    }
    // An answer to a request never made changes nothing.
    p.on_coordinator_outdated(99);
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    // It answers (a retry's answer counts): the primary goes on alone and
    // drops the session.
    p.on_coordinator_outdated(3);
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
    assert_eq!(
        p.poll(t1 + Duration::from_secs(9)),
        vec![Action::DropSession]
    );
    assert_eq!(p.standing(), Standing::Outdated);
    // The unflushed write's block is dirty; later writes are local only.
    assert!(p.dirty_blocks().contains(0));
    assert!(matches!(
        p.write(40960, 10, t1).unwrap(),
        WriteTicket::LocalOnly { .. }
    ));
    assert!(p.dirty_blocks().contains(10));
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn a_window_blocked_too_long_also_asks_the_coordinator() {
    let t0 = Instant::now();
    let mut p = synced(t0);
    for i in 0..16 {
        send(&mut p, i * 4096, 4096, t0);
    }
    assert_eq!(p.write(0, 1, t0).unwrap(), WriteTicket::Wait);
    p.poll(t0);
    assert!(p.poll(t0 + Duration::from_secs(2)).contains(
        &Action::AskCoordinatorToOutdateStandby {
            epoch: 5,
            request: 1
        }
    ));
}

#[test]
fn a_late_answer_to_an_earlier_episode_does_not_make_the_primary_go_alone() {
    let t0 = Instant::now();
    let mut p = synced(t0);
    send(&mut p, 0, 1, t0);
    p.fsync(t0).unwrap();
    p.poll(t0);
    let t1 = t0 + Duration::from_secs(2);
    assert!(p
        .poll(t1)
        .contains(&Action::AskCoordinatorToOutdateStandby {
            epoch: 5,
            request: 1
        }));
    // The standby comes back and catches up before the coordinator answers;
    // request 1 is answered later, during a new episode's request 2.
    p.on_link_down();
    p.open_session().unwrap();
    p.on_hello_ack(5).unwrap();
    let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() else {
        panic!()
    };
    p.on_ack(seq, true).unwrap();
    // Still pending (the coordinator may yet outdate it): a confirmation of
    // this episode is honoured.
    assert!(matches!(p.standing(), Standing::OutdatePending { .. }));
    p.on_coordinator_outdated(1);
    assert_eq!(p.standing(), Standing::Outdated);
    // Rejoin and resync: InSync again, reported to the coordinator.
    p.open_session().unwrap();
    p.on_hello_ack(5).unwrap();
    let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() else {
        panic!()
    };
    p.on_ack(seq, true).unwrap();
    assert_eq!(p.standing(), Standing::InSync);
    // A new episode asks with request 2; a duplicate answer to request 1
    // (from the old episode) must not count.
    send(&mut p, 0, 1, t1);
    let t = p.fsync(t1).unwrap();
    p.poll(t1);
    let t2 = t1 + Duration::from_secs(2);
    assert!(p
        .poll(t2)
        .contains(&Action::AskCoordinatorToOutdateStandby {
            epoch: 5,
            request: 2
        }));
    p.on_coordinator_outdated(1);
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    p.on_coordinator_outdated(2);
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
}

#[test]
fn a_rejoined_standby_is_in_sync_again_after_its_resync() {
    let t0 = Instant::now();
    let mut p = Primary::new(cfg(), 2, 1, true).unwrap();
    // Alone: local writes, dirty blocks, fsyncs durable at once.
    assert!(matches!(
        p.write(0, 100, t0).unwrap(),
        WriteTicket::LocalOnly { .. }
    ));
    let t = p.fsync(t0).unwrap();
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
    p.open_session().unwrap();
    p.on_hello_ack(2).unwrap();
    let w = send(&mut p, 4096, 100, t0);
    let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() else {
        panic!()
    };
    assert!(seq > w);
    p.on_ack(seq, true).unwrap();
    assert_eq!(p.standing(), Standing::InSync);
    assert!(p.dirty_blocks().is_empty());
    assert_eq!(p.poll(t0), vec![Action::ReportStandbyUpToDate { epoch: 2 }]);
    // From now on fsyncs wait for the standby again.
    send(&mut p, 0, 1, t0);
    let t = p.fsync(t0).unwrap();
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
}

#[test]
fn a_stale_epoch_refusal_fences_the_primary_for_good() {
    let now = Instant::now();
    let mut p = synced(now);
    send(&mut p, 0, 1, now);
    let t = p.fsync(now).unwrap();
    let e = p.on_refused(RefuseReason::StaleEpoch { ours: 6, theirs: 5 });
    assert!(matches!(e, Error::Fenced { ours: 5, newer: 6 }));
    assert!(matches!(p.fsync_state(t), Err(Error::Fenced { .. })));
    assert!(matches!(p.write(0, 1, now), Err(Error::Fenced { .. })));
    assert!(matches!(p.fsync(now), Err(Error::Fenced { .. })));
    // Even a coordinator confirmation cannot make it go on alone.
    p.on_coordinator_outdated(1);
    assert!(matches!(p.fsync_state(t), Err(Error::Fenced { .. })));
    assert!(p.poll(now + Duration::from_secs(60)).is_empty());
}

#[test]
fn a_hello_ack_of_a_newer_epoch_fences() {
    let mut p = Primary::new(cfg(), 3, 1, false).unwrap();
    p.open_session().unwrap();
    assert!(matches!(p.on_hello_ack(4), Err(Error::Fenced { .. })));
    assert!(p.is_fenced());
}

#[test]
fn an_ack_for_a_seq_never_sent_is_a_protocol_error() {
    let now = Instant::now();
    let mut p = synced(now);
    assert!(matches!(p.on_ack(99, true), Err(Error::Protocol(_))));
    // A HelloAck for a session already accepted, or none at all.
    assert!(matches!(p.on_hello_ack(5), Err(Error::Protocol(_))));
    p.on_link_down();
    assert!(matches!(p.on_hello_ack(5), Err(Error::Protocol(_))));
}

#[test]
fn writes_before_the_hello_ack_belong_to_the_new_session() {
    let now = Instant::now();
    let mut p = Primary::new(cfg(), 1, 1, true).unwrap();
    p.write(0, 10, now).unwrap(); // no session: local only, seq 1
    let Message::Hello { next_seq, .. } = p.open_session().unwrap() else {
        panic!()
    };
    assert_eq!(next_seq, 2);
    assert_eq!(
        p.write(0, 10, now).unwrap(),
        WriteTicket::Send { epoch: 1, seq: 2 }
    );
    // No resync block before the standby accepted the session.
    assert!(p.resync_block(0, 4096, now).is_err());
    p.on_hello_ack(1).unwrap();
    assert!(matches!(
        p.resync_block(0, 4096, now).unwrap(),
        WriteTicket::Send { seq: 3, .. }
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64),
    Fsync,
    /// The standby flushes everything it received (in a synced session).
    StandbyFlushes,
    LinkDown,
    Rejoin,
    ResyncDone,
    Advance(u64),
    CoordinatorConfirms,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..256).prop_map(Op::Write),
        3 => Just(Op::Fsync),
        3 => Just(Op::StandbyFlushes),
        1 => Just(Op::LinkDown),
        1 => Just(Op::Rejoin),
        1 => Just(Op::ResyncDone),
        2 => (0u64..3000).prop_map(Op::Advance),
        1 => Just(Op::CoordinatorConfirms),
    ]
}

proptest! {
    /// Whatever happens, an fsync reported durable was flushed by a synced
    /// standby or came after the coordinator confirmed the standby
    /// Outdated; and the window never exceeds its bounds.
    #[test]
    fn never_durable_without_the_standby_or_the_coordinator(ops in proptest::collection::vec(op(), 1..200)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut p = Primary::new(cfg(), 1, 1, false).unwrap();
        // The model's view of the standby.
        let mut sent: Vec<u64> = Vec::new();       // seqs sent this session
        let mut standby_synced_flushed = 0u64;     // flushed in a synced session
        let mut resync_seq: Option<u64> = None;
        let mut last_request: Option<u64> = None;
        let mut confirmed = false;
        let mut tickets: Vec<FsyncTicket> = Vec::new();
        for op in ops {
            match op {
                Op::Write(block) => {
                    if let WriteTicket::Send { seq, .. } = p.write(block * 4096, 4096, now).unwrap() {
                        sent.push(seq);
                    }
                }
                Op::Fsync => tickets.push(p.fsync(now).unwrap()),
                Op::StandbyFlushes => {
                    if let Some(&last) = sent.last() {
                        if p.session_synced().is_some() {
                            p.on_ack(last, true).unwrap();
                            let synced = resync_seq.is_some_and(|r| last >= r);
                            if synced {
                                standby_synced_flushed = standby_synced_flushed.max(last);
                            }
                        }
                    }
                }
                Op::LinkDown => { p.on_link_down(); sent.clear(); resync_seq = None; }
                Op::Rejoin => {
                    if p.session_synced().is_none() {
                        p.open_session().unwrap();
                        p.on_hello_ack(1).unwrap();
                        sent.clear();
                        resync_seq = None;
                    }
                }
                Op::ResyncDone => {
                    if p.session_synced() == Some(false) && resync_seq.is_none() {
                        if let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() {
                            sent.push(seq);
                            resync_seq = Some(seq);
                        }
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::CoordinatorConfirms => {
                    if let Some(r) = last_request {
                        let before = p.standing();
                        p.on_coordinator_outdated(r);
                        if before != Standing::Outdated && p.standing() == Standing::Outdated {
                            // The coordinator persisted it: alone is allowed.
                            confirmed = true;
                            sent.clear();
                            resync_seq = None;
                        }
                    }
                }
            }
            for a in p.poll(now) {
                match a {
                    Action::AskCoordinatorToOutdateStandby { request, .. } => {
                        last_request = Some(request)
                    }
                    Action::ReportStandbyUpToDate { .. } => confirmed = false,
                    _ => {}
                }
            }
            prop_assert!(p.inflight_writes() <= 16);
            prop_assert!(p.inflight_bytes() <= 64 << 10);
            for t in &tickets {
                if p.fsync_state(*t).unwrap() == FsyncState::Durable {
                    prop_assert!(
                        t.barrier <= standby_synced_flushed || confirmed,
                        "barrier {} durable, standby flushed {} confirmed {}",
                        t.barrier, standby_synced_flushed, confirmed
                    );
                }
            }
            tickets.retain(|t| p.fsync_state(*t).unwrap() == FsyncState::Waiting);
        }
    }
}

#[test]
fn a_restarted_primary_proves_nothing_before_its_resync() {
    // Writes of the previous run may be on the local image only.
    let now = Instant::now();
    let mut p = Primary::new(cfg(), 5, 100, false).unwrap();
    let t = p.fsync(now).unwrap();
    assert_eq!(t.barrier, 99);
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Waiting);
    p.open_session().unwrap();
    p.on_hello_ack(5).unwrap();
    let Message::ResyncDone { seq, .. } = p.resync_done().unwrap() else {
        panic!()
    };
    assert_eq!(seq, 100);
    p.on_ack(seq, true).unwrap();
    assert_eq!(p.fsync_state(t).unwrap(), FsyncState::Durable);
}
