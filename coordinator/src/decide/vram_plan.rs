//! The VRAM the applied placement plans on each GPU: each placed group's
//! needs on the GPU indices the plan chose for them when it was applied.
//! What `/metrics` and the dashboard show as "planned" next to a GPU's
//! measured used and free memory.

use std::collections::BTreeMap;

use mesh_topology::placement::GroupNeeds;

/// (host, GPU index) -> planned MiB. A group whose GPU indices were not
/// recorded (a store from before they were) counts its needs on GPU 0.
pub fn planned_vram(
    groups: &[GroupNeeds],
    placement: &BTreeMap<String, String>,
    gpus: &BTreeMap<String, Vec<usize>>,
) -> BTreeMap<(String, usize), u64> {
    let mut out = BTreeMap::new();
    for g in groups {
        let Some(host) = placement.get(&g.name) else {
            continue;
        };
        let at = gpus.get(&g.name).map(Vec::as_slice).unwrap_or(&[]);
        for (i, need) in g.vram_mib.iter().enumerate() {
            let index = at.get(i).copied().unwrap_or(0);
            *out.entry((host.clone(), index)).or_insert(0) += need;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(name: &str, vram: &[u64]) -> GroupNeeds {
        GroupNeeds {
            name: name.into(),
            constraints: BTreeMap::new(),
            prefer: Vec::new(),
            anti_affinity: Vec::new(),
            cpus: 0.0,
            memory_mib: 0,
            vram_mib: vram.to_vec(),
            host_ports: Vec::new(),
            dependents: 0,
        }
    }

    #[test]
    fn needs_add_up_on_the_gpus_the_plan_chose() {
        let groups = [
            needs("llm", &[8000, 4000]),
            needs("tts", &[2000]),
            needs("web", &[]),
            needs("unplaced", &[9000]),
        ];
        let placement: BTreeMap<String, String> = [
            ("llm".to_string(), "pc2".to_string()),
            ("tts".to_string(), "pc2".to_string()),
            ("web".to_string(), "mainpc".to_string()),
        ]
        .into();
        let gpus: BTreeMap<String, Vec<usize>> = [("llm".to_string(), vec![0, 1])].into();
        let planned = planned_vram(&groups, &placement, &gpus);
        let want: BTreeMap<(String, usize), u64> = [
            (("pc2".to_string(), 0), 8000 + 2000),
            (("pc2".to_string(), 1), 4000),
        ]
        .into();
        assert_eq!(planned, want);
    }
}
