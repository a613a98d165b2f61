//! Planned switchovers (`meshctl failover GROUP`), executed: persist the
//! handover request, stop the group's services on its primary, wait for
//! its agent to hand every volume over (detached, every write flushed to
//! the standby), then promote the standby the way a failover does. What
//! is persisted (the records' `handover` flag, the applied placement
//! without the group) lets a restarted coordinator carry on where it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_proto::v1::VolumeStatus;

use crate::decide::failover::DEFAULT_LEASE;
use crate::decide::failover_phases::{Cause, Tracked};
use crate::decide::switchover::{self, Move, Progress};
use crate::decide::volumes::{RecordKey, VolumeRecord};
use crate::state::registry::Now;
use crate::state::Shared;

/// How long the primary may take to stop and hand over before the
/// switchover is called off and the group restarted where it was.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Begins a switchover of `group` to `to` (empty: its standby), or says
/// why it cannot (nothing changed then).
pub fn start(shared: &Shared, group: &str, to: &str) -> Result<Move, String> {
    start_for(shared, group, to, Cause::Switchover)
}

/// [`start`] for `cause` (a switchover asked for, or an automatic failback).
pub fn start_for(shared: &Shared, group: &str, to: &str, cause: Cause) -> Result<Move, String> {
    let records = shared.volumes.records();
    let reports = shared.volumes.reports();
    let silence = shared.registry().silences(Instant::now());
    let (defs, _) = shared.topology.volume_view();
    let lease = defs
        .iter()
        .find(|d| d.group == group)
        .map_or(DEFAULT_LEASE, |d| d.lease);
    let m = switchover::check(&records, &reports, &silence, lease, group, to)?;
    if let Some(missing) = crate::state::failover::missing_images(shared, group, &m.to) {
        return Err(missing);
    }
    let span = tracing::info_span!("switchover", group = %m.group, from = %m.from, to = %m.to, epoch = m.epoch);
    let _e = span.enter();
    shared
        .volumes
        .save(switchover::begin(&records, &m))
        .map_err(|e| format!("cannot record the switchover, nothing changed: {e}"))?;
    shared.failover.track(
        group,
        Tracked::new(
            cause,
            &m.from,
            &m.to,
            m.epoch + 1,
            Instant::now(),
            Now::system().unix_ms,
        ),
    );
    if let Err(e) = crate::rpc::topology_api::stop_group(shared, group) {
        // Called off at once: the primary keeps the group.
        let _ = shared.volumes.save(switchover::abort(&records, group));
        return Err(format!("cannot stop the group's services: {e}"));
    }
    tracing::info!("switchover: stopping the group's services; its volumes are handed over next");
    shared.events.record(
        cause.label(),
        &m.from,
        group,
        format!(
            "{} of {group} from {} to {} begun: stopping its services, then handing its volumes over",
            cause.label(),
            m.from,
            m.to
        ),
    );
    Ok(m)
}

/// One tick of every switchover under way.
pub fn drive(
    shared: &Shared,
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    now: Instant,
) {
    let last = shared.failover.last();
    for (group, progress) in switchover::progress(records, reports) {
        let tracked = last
            .get(&group)
            .filter(|t| t.cause != Cause::PrimarySilent && !t.done());
        if tracked.is_none() {
            // Begun by an earlier run of this coordinator: follow it from now.
            if let Some(r) = records.values().find(|r| r.group == group) {
                shared.failover.track(
                    &group,
                    Tracked::new(
                        Cause::Switchover,
                        &r.primary,
                        &r.standby,
                        r.epoch + 1,
                        now,
                        Now::system().unix_ms,
                    ),
                );
            }
        }
        match progress {
            Progress::Promote(p) => {
                shared.failover.update(&group, |t| t.mark("stop", now));
                let rs = switchover::promoted(records, &p);
                if super::failover::promote_group(
                    shared,
                    &p,
                    rs,
                    "switchover: every write handed over",
                ) {
                    shared
                        .failover
                        .update(&group, |t| t.mark("promote", Instant::now()));
                }
            }
            Progress::Stopping { waiting_on } => {
                let overdue =
                    tracked.is_some_and(|t| now.duration_since(t.started) > HANDOVER_TIMEOUT);
                if overdue {
                    let why = format!(
                        "called off after {} s waiting for {}; the group goes back up on its primary",
                        HANDOVER_TIMEOUT.as_secs(),
                        waiting_on.join(", ")
                    );
                    tracing::error!(group = %group, "switchover: {why}");
                    if let Err(e) = shared.volumes.save(switchover::abort(records, &group)) {
                        tracing::error!(group = %group, error = %e, "switchover: cannot record calling it off; retrying next tick");
                        continue;
                    }
                    let from = records
                        .values()
                        .find(|r| r.group == group)
                        .map(|r| r.primary.clone())
                        .unwrap_or_default();
                    if let Err(e) = crate::rpc::topology_api::fail_over(shared, &group, &from) {
                        tracing::error!(group = %group, error = %e, "switchover: cannot restart the group on its primary");
                    }
                    shared.events.record(
                        "switchover",
                        &from,
                        &group,
                        format!("switchover of {group} {why}"),
                    );
                    shared.failover.update(&group, |t| t.error = why);
                }
            }
        }
    }
}

/// Automatic failbacks: takes each `failback = "auto"` group home once its
/// home host has been a valid standby for the hold-down.
pub fn failback(
    shared: &Shared,
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    silence: &BTreeMap<String, Duration>,
    now: Instant,
) {
    let (defs, _) = shared.topology.volume_view();
    let since = crate::state::failover::lock(&shared.failover.failback_since).clone();
    let (next, moves) = switchover::failbacks(records, reports, silence, &defs, &since, now);
    *crate::state::failover::lock(&shared.failover.failback_since) = next;
    for m in moves {
        match start_for(shared, &m.group, &m.to, Cause::Failback) {
            Ok(_) => {
                tracing::warn!(group = %m.group, from = %m.from, to = %m.to, "failback: the group's home host has been an UpToDate standby for the hold-down; switching it over home")
            }
            Err(e) => {
                tracing::warn!(group = %m.group, error = %e, "failback: cannot switch the group home yet")
            }
        }
    }
}
