//! Where the attached volumes are mounted, for the container manager: a
//! container's `managed` mount becomes a bind mount of the volume's mount
//! point, and a container whose volume is not attached yet waits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use mesh_proto::v1::ContainerSpec;

/// group -> volume name -> mount point, shared by the volume host (writes)
/// and the manager (reads). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct VolumeMounts(Arc<RwLock<BTreeMap<(String, String), PathBuf>>>);

impl VolumeMounts {
    /// `group`'s volume `name` is mounted at `at` (None: not attached).
    pub fn set(&self, group: &str, name: &str, at: Option<PathBuf>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let key = (group.to_string(), name.to_string());
        match at {
            Some(path) => map.insert(key, path),
            None => map.remove(&key),
        };
    }

    pub fn get(&self, group: &str, name: &str) -> Option<PathBuf> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(group.to_string(), name.to_string()))
            .cloned()
    }

    /// `spec` with every managed mount pointing at its volume's mount
    /// point, or why it must wait (naming the volumes not attached).
    pub fn resolve(&self, spec: &ContainerSpec) -> Result<ContainerSpec, String> {
        let mut out = spec.clone();
        let mut waiting = Vec::new();
        for v in out.volumes.iter_mut().filter(|v| !v.managed.is_empty()) {
            match self.get(&spec.group, &v.managed) {
                Some(path) => v.source = path.display().to_string(),
                None => waiting.push(v.managed.clone()),
            }
        }
        if waiting.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "waiting for volume {} of group '{}' to attach on this host (see `meshctl volumes`)",
                waiting.join(", "),
                spec.group
            ))
        }
    }

    /// The managed volumes `spec` mounts.
    pub fn uses(spec: &ContainerSpec) -> bool {
        spec.volumes.iter().any(|v| !v.managed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::VolumeMount;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "memory".into(),
            group: "memory-services".into(),
            volumes: vec![
                VolumeMount {
                    source: "/models".into(),
                    target: "/models".into(),
                    read_only: true,
                    ..Default::default()
                },
                VolumeMount {
                    target: "/data".into(),
                    managed: "memory-data".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_managed_mount_waits_for_its_volume_then_points_at_it() {
        let mounts = VolumeMounts::default();
        let err = mounts.resolve(&spec()).unwrap_err();
        assert!(err.contains("memory-data"), "{err}");
        assert!(err.contains("memory-services"), "{err}");
        mounts.set("memory-services", "memory-data", Some("/s/v/mnt".into()));
        let resolved = mounts.resolve(&spec()).unwrap();
        assert_eq!(resolved.volumes[0].source, "/models");
        assert_eq!(resolved.volumes[1].source, "/s/v/mnt");
        assert_eq!(resolved.volumes[1].managed, "memory-data");
        mounts.set("memory-services", "memory-data", None);
        assert!(mounts.resolve(&spec()).is_err());
    }

    #[test]
    fn another_groups_volume_of_the_same_name_does_not_count() {
        let mounts = VolumeMounts::default();
        mounts.set("other", "memory-data", Some("/x".into()));
        assert!(mounts.resolve(&spec()).is_err());
    }
}
