use super::*;
use mesh_proto::v1::{Gpu, GpuReport, HostInventory};

const TOPOLOGY: &str = r#"
[[hosts]]
name = "mainpc"
labels = { gpu = "true" }
gpus = [{ name = "RTX 4090", vram_mib = 24576 }]

[[hosts]]
name = "pc2"
labels = { gpu = "true" }
gpus = [{ name = "RTX 3060", vram_mib = 12288 }]

[[groups]]
name = "core"
[[groups.services]]
name = "registry"
image = "localhost/mesh-demo:latest"

[[groups]]
name = "memory"
prefer = ["pc2"]
[[groups.services]]
name = "orchestrator"
image = "localhost/mesh-demo:latest"
depends_on = ["registry"]

[[groups]]
name = "llm"
[[groups.services]]
name = "got"
image = "localhost/mesh-demo:latest"
vram_mib = 16000
"#;

fn node(name: &str, state: NodeState, gpu_free_mib: Option<u64>) -> v1::Node {
    v1::Node {
        name: name.into(),
        state: state as i32,
        inventory: Some(HostInventory {
            cpu_count: 8,
            memory_total_bytes: 32 * 1024 * MIB,
            gpus: gpu_free_mib.map(|free| GpuReport {
                source: GpuSource::Nvml as i32,
                gpus: vec![Gpu {
                    memory_total_bytes: 24576 * MIB,
                    memory_free_bytes: free * MIB,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn live_state_decides_capacity_and_availability() {
    let t = parse("t.toml", TOPOLOGY).expect("valid");
    let nodes = vec![
        node("mainpc", NodeState::Ready, Some(6000)),
        node("pc2", NodeState::Down, None),
    ];
    let (hosts, notes) = host_states(&t, &nodes, &[]);
    assert_eq!(hosts[0].gpus_mib, vec![6000], "measured free VRAM wins");
    assert_eq!(hosts[0].cpus, 8.0);
    assert!(!hosts[1].available);
    assert_eq!(notes["pc2"], "pc2 is down");
    let (hosts, notes) = host_states(&t, &[], &["pc2".to_string()]);
    assert!(!hosts[0].available && !hosts[1].available);
    assert!(notes["mainpc"].contains("has not registered"));
    assert_eq!(notes["pc2"], "pc2 is gone (what-if)");
}

#[test]
fn plan_reports_changes_budgets_and_reasons() {
    let t = parse("t.toml", TOPOLOGY).expect("valid");
    let nodes = vec![
        node("mainpc", NodeState::Ready, Some(6000)),
        node("pc2", NodeState::Ready, None),
    ];
    let (hosts, notes) = host_states(&t, &nodes, &[]);
    let groups = placement::group_needs(&t);
    let plan = placement::plan(&hosts, &groups, &BTreeMap::new(), 512);
    let planned = planned_services(&t, &plan, &BTreeMap::new()).expect("valid sets");
    let p = to_proto(&PlanInputs {
        source_name: "t.toml",
        topology: &t,
        hosts: &hosts,
        host_notes: &notes,
        groups: &groups,
        plan: &plan,
        planned: &planned,
        previous: None,
        fail: &[],
        explain_group: "llm",
    });
    assert_eq!(p.placements["memory"], "pc2");
    assert_eq!(p.unplaced.len(), 1);
    assert_eq!(p.unplaced[0].group, "llm");
    assert!(
        p.unplaced[0]
            .reasons
            .iter()
            .any(|r| r
                == "mainpc has 5.4 GiB free on GPU0 (needs 15.6 GiB on one GPU, 15.6 GiB in all)"),
        "{:?}",
        p.unplaced[0].reasons
    );
    let mainpc = &p.hosts[0];
    assert_eq!(mainpc.gpus[0].usable_mib, 6000 - 512);
    assert_eq!(mainpc.gpus[0].source, "nvml");
    assert_eq!(p.hosts[1].gpus[0].name, "RTX 3060");
    assert!(p.explain[0].starts_with("llm needs"));
    assert!(p.changes.iter().all(|c| c.kind == ChangeKind::Start as i32));
    // Applied and planned again with one spec changed: keep + update.
    let previous = spec_hashes(&planned);
    let mut changed = planned.clone();
    changed[0].spec.env.insert("X".into(), "1".into());
    let again = placement::plan(&hosts, &groups, &plan.placements, 512);
    let p = to_proto(&PlanInputs {
        source_name: "t.toml",
        topology: &t,
        hosts: &hosts,
        host_notes: &notes,
        groups: &groups,
        plan: &again,
        planned: &changed,
        previous: Some(&previous),
        fail: &[],
        explain_group: "",
    });
    let kinds: BTreeMap<&str, i32> = p
        .changes
        .iter()
        .map(|c| (c.group.as_str(), c.kind))
        .collect();
    assert_eq!(kinds["core"], ChangeKind::Update as i32);
    assert_eq!(kinds["memory"], ChangeKind::Keep as i32);
}

#[test]
fn one_port_twice_on_a_host_is_refused() {
    // registry (core) and orchestrator (memory) both publish 7100.
    let text = TOPOLOGY
        .replace(
            "name = \"registry\"\nimage = \"localhost/mesh-demo:latest\"",
            "name = \"registry\"\nimage = \"localhost/mesh-demo:latest\"\nports = [\"7100:5555\"]",
        )
        .replace(
            "name = \"orchestrator\"\nimage = \"localhost/mesh-demo:latest\"",
            "name = \"orchestrator\"\nimage = \"localhost/mesh-demo:latest\"\nports = [\"7100:6000\"]",
        );
    let t = parse("t.toml", &text).expect("valid: on different hosts they do not clash");
    let placed = |core: &str, memory: &str| Plan {
        placements: [
            ("core".to_string(), core.to_string()),
            ("memory".to_string(), memory.to_string()),
        ]
        .into(),
        ..Plan::default()
    };
    assert!(planned_services(&t, &placed("mainpc", "pc2"), &BTreeMap::new()).is_ok());
    let problems = planned_services(&t, &placed("pc2", "pc2"), &BTreeMap::new())
        .expect_err("two services publishing 7100 on pc2");
    assert_eq!(
        problems,
        vec!["on pc2: host port 7100/tcp is claimed by both registry and orchestrator".to_string()]
    );
}

#[test]
fn groups_run_where_the_agents_report_their_containers() {
    let observed: Observed = [(
        "pc2".to_string(),
        vec![v1::ContainerStatus {
            name: "x".into(),
            group: "memory".into(),
            ..Default::default()
        }],
    )]
    .into();
    let current = current_placement(None, &observed);
    assert_eq!(current["memory"], "pc2");
    let stored: BTreeMap<String, String> = [("memory".to_string(), "mainpc".to_string())].into();
    let current = current_placement(Some(&stored), &observed);
    assert_eq!(current["memory"], "mainpc", "the applied placement wins");
}
