//! Image references as a topology writes them against the names Podman lists: shared by the
//! coordinator (placement, standbys) and meshctl (`meshctl images`).

use crate::v1::ImageSummary;

/// Podman's names for what a topology writes: `demo` is
/// `localhost/demo:latest`, `docker.io/x` is `docker.io/x:latest`.
pub fn normalized(image: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_podmans_full_names() {
        assert_eq!(normalized("demo"), "localhost/demo:latest");
        assert_eq!(normalized("docker.io/x"), "docker.io/x:latest");
        assert_eq!(normalized("localhost/demo:v2"), "localhost/demo:v2");
        let held = [ImageSummary {
            id: "abc123def4567890".into(),
            names: vec!["localhost/mesh-demo:latest".into()],
            size_bytes: 1,
        }];
        assert!(holds(&held, "mesh-demo") && holds(&held, "abc123def456"));
        assert!(!holds(&held, "mesh-demo:v2"));
    }
}
