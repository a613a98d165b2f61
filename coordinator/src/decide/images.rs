//! Which of a group's images a host lacks, from the images its agent
//! reports: a standby without them cannot run the group, so it is not a
//! valid standby (until images are copied to standbys, a later issue).

use std::collections::BTreeMap;

use mesh_proto::v1::ImageSummary;
use mesh_topology::model::Topology;

/// Podman's names for what a topology writes: `demo` is
/// `localhost/demo:latest`, `docker.io/x` is `docker.io/x:latest`.
fn normalized(image: &str) -> String {
    let tagged = {
        let last = image.rsplit('/').next().unwrap_or(image);
        if last.contains(':') || last.contains('@') {
            image.to_string()
        } else {
            format!("{image}:latest")
        }
    };
    let first = tagged.split('/').next().unwrap_or("");
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        tagged
    } else {
        format!("localhost/{tagged}")
    }
}

/// Whether `held` holds `image` (by name, or by id when `image` is one).
pub fn holds(held: &[ImageSummary], image: &str) -> bool {
    let want = normalized(image);
    held.iter().any(|i| {
        i.id == image
            || (image.len() >= 12 && i.id.starts_with(image))
            || i.names.iter().any(|n| n == image || normalized(n) == want)
    })
}

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
}
