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

/// (group, host) pairs where groups may run, and group -> its images.
type Wanted = (Vec<(String, String)>, BTreeMap<String, Vec<String>>);

/// Where groups of the applied topology may run, and their images, when it asks for copies.
fn wanted(shared: &Shared) -> Option<Wanted> {
    let applied = shared.topology.applied()?;
    let topology =
        crate::decide::planning::parse(&applied.source_name, &applied.topology_toml).ok()?;
    if !topology.placement.copy_images {
        return None;
    }
    let mut runs_on: Vec<(String, String)> = applied.placement.into_iter().collect();
    for r in shared.volumes.records().values() {
        if r.replicate && !r.standby.is_empty() {
            runs_on.push((r.group.clone(), r.standby.clone()));
        }
    }
    runs_on.sort();
    runs_on.dedup();
    Some((runs_on, crate::decide::images::group_images(&topology)))
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
        let Some((runs_on, images)) = wanted(&shared) else {
            continue;
        };
        let held = shared
            .registry()
            .container_reports(None)
            .into_iter()
            .filter_map(|(n, r)| r.filter(|r| r.runtime_available).map(|r| (n, r.images)))
            .collect();
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
