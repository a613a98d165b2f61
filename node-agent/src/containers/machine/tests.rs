use super::*;
use Action::*;

const ALWAYS: Want = Want {
    hold: None,
    restart: RestartPolicy::Always,
};

fn held(hold: Hold) -> Want {
    Want {
        hold: Some(hold),
        ..ALWAYS
    }
}

fn cur(state: State, exit_code: i64) -> Seen {
    Seen::Current { state, exit_code }
}

fn running() -> Seen {
    cur(State::Running, 0)
}

fn at(phase: Phase) -> Machine {
    Machine {
        phase,
        ..Machine::default()
    }
}

/// Runs `next`, then completes every action with success at `now`.
fn step(m: &Machine, seen: Seen, want: Want, now: Instant) -> (Machine, Vec<Action>) {
    let (mut m, actions) = next(m, seen, Some(want), now);
    for a in &actions {
        m = done(&m, *a, Ok(()), now);
    }
    (m, actions)
}

fn missing() -> RuntimeError {
    RuntimeError::ImageMissing {
        image: "img:1".into(),
    }
}

#[test]
fn a_new_container_is_created_and_started_then_left_alone() {
    let now = Instant::now();
    let (m, actions) = step(&Machine::default(), Seen::Absent, ALWAYS, now);
    assert_eq!(actions, vec![Create, Start]);
    assert_eq!(m.phase, Phase::Starting);
    let (m, actions) = step(&m, running(), ALWAYS, now);
    assert_eq!((m.phase.clone(), actions), (Phase::Running, vec![]));
    // Running and wanted: nothing to do, however often asked.
    for s in 0..10 {
        let (again, actions) = next(&m, running(), Some(ALWAYS), now + Duration::from_secs(s));
        assert_eq!((&again, actions), (&m, vec![]));
    }
}

#[test]
fn a_held_container_is_created_but_not_started() {
    let now = Instant::now();
    let (m, actions) = step(&Machine::default(), Seen::Absent, held(Hold::Stopped), now);
    assert_eq!(actions, vec![Create]);
    let (m, actions) = step(&m, cur(State::Created, 0), held(Hold::Stopped), now);
    assert_eq!((m.phase, actions), (Phase::Held(Hold::Stopped), vec![]));
}

#[test]
fn crashes_back_off_doubling_to_a_minute_and_flag_a_crash_loop() {
    let mut now = Instant::now();
    let mut m = at(Phase::Running);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (backing, actions) = next(&m, cur(State::Error, 1), Some(ALWAYS), now);
        assert_eq!(actions, vec![FetchLogs]);
        let Phase::BackingOff { until, attempt } = backing.phase else {
            panic!("{:?}", backing.phase)
        };
        assert_eq!(attempt, backing.restart.consecutive);
        delays.push((until - now).as_secs());
        // Not before the backoff is over.
        let early = until - Duration::from_millis(1);
        let (_, actions) = next(&backing, cur(State::Error, 1), Some(ALWAYS), early);
        assert!(actions.is_empty());
        now = until;
        let (started, actions) = step(&backing, cur(State::Error, 1), ALWAYS, now);
        assert_eq!(actions, vec![Start]);
        m = started;
        now += Duration::from_millis(100);
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    assert!(m.restart.is_crash_looping());
    assert_eq!(m.restart.total, 8);
    assert_eq!(m.restart.last_exit_code, Some(1));
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let now = Instant::now();
    let (m, _) = step(&at(Phase::Running), cur(State::Error, 1), ALWAYS, now);
    let (m, _) = step(
        &m,
        cur(State::Error, 1),
        ALWAYS,
        now + Duration::from_secs(1),
    );
    let later = now + Duration::from_secs(1) + super::super::restart::RESET_AFTER;
    let (m, _) = next(&m, cur(State::Error, 1), Some(ALWAYS), later);
    assert_eq!(
        m.phase,
        Phase::BackingOff {
            until: later + Duration::from_secs(1),
            attempt: 1
        }
    );
}

#[test]
fn the_policy_may_keep_it_stopped() {
    let now = Instant::now();
    let never = Want {
        restart: RestartPolicy::Never,
        ..ALWAYS
    };
    let (m, actions) = step(&at(Phase::Running), cur(State::Error, 2), never, now);
    assert_eq!(
        (m.phase.clone(), actions),
        (Phase::StayingStopped, vec![FetchLogs])
    );
    let hour = now + Duration::from_secs(3600);
    assert!(next(&m, cur(State::Error, 2), Some(never), hour)
        .1
        .is_empty());
    let on_failure = Want {
        restart: RestartPolicy::OnFailure,
        ..ALWAYS
    };
    let (m, actions) = step(&at(Phase::Running), cur(State::Stopped, 0), on_failure, now);
    assert_eq!((m.phase, actions), (Phase::StayingStopped, vec![]));
}

#[test]
fn holds_stop_kill_or_pause_and_never_count_as_crashes() {
    let now = Instant::now();
    for (hold, action) in [
        (Hold::Stopped, Stop),
        (Hold::Killed, Kill),
        (Hold::Paused, Pause),
    ] {
        let (m, actions) = next(&at(Phase::Running), running(), Some(held(hold)), now);
        assert_eq!(
            (m.phase.clone(), actions),
            (Phase::Holding(hold), vec![action])
        );
        // Under way: nothing else happens until it is done.
        assert!(next(&m, running(), Some(ALWAYS), now).1.is_empty());
        let m = done(&m, action, Ok(()), now);
        assert_eq!(m.phase, Phase::Held(hold));
        let after = match hold {
            Hold::Paused => cur(State::Paused, 0),
            _ => cur(State::Error, 137),
        };
        let (m, actions) = next(&m, after, Some(held(hold)), now);
        assert_eq!((m.phase.clone(), actions), (Phase::Held(hold), vec![]));
        assert_eq!(m.restart.total, 0);
    }
    // A pause cannot freeze a stopped container; it stays stopped.
    let (m, actions) = next(
        &at(Phase::StayingStopped),
        cur(State::Stopped, 0),
        Some(held(Hold::Paused)),
        now,
    );
    assert_eq!((m.phase, actions), (Phase::Held(Hold::Paused), vec![]));
}

#[test]
fn lifting_a_hold_starts_or_resumes_at_once() {
    let now = Instant::now();
    let m = at(Phase::Held(Hold::Stopped));
    let (m2, actions) = step(&m, cur(State::Stopped, 0), ALWAYS, now);
    assert_eq!((m2.phase, actions), (Phase::Starting, vec![Start]));
    let m = at(Phase::Held(Hold::Paused));
    let (m2, actions) = step(&m, cur(State::Paused, 0), ALWAYS, now);
    assert_eq!((m2.phase, actions), (Phase::Running, vec![Unpause]));
    // Seen running already: nothing to do.
    let (m2, actions) = step(&m, running(), ALWAYS, now);
    assert_eq!((m2.phase, actions), (Phase::Running, vec![]));
}

#[test]
fn a_changed_spec_or_an_undesired_container_is_removed_in_the_background() {
    let now = Instant::now();
    let mut m = at(Phase::Running);
    m.restart.total = 3;
    let (removing, actions) = next(&m, Seen::Stale(State::Running), Some(ALWAYS), now);
    assert_eq!(
        (removing.phase.clone(), actions),
        (Phase::Removing, vec![Remove])
    );
    assert!(
        next(&removing, Seen::Stale(State::Running), Some(ALWAYS), now)
            .1
            .is_empty()
    );
    // Removed: a new record, created from the new spec on the next pass.
    assert_eq!(done(&removing, Remove, Ok(()), now), Machine::default());
    let failed = done(&removing, Remove, Err(missing()), now);
    assert_eq!(
        next(&failed, Seen::Stale(State::Running), Some(ALWAYS), now).1,
        vec![Remove]
    );
    // Held or not, a container that is not desired goes.
    let (_, actions) = next(&at(Phase::Held(Hold::Paused)), running(), None, now);
    assert_eq!(actions, vec![Remove]);
    assert!(next(&Machine::default(), Seen::Absent, None, now)
        .1
        .is_empty());
}

#[test]
fn failed_creates_are_retried_with_backoff_capped_at_thirty_seconds() {
    let mut now = Instant::now();
    let mut m = Machine::default();
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (_, actions) = next(&m, Seen::Absent, Some(ALWAYS), now);
        assert_eq!(actions, vec![Create, Start]);
        m = done(&m, Create, Err(missing()), now);
        let Phase::Failed {
            retry_at, error, ..
        } = &m.phase
        else {
            panic!("{:?}", m.phase)
        };
        assert_eq!(error, &missing());
        delays.push((*retry_at - now).as_secs());
        assert!(next(
            &m,
            Seen::Absent,
            Some(ALWAYS),
            *retry_at - Duration::from_millis(1)
        )
        .1
        .is_empty());
        now = *retry_at;
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    // Created at last: the failure is over.
    let m = done(&m, Create, Ok(()), now);
    assert_eq!(done(&m, Start, Ok(()), now).phase, Phase::Starting);
}

#[test]
fn operator_start_skips_the_backoff_and_restart_runs_in_the_background() {
    let now = Instant::now();
    let backing = at(Phase::BackingOff {
        until: now + Duration::from_secs(60),
        attempt: 6,
    });
    let m = command(&backing, Command::Start).unwrap();
    let (m, actions) = step(&m, cur(State::Error, 1), ALWAYS, now);
    assert_eq!((m.phase, actions), (Phase::Starting, vec![Start]));
    let staying = at(Phase::StayingStopped);
    let m = command(&staying, Command::Start).unwrap();
    assert_eq!(
        next(&m, cur(State::Stopped, 0), Some(ALWAYS), now).1,
        vec![Start]
    );
    let m = command(&at(Phase::Running), Command::Restart).unwrap();
    let (m, actions) = next(&m, running(), Some(ALWAYS), now);
    assert_eq!(
        (m.phase.clone(), actions),
        (Phase::Restarting, vec![Restart])
    );
    assert_eq!(command(&m, Command::Start), None, "a restart is under way");
    assert_eq!(done(&m, Restart, Ok(()), now).phase, Phase::Starting);
    // A restart of a stopped container is a start.
    let m = command(&at(Phase::StayingStopped), Command::Restart).unwrap();
    assert_eq!(
        next(&m, cur(State::Stopped, 0), Some(ALWAYS), now).1,
        vec![Start]
    );
}

#[test]
fn adopted_containers_are_kept_as_they_run() {
    let now = Instant::now();
    let (m, actions) = next(&Machine::default(), running(), Some(ALWAYS), now);
    assert_eq!((m.phase, actions), (Phase::Running, vec![]));
    // One that had exited gets the restart policy, after the first delay.
    let (m, actions) = next(
        &Machine::default(),
        cur(State::Stopped, 0),
        Some(ALWAYS),
        now,
    );
    assert_eq!(actions, vec![]);
    assert!(
        matches!(m.phase, Phase::BackingOff { until, .. } if until == now + Duration::from_secs(1))
    );
    // Created but never started (the agent died in between): started.
    assert_eq!(
        next(
            &Machine::default(),
            cur(State::Created, 0),
            Some(ALWAYS),
            now
        )
        .1,
        vec![Start]
    );
}

#[test]
fn labels_name_every_phase() {
    let now = Instant::now();
    let phases = [
        Phase::Pending,
        Phase::Starting,
        Phase::Running,
        Phase::BackingOff {
            until: now,
            attempt: 1,
        },
        Phase::StayingStopped,
        Phase::Held(Hold::Paused),
        Phase::Holding(Hold::Paused),
        Phase::StartRequested,
        Phase::RestartRequested,
        Phase::Restarting,
        Phase::Failed {
            retry_at: now,
            attempts: 1,
            error: missing(),
        },
        Phase::Removing,
    ];
    let mut labels: Vec<&str> = phases.iter().map(Phase::label).collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), phases.len());
}
