//! Containers and the volumes they mount: a volume attached again (the
//! agent restarted: the old FUSE server died with it, so a running
//! container's mount is dead) restarts the containers that mount it and
//! started before the attach, so they see the new mount.

use crate::containers::machine::{self, Command};
use crate::containers::spec::container_name;
use crate::runtime::ContainerRuntime;

use super::Manager;

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    /// `group`'s volume `volume` was attached at `unix_s`.
    pub fn volume_attached(&mut self, group: &str, volume: &str, unix_s: i64) {
        self.volume_attached_at
            .insert((group.to_string(), volume.to_string()), unix_s);
    }

    /// Restarts every desired container that Podman shows running since
    /// before the last attach of a volume it mounts. Returns their names.
    pub fn restart_stale_mounts(&mut self) -> Vec<String> {
        let Some(desired) = &self.desired else {
            return Vec::new();
        };
        let mut stale = Vec::new();
        for s in &desired.containers {
            let attached = s
                .volumes
                .iter()
                .filter_map(|v| {
                    self.volume_attached_at
                        .get(&(s.group.clone(), v.managed.clone()))
                })
                .max();
            let Some(&attached) = attached else { continue };
            let podman = container_name(&s.name);
            let before = self.observed.iter().any(|o| {
                o.podman_name == podman && o.status == "running" && o.started_at < attached
            });
            if before {
                stale.push(s.name.clone());
            }
        }
        let mut restarted = Vec::new();
        for name in stale {
            let Some(t) = self.tracked.get_mut(&name) else {
                continue;
            };
            if let Some(m) = machine::command(&t.machine, Command::Restart) {
                tracing::info!(container = %name, "it started before its volume was attached again; restarting it onto the new mount");
                t.machine = m;
                restarted.push(name);
            }
        }
        restarted
    }
}
