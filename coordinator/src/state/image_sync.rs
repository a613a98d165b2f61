//! Runs [`crate::decide::image_sync`] for an applied topology with `[placement] copy_images =
//! true`: every few seconds it compares where groups may run (their hosts, their standbys)
//! with the images the agents report, and starts the copies the decision names, through the
//! same agent-to-agent path as `meshctl images copy`. Each start and outcome is in the event
//! history. Reconciles on state: a copy lost with its agent is simply started again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::decide::image_sync::{copies_to_start, Inputs, Start};
use crate::state::Shared;

/// How often what is missing is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// How long a failed copy waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Copies {
    busy: BTreeSet<(String, String)>,
    failed: BTreeMap<(String, String), Instant>,
}

/// (group, host, "host" | "standby") for every group placed in `placement` and every
/// replicated group's standby: where groups may run, so where their images must be.
pub fn where_groups_run(
    shared: &Shared,
    placement: &BTreeMap<String, String>,
) -> Vec<(String, String, &'static str)> {
    let mut runs_on: Vec<(String, String, &'static str)> = placement
        .iter()
        .map(|(g, h)| (g.clone(), h.clone(), "host"))
        .collect();
    for r in shared.volumes.records().values() {
        if r.replicate && !r.standby.is_empty() {
            runs_on.push((r.group.clone(), r.standby.clone(), "standby"));
        }
    }
    runs_on.sort();
    runs_on.dedup();
    runs_on
}

pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let copies = Arc::new(Mutex::new(Copies::default()));
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Some(view) = shared.topology.copy_view() else {
            continue;
        };
        let images = view.images;
        let runs_on: Vec<(String, String)> = where_groups_run(&shared, &view.placement)
            .into_iter()
            .map(|(group, host, _)| (group, host))
            .collect();
        let held = shared.registry().held_images();
        let starts = {
            let c = copies.lock().unwrap_or_else(|p| p.into_inner());
            copies_to_start(&Inputs {
                runs_on: &runs_on,
                images: &images,
                held: &held,
                busy: &c.busy,
                failed: &c.failed,
                now: Instant::now(),
                retry_after: RETRY_AFTER,
            })
        };
        for s in starts {
            start(&shared, &copies, s);
        }
    }
}

fn start(shared: &Arc<Shared>, copies: &Arc<Mutex<Copies>>, s: Start) {
    let key = (s.image.clone(), s.to.clone());
    let mut progress = match shared.sessions.copy_image(&s.to, &s.from, &s.image, 0) {
        Ok((_, rx)) => rx,
        Err(e) => {
            tracing::warn!(image = %s.image, to = %s.to, "cannot start an image copy: {}", e.message());
            return;
        }
    };
    copies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .busy
        .insert(key.clone());
    shared.events.record(
        "image",
        &s.to,
        "",
        format!(
            "copying {} from {} to {} (copy_images)",
            s.image, s.from, s.to
        ),
    );
    let (shared, copies) = (shared.clone(), copies.clone());
    tokio::spawn(async move {
        let mut outcome = Err(format!("node '{}' disconnected during the copy", s.to));
        while let Some(p) = progress.recv().await {
            if !p.error.is_empty() {
                outcome = Err(p.error);
                break;
            }
            if p.done {
                outcome = Ok(p.bytes);
                break;
            }
        }
        let mut c = copies.lock().unwrap_or_else(|p| p.into_inner());
        c.busy.remove(&key);
        match outcome {
            Ok(bytes) => {
                c.failed.remove(&key);
                shared.events.record(
                    "image",
                    &s.to,
                    "",
                    format!(
                        "copied {} from {} to {}: {bytes} bytes",
                        s.image, s.from, s.to
                    ),
                );
            }
            Err(e) => {
                c.failed.insert(key, Instant::now());
                shared.events.record(
                    "image",
                    &s.to,
                    "",
                    format!(
                        "copying {} from {} to {} failed (tried again in {}s): {e}",
                        s.image,
                        s.from,
                        s.to,
                        RETRY_AFTER.as_secs()
                    ),
                );
            }
        }
    });
}
