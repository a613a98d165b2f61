//! Property tests of the machine: arbitrary sequences of observations,
//! desired holds and policies, operator commands, time and outcomes.

use super::*;
use proptest::prelude::*;
use Action::*;

const ALWAYS: Want = Want {
    hold: None,
    restart: RestartPolicy::Always,
};

fn missing() -> RuntimeError {
    RuntimeError::ImageMissing {
        image: "img:1".into(),
    }
}

fn any_state() -> impl Strategy<Value = State> {
    proptest::sample::select(State::ALL.to_vec())
}

fn any_seen() -> impl Strategy<Value = Seen> {
    prop_oneof![
        Just(Seen::Absent),
        any_state().prop_map(Seen::Stale),
        (any_state(), prop_oneof![Just(0i64), Just(1), Just(137)])
            .prop_map(|(state, exit_code)| Seen::Current { state, exit_code }),
    ]
}

fn any_hold() -> impl Strategy<Value = Option<Hold>> {
    proptest::option::of(proptest::sample::select(vec![
        Hold::Stopped,
        Hold::Paused,
        Hold::Killed,
    ]))
}

#[derive(Clone, Debug)]
enum Event {
    /// A pass: what is seen, and whether each quick action succeeds.
    See(Seen, bool),
    Want(Option<Hold>, u8),
    Command(bool),
    Advance(u16),
    /// Background actions end, with success or not.
    Finish(bool),
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (any_seen(), any::<bool>()).prop_map(|(s, ok)| Event::See(s, ok)),
        1 => (any_hold(), 0u8..3).prop_map(|(h, p)| Event::Want(h, p)),
        1 => any::<bool>().prop_map(Event::Command),
        2 => (0u16..200).prop_map(Event::Advance),
        2 => any::<bool>().prop_map(Event::Finish),
    ]
}

fn guard_allows(action: Action, seen: Seen) -> bool {
    let state = match seen {
        Seen::Absent => return matches!(action, Create | Start),
        Seen::Stale(state) => return action == Remove && lifecycle::can_delete(state),
        Seen::Current { state, .. } => state,
    };
    match action {
        Create => false,
        Start => lifecycle::can_start(state),
        Stop => lifecycle::can_stop(state),
        Kill => lifecycle::can_kill(state),
        Pause => lifecycle::can_pause(state),
        Unpause => lifecycle::can_resume(state),
        Restart => lifecycle::can_stop(state),
        Remove => lifecycle::can_delete(state),
        FetchLogs => lifecycle::is_down(state),
    }
}

proptest! {
    #[test]
    fn held_is_never_started_starts_need_a_down_in_between_and_guards_hold(
        events in proptest::collection::vec(any_event(), 1..60)
    ) {
        let policies = [RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never];
        let mut now = Instant::now();
        let mut m = Machine::default();
        let mut want = ALWAYS;
        let mut background: Vec<Action> = Vec::new();
        // A start succeeded and the container has not been seen down since.
        let mut up = false;
        for event in events {
            match event {
                Event::See(seen, ok) => {
                    if seen.is_down() {
                        up = false;
                    }
                    let (after, actions) = next(&m, seen, Some(want), now);
                    if !background.is_empty() {
                        prop_assert!(actions.is_empty(), "an operation is under way: {actions:?}");
                    }
                    m = after;
                    for a in actions {
                        prop_assert!(guard_allows(a, seen), "{a:?} on {seen:?}");
                        if want.hold.is_some() {
                            prop_assert!(!a.runs(), "held {want:?} but {a:?}");
                        }
                        if a == Start {
                            prop_assert!(!up, "a second start without an exit seen");
                        }
                        if a.is_slow() {
                            background.push(a);
                            continue;
                        }
                        m = done(&m, a, if ok { Ok(()) } else { Err(missing()) }, now);
                        up |= ok && a == Start;
                    }
                }
                Event::Want(hold, policy) => {
                    want = Want { hold, restart: policies[policy as usize] };
                }
                Event::Command(restart) => {
                    let c = if restart { Command::Restart } else { Command::Start };
                    if let Some(after) = command(&m, c) {
                        prop_assert!(background.is_empty());
                        m = after;
                        want.hold = None; // start and restart lift a hold
                    }
                }
                Event::Advance(ms) => now += Duration::from_millis(u64::from(ms) * 100),
                Event::Finish(ok) => {
                    for a in background.drain(..) {
                        m = done(&m, a, if ok { Ok(()) } else { Err(missing()) }, now);
                        if a == Restart && ok {
                            up = true;
                        }
                        if a == Remove && ok {
                            up = false;
                        }
                    }
                    prop_assert!(!m.phase.is_under_way());
                }
            }
        }
    }
}
