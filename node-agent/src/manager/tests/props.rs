//! A property of the whole manager over the fake runtime, in paused time:
//! whatever crashes, outside changes, holds in newer desired sets and time
//! do, a held container gets no start or resume, and no container is
//! started while the runtime shows it running or paused.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::runtime::fake::Op;

const NAMES: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum Event {
    Pass,
    Advance(u16),
    Crash(usize, i64),
    Outside(usize, &'static str),
    Hold(usize, WireHold),
}

fn any_event() -> impl Strategy<Value = Event> {
    let holds = [
        WireHold::None,
        WireHold::Stopped,
        WireHold::Paused,
        WireHold::Killed,
    ];
    prop_oneof![
        4 => Just(Event::Pass),
        3 => (0u16..3000).prop_map(Event::Advance),
        2 => (0usize..2, prop_oneof![Just(0i64), Just(1), Just(137)])
            .prop_map(|(i, c)| Event::Crash(i, c)),
        1 => (0usize..2, proptest::sample::select(vec!["running", "paused", "exited", "created"]))
            .prop_map(|(i, s)| Event::Outside(i, s)),
        2 => (0usize..2, proptest::sample::select(holds.to_vec()))
            .prop_map(|(i, h)| Event::Hold(i, h)),
    ]
}

async fn check(events: Vec<Event>) -> Result<(), TestCaseError> {
    let host = Host::new();
    let (mut m, _report) = host.manager();
    let mut holds = [WireHold::None; 2];
    let mut generation = 1;
    let set = |generation: u64, holds: &[WireHold; 2]| {
        desired(
            generation,
            NAMES.iter().zip(holds).map(|(n, h)| held(n, *h)).collect(),
        )
    };
    m.set_desired(set(generation, &holds));
    for event in events {
        match event {
            Event::Pass => {
                let before = host.rt.calls().len();
                m.pass().await;
                for call in &host.rt.calls()[before..] {
                    let Some(i) = NAMES.iter().position(|n| format!("mesh-{n}") == call.name)
                    else {
                        continue;
                    };
                    if matches!(call.op, Op::Start | Op::Unpause) {
                        prop_assert_eq!(holds[i], WireHold::None, "{:?} while held", call);
                    }
                    if call.op == Op::Start {
                        let up = matches!(call.status.as_deref(), Some("running" | "paused"));
                        prop_assert!(!up, "started while up: {:?}", call);
                    }
                }
                settle().await;
            }
            Event::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
            Event::Crash(i, code) => host.rt.exit(&format!("mesh-{}", NAMES[i]), code),
            Event::Outside(i, status) => host.rt.set_status(&format!("mesh-{}", NAMES[i]), status),
            Event::Hold(i, hold) => {
                holds[i] = hold;
                generation += 1;
                m.set_desired(set(generation, &holds));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn held_containers_get_no_start_and_running_ones_no_second_start(
        events in proptest::collection::vec(any_event(), 1..50)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(check(events))?;
    }
}
