//! Which of a group's images a host lacks, from the images its agent
//! reports: a standby without them cannot run the group, so it is not a
//! valid standby (until images are copied to standbys, a later issue).

use std::collections::BTreeMap;

use mesh_proto::v1::ImageSummary;
use mesh_topology::model::Topology;

pub use mesh_proto::images::holds;

/// group -> the images its services run, sorted, once each.
pub fn group_images(t: &Topology) -> BTreeMap<String, Vec<String>> {
    t.groups
        .iter()
        .map(|g| {
            let mut images: Vec<String> = g
                .services
                .iter()
                .map(|s| s.get_ref().image.clone())
                .collect();
            images.sort();
            images.dedup();
            (g.name.get_ref().clone(), images)
        })
        .collect()
}

/// The images of `needed` that `held` lacks; `held` None: the host's
/// images are not known (its agent has not reported), so nothing is
/// counted missing.
pub fn missing(needed: &[String], held: Option<&[ImageSummary]>) -> Vec<String> {
    let Some(held) = held else {
        return Vec::new();
    };
    needed.iter().filter(|i| !holds(held, i)).cloned().collect()
}

/// For `meshctl place`: per (group, host, role) that may run the group, the images the host
/// lacks, each with its size and a host to copy it from where one holds it. `held`: node ->
/// its images (only nodes whose Podman answered).
pub fn missing_lines(
    runs_on: &[(String, String, &'static str)],
    images: &BTreeMap<String, Vec<String>>,
    held: &BTreeMap<String, Vec<ImageSummary>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (group, host, role) in runs_on {
        let Some(needed) = images.get(group) else {
            continue;
        };
        for image in missing(needed, held.get(host).map(|v| v.as_slice())) {
            let source = held.iter().find_map(|(node, list)| {
                list.iter()
                    .find(|i| holds(std::slice::from_ref(i), &image))
                    .map(|i| (node.clone(), i.size_bytes))
            });
            let line = match source {
                Some((from, size)) => format!(
                    "{group} on {host} ({role}): missing {image} ({:.1} GiB, on {from}): meshctl images copy {image} --from {from} --to {host}",
                    size as f64 / (1u64 << 30) as f64
                ),
                None => format!(
                    "{group} on {host} ({role}): missing {image}, which no host holds: build or podman load it there"
                ),
            };
            out.push(if *role == "standby" {
                format!("{line}; until then {host} is not a valid standby")
            } else {
                line
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, names: &[&str]) -> ImageSummary {
        ImageSummary {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            size_bytes: 1,
        }
    }

    #[test]
    fn short_names_match_what_podman_lists() {
        let held = [
            image("abc123def4567890", &["localhost/mesh-demo:latest"]),
            image("fff", &["docker.io/library/redis:7"]),
        ];
        assert!(holds(&held, "mesh-demo"));
        assert!(holds(&held, "mesh-demo:latest"));
        assert!(holds(&held, "localhost/mesh-demo:latest"));
        assert!(holds(&held, "docker.io/library/redis:7"));
        assert!(holds(&held, "abc123def456"));
        assert!(!holds(&held, "mesh-demo:v2"));
        assert!(!holds(&held, "redis"));
        assert_eq!(
            missing(&["mesh-demo".into(), "memory:v3".into()], Some(&held)),
            vec!["memory:v3".to_string()]
        );
        assert!(missing(&["memory:v3".into()], None).is_empty());
    }

    #[test]
    fn missing_lines_name_group_host_size_and_the_copy() {
        let mut held = BTreeMap::new();
        held.insert(
            "mainpc".to_string(),
            vec![image("a1", &["localhost/memory:latest"])],
        );
        held.insert("pc2".to_string(), vec![]);
        let mut images = BTreeMap::new();
        images.insert(
            "memory-system".to_string(),
            vec!["memory".to_string(), "redis:7".to_string()],
        );
        let lines = missing_lines(
            &[
                ("memory-system".into(), "mainpc".into(), "host"),
                ("memory-system".into(), "pc2".into(), "standby"),
            ],
            &images,
            &held,
        );
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0]
            .starts_with("memory-system on mainpc (host): missing redis:7, which no host holds"));
        assert!(lines[1].contains("pc2 (standby): missing memory (0.0 GiB, on mainpc): meshctl images copy memory --from mainpc --to pc2"));
        assert!(lines[1].ends_with("not a valid standby"));
    }
}
