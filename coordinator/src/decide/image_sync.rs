//! Automatic image copies (`[placement] copy_images = true` in the topology): which copies
//! to start now, from where each group may run (its host, its standby), the images each host
//! reports, the copies under way and those that failed recently. Pure: the caller starts the
//! copies and tells the next call what is under way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mesh_proto::v1::ImageSummary;

use crate::decide::images::{holds, missing};

/// A copy to start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Start {
    pub image: String,
    pub from: String,
    pub to: String,
}

/// What the decision looks at.
pub struct Inputs<'a> {
    /// (group, host) pairs where groups may run.
    pub runs_on: &'a [(String, String)],
    /// group -> its images.
    pub images: &'a BTreeMap<String, Vec<String>>,
    /// node -> its images, for nodes whose Podman answered.
    pub held: &'a BTreeMap<String, Vec<ImageSummary>>,
    /// (image, to) under way.
    pub busy: &'a BTreeSet<(String, String)>,
    /// (image, to) -> when a copy of it last failed.
    pub failed: &'a BTreeMap<(String, String), Instant>,
    pub now: Instant,
    /// How long a failed copy waits before it is tried again.
    pub retry_after: Duration,
}

/// The copies to start: each missing image to each host that needs it, from the first host
/// (by name) that holds it, one copy at a time per target host, none already under way or
/// failed within `retry_after`. Hosts whose images are not known are left alone.
pub fn copies_to_start(i: &Inputs<'_>) -> Vec<Start> {
    let mut out: Vec<Start> = Vec::new();
    let busy_targets: BTreeSet<&String> = i.busy.iter().map(|(_, to)| to).collect();
    for (group, host) in i.runs_on {
        let Some(needed) = i.images.get(group) else {
            continue;
        };
        if busy_targets.contains(host) || out.iter().any(|s| &s.to == host) {
            continue;
        }
        for image in missing(needed, i.held.get(host).map(|v| v.as_slice())) {
            let key = (image.clone(), host.clone());
            if i.busy.contains(&key) {
                continue;
            }
            if i.failed
                .get(&key)
                .is_some_and(|at| i.now.saturating_duration_since(*at) < i.retry_after)
            {
                continue;
            }
            let Some(from) = i
                .held
                .iter()
                .find(|(node, list)| *node != host && holds(list, &image))
                .map(|(node, _)| node.clone())
            else {
                continue;
            };
            out.push(Start {
                image,
                from,
                to: host.clone(),
            });
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str) -> ImageSummary {
        ImageSummary {
            id: format!("id-{name}"),
            names: vec![format!("localhost/{name}:latest")],
            size_bytes: 1,
        }
    }

    struct World {
        runs_on: Vec<(String, String)>,
        images: BTreeMap<String, Vec<String>>,
        held: BTreeMap<String, Vec<ImageSummary>>,
    }

    fn world() -> World {
        let mut images = BTreeMap::new();
        images.insert(
            "memory".to_string(),
            vec!["mem".to_string(), "redis".to_string()],
        );
        let mut held = BTreeMap::new();
        held.insert("mainpc".to_string(), vec![summary("mem"), summary("redis")]);
        held.insert("pc2".to_string(), vec![]);
        World {
            runs_on: vec![
                ("memory".into(), "mainpc".into()),
                ("memory".into(), "pc2".into()),
            ],
            images,
            held,
        }
    }

    fn decide(
        w: &World,
        busy: &BTreeSet<(String, String)>,
        failed: &BTreeMap<(String, String), Instant>,
        now: Instant,
    ) -> Vec<Start> {
        copies_to_start(&Inputs {
            runs_on: &w.runs_on,
            images: &w.images,
            held: &w.held,
            busy,
            failed,
            now,
            retry_after: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_standby_without_the_images_gets_one_copy_at_a_time() {
        let w = world();
        let now = Instant::now();
        let starts = decide(&w, &BTreeSet::new(), &BTreeMap::new(), now);
        assert_eq!(
            starts,
            vec![Start {
                image: "mem".into(),
                from: "mainpc".into(),
                to: "pc2".into()
            }]
        );
        // While it runs, nothing more for pc2.
        let busy = BTreeSet::from([("mem".to_string(), "pc2".to_string())]);
        assert!(decide(&w, &busy, &BTreeMap::new(), now).is_empty());
    }

    #[test]
    fn a_failed_copy_waits_before_it_is_tried_again_and_then_the_next_image_goes() {
        let w = world();
        let t0 = Instant::now();
        let failed = BTreeMap::from([(("mem".to_string(), "pc2".to_string()), t0)]);
        let starts = decide(&w, &BTreeSet::new(), &failed, t0 + Duration::from_secs(1));
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].image, "redis", "the other image is not held up");
        let starts = decide(&w, &BTreeSet::new(), &failed, t0 + Duration::from_secs(61));
        assert_eq!(starts[0].image, "mem");
    }

    #[test]
    fn nothing_when_no_host_holds_it_or_the_target_is_unknown() {
        let mut w = world();
        w.held.insert("mainpc".into(), vec![]);
        assert!(decide(&w, &BTreeSet::new(), &BTreeMap::new(), Instant::now()).is_empty());
        let mut w = world();
        w.held.remove("pc2");
        assert!(decide(&w, &BTreeSet::new(), &BTreeMap::new(), Instant::now()).is_empty());
    }
}
