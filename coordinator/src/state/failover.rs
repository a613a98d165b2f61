//! Runs the failover decisions each control-loop tick: persists a
//! promotion's records (new epoch, roles swapped) before anything else,
//! then re-plans the group onto its new primary (a rollout of the applied
//! topology with that one placement changed, so its services start there
//! in dependency order and the directory re-points its bridges). The
//! volumes' assignments follow from the records on the same tick.
//! Planned switchovers ([`super::switchover`]) end in the same promotion.
//! Every failover is tracked in phases ([`Tracked`]) for `meshctl`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mesh_proto::v1::{ContainerState, VolumePhase};

use crate::decide::failover::{decide, promoted, Blocked, Inputs, Promote};
use crate::decide::failover_phases::{Cause, Seen, Tracked};
use crate::state::Shared;

#[derive(Debug, Default)]
pub struct FailoverState {
    last: Mutex<BTreeMap<String, Tracked>>,
    blocked: Mutex<BTreeMap<String, String>>,
    /// `failback = "auto"` groups whose home host is a valid standby: since when.
    pub(crate) failback_since: Mutex<BTreeMap<String, Instant>>,
    /// (group, cause) -> failovers begun since this coordinator started.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FailoverState {
    /// group -> its last (or running) failover.
    pub fn last(&self) -> BTreeMap<String, Tracked> {
        lock(&self.last).clone()
    }

    /// group -> why its gone primary is not replaced.
    pub fn blocked(&self) -> BTreeMap<String, String> {
        lock(&self.blocked).clone()
    }

    pub(crate) fn track(&self, group: &str, t: Tracked) {
        *lock(&self.counts)
            .entry((group.to_string(), t.cause.label()))
            .or_default() += 1;
        lock(&self.last).insert(group.to_string(), t);
    }

    /// (group, cause) -> how many failovers began since this run started.
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.counts).clone()
    }

    pub(crate) fn update(&self, group: &str, f: impl FnOnce(&mut Tracked)) {
        if let Some(t) = lock(&self.last).get_mut(group) {
            f(t);
        }
    }
}

/// One tick: promote what must be, drive switchovers, and follow the
/// phases of those under way.
pub fn tick(shared: &Shared) {
    let records = shared.volumes.records();
    if records.is_empty() {
        return;
    }
    let now = Instant::now();
    let silence = shared.registry().silences(now);
    let reports = shared.volumes.reports();
    let (defs, _) = shared.topology.volume_view();
    let leases: BTreeMap<String, Duration> =
        defs.iter().map(|d| (d.group.clone(), d.lease)).collect();
    let (promote, blocked) = decide(&Inputs {
        records: &records,
        silence: &silence,
        reports: &reports,
        uptime: shared.started.elapsed(),
        leases: &leases,
        missing_images: &missing_images_map(shared, &[]),
    });
    {
        let mut b = lock(&shared.failover.blocked);
        let next: BTreeMap<String, String> = blocked
            .into_iter()
            .map(|Blocked { group, reason }| (group, reason))
            .collect();
        for (g, r) in &next {
            if b.get(g) != Some(r) {
                tracing::warn!(group = %g, reason = %r, "failover: the group's primary is gone and it stays down");
                shared
                    .events
                    .record("failover", "", g, format!("{g} stays down: {r}"));
            }
        }
        *b = next;
    }
    for p in promote {
        let silent = silence.get(&p.from).copied().unwrap_or_default();
        let started = now.checked_sub(silent).unwrap_or(now);
        let unix = crate::state::registry::Now::system().unix_ms - silent.as_millis() as i64;
        let mut t = Tracked::new(Cause::PrimarySilent, &p.from, &p.to, p.epoch, started, unix);
        t.mark("detect", now);
        if promote_group(
            shared,
            &p,
            promoted(&records, &p),
            "primary silent for its lease",
        ) {
            t.mark("promote", Instant::now());
            shared.failover.track(&p.group, t);
        }
    }
    super::switchover::drive(shared, &records, &reports, now);
    super::switchover::failback(shared, &shared.volumes.records(), &reports, &silence, now);
    follow(shared);
}

/// Persists `records` (the promotion), then moves the group's services.
/// False when the records could not be written (nothing changed).
pub(crate) fn promote_group(
    shared: &Shared,
    p: &Promote,
    records: Vec<crate::decide::volumes::VolumeRecord>,
    why: &str,
) -> bool {
    let span = tracing::info_span!("failover", group = %p.group, from = %p.from, to = %p.to, epoch = p.epoch);
    let _e = span.enter();
    if let Err(e) = shared.volumes.save(records) {
        tracing::error!(error = %e, "failover: cannot record the promotion; nothing changed, retrying next tick");
        return false;
    }
    crate::rpc::topology_api::fault_point("after-promotion-recorded");
    tracing::warn!(reason = why, "failover: standby promoted (epoch persisted)");
    shared.events.record(
        "failover",
        &p.to,
        &p.group,
        format!(
            "{} promoted to primary of {} at epoch {} (was {}): {why}",
            p.to, p.group, p.epoch, p.from
        ),
    );
    if let Err(e) = crate::rpc::topology_api::fail_over(shared, &p.group, &p.to) {
        tracing::error!(error = %e, "failover: the group could not be re-planned onto its new primary");
    }
    true
}

/// Marks the phases of every failover under way that have ended.
fn follow(shared: &Shared) {
    let running: Vec<(String, Tracked)> = shared
        .failover
        .last()
        .into_iter()
        .filter(|(_, t)| !t.done())
        .collect();
    if running.is_empty() {
        return;
    }
    let reports = shared.volumes.reports();
    let records = shared.volumes.records();
    let observed =
        crate::state::topology_state::usable_reports(shared.registry().container_reports(None));
    let status = shared.topology.status(&observed);
    let directory = shared.directory();
    let now = Instant::now();
    for (group, t) in running {
        let vols: Vec<_> = records.values().filter(|r| r.group == group).collect();
        let attached = !vols.is_empty()
            && vols.iter().all(|r| {
                reports.get(&t.to).is_some_and(|l| {
                    l.iter().any(|s| {
                        s.group == r.group
                            && s.name == r.name
                            && s.phase() == VolumePhase::Attached
                            && s.epoch == t.epoch
                    })
                })
            });
        let g = status.groups.iter().find(|g| g.group == group);
        let on_target = g.is_some_and(|g| g.host == t.to && !g.services.is_empty());
        let running = on_target
            && g.is_some_and(|g| {
                g.services
                    .iter()
                    .all(|s| s.state == ContainerState::Running as i32)
            });
        let healthy = on_target && g.is_some_and(|g| g.healthy);
        let repointed = healthy
            && g.is_some_and(|g| {
                directory
                    .bridges
                    .iter()
                    .filter(|b| g.services.iter().any(|s| s.service == b.service))
                    .all(|b| b.host == t.to && b.healthy)
            });
        let seen = Seen {
            attached,
            running,
            healthy,
            repointed,
        };
        shared.failover.update(&group, |t| {
            let was = t.marks.len();
            t.advance(seen, now);
            if t.done() && t.marks.len() != was {
                let p = t.to_proto(now);
                tracing::info!(group = %group, cause = %p.cause, from = %p.from, to = %p.to, epoch = p.epoch, total_ms = p.total_ms, phases = ?p.phases.iter().map(|x| (x.name.clone(), x.ms)).collect::<Vec<_>>(), "failover: the group is healthy on its new host and its bridges point there");
                shared.events.record(
                    "failover",
                    &p.to,
                    &group,
                    format!(
                        "{} healthy on {} with its bridges re-pointed: {}",
                        group,
                        p.to,
                        crate::rpc::volumes_api::failover_line(&p)
                    ),
                );
            }
        });
    }
}

/// (group, host) -> the group's images that host lacks, for every
/// replicated group's standby (and `extra` pairs), from the images the
/// agents last reported.
pub fn missing_images_map(
    shared: &Shared,
    extra: &[(String, String)],
) -> BTreeMap<(String, String), Vec<String>> {
    let (defs, _) = shared.topology.volume_view();
    let records = shared.volumes.records();
    let held = shared.registry().held_images();
    let pairs = records
        .values()
        .filter(|r| r.replicate && !r.standby.is_empty())
        .map(|r| (r.group.clone(), r.standby.clone()))
        .chain(extra.iter().cloned());
    let mut out = BTreeMap::new();
    for (group, host) in pairs {
        let Some(def) = defs.iter().find(|d| d.group == group) else {
            continue;
        };
        let m = crate::decide::images::missing(&def.images, held.get(&host).map(|v| v.as_slice()));
        if !m.is_empty() {
            out.insert((group, host), m);
        }
    }
    out
}

/// Why `host` cannot run `group` for want of its images, if it cannot.
pub fn missing_images(shared: &Shared, group: &str, host: &str) -> Option<String> {
    let pair = (group.to_string(), host.to_string());
    missing_images_map(shared, std::slice::from_ref(&pair))
        .get(&pair)
        .map(|m| crate::decide::failover::missing_images_problem(host, m))
}
