//! Which changes of a host's replicated volumes become entries of the
//! event history: a replica's role, phase, disk state or replication
//! standing, between two of its agent's reports. The first report of a
//! host after the coordinator starts is not news (what it holds is not a
//! change).

use mesh_proto::v1::{DiskState, VolumePhase, VolumeRole, VolumeStatus};

/// "VOLUME_PHASE_HANDED_OVER" -> "handed over".
fn word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_lowercase()
        .replace('_', " ")
}

/// What people read of one replica: "primary attached, UpToDate, in sync".
fn describe(v: &VolumeStatus) -> String {
    let role = VolumeRole::try_from(v.role).unwrap_or(VolumeRole::Unspecified);
    let phase = VolumePhase::try_from(v.phase).unwrap_or(VolumePhase::Unspecified);
    let disk = match DiskState::try_from(v.disk).unwrap_or(DiskState::Unspecified) {
        DiskState::UpToDate => "UpToDate",
        DiskState::Outdated => "Outdated",
        DiskState::Inconsistent => "Inconsistent",
        DiskState::Unspecified => "?",
    };
    let mut out = format!(
        "{} {}, {disk}",
        word(role.as_str_name(), "VOLUME_ROLE_"),
        word(phase.as_str_name(), "VOLUME_PHASE_")
    );
    if role == VolumeRole::Primary {
        out.push_str(", ");
        out.push_str(v.standing().label());
    }
    out
}

/// (group, message) for each replica of `node` whose state changed from
/// `before` (None: no report seen yet) to `after`.
pub fn changes(
    node: &str,
    before: Option<&[VolumeStatus]>,
    after: &[VolumeStatus],
) -> Vec<(String, String)> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in after {
        let old = before
            .iter()
            .find(|o| o.group == v.group && o.name == v.name);
        let (was, now) = (old.map(describe), describe(v));
        match was {
            Some(was) if was == now => {}
            Some(was) => out.push((
                v.group.clone(),
                format!("{node} {}/{}: {was} -> {now}", v.group, v.name),
            )),
            None => out.push((
                v.group.clone(),
                format!("{node} {}/{}: now {now}", v.group, v.name),
            )),
        }
    }
    for o in before {
        if !after.iter().any(|v| v.group == o.group && v.name == o.name) {
            out.push((
                o.group.clone(),
                format!("{node} {}/{}: no longer held here", o.group, o.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::ReplicationStanding;

    fn primary(standing: ReplicationStanding) -> VolumeStatus {
        VolumeStatus {
            group: "memory".into(),
            name: "data".into(),
            role: VolumeRole::Primary as i32,
            phase: VolumePhase::Attached as i32,
            disk: DiskState::UpToDate as i32,
            standing: standing as i32,
            // Lag and sequence numbers change all the time: not news.
            lag_bytes: 4096,
            ..Default::default()
        }
    }

    #[test]
    fn a_standing_change_is_news_and_a_first_report_is_not() {
        let a = [primary(ReplicationStanding::InSync)];
        let mut b = [primary(ReplicationStanding::Resyncing)];
        assert!(changes("pc2", None, &a).is_empty());
        assert_eq!(
            changes("pc2", Some(&a), &b),
            [(
                "memory".to_string(),
                "pc2 memory/data: primary attached, UpToDate, in sync -> primary attached, UpToDate, resyncing".to_string()
            )]
        );
        b[0] = primary(ReplicationStanding::InSync);
        b[0].lag_bytes = 1;
        assert!(changes("pc2", Some(&a), &b).is_empty());
        assert_eq!(
            changes("pc2", Some(&a), &[])[0].1,
            "pc2 memory/data: no longer held here"
        );
        assert_eq!(
            changes("pc3", Some(&[]), &a)[0].1,
            "pc3 memory/data: now primary attached, UpToDate, in sync"
        );
    }
}
