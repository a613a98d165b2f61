//! Polling real processes until a condition holds, with a deadline that
//! names what was awaited.

use std::time::{Duration, Instant};

/// Calls `probe` every `every` until it returns `Some`, or panics after
/// `limit` with `what` and the last observation.
pub fn until<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, String>,
) -> T {
    let start = Instant::now();
    let mut last = String::from("(never observed)");
    loop {
        match probe() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(every);
    }
}
