//! The example topology (examples/ai-system.toml, the users' MainPC/PC2
//! system on the demo image) validates, keeps its conventions, and places
//! every group where the users run it: memory on pc2, the models on mainpc.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mesh_topology::model::Topology;
use mesh_topology::placement::{group_needs, hosts_from_topology, plan, HostState};
use mesh_topology::service::{parse_port, ServiceSpec, VolumeEntry};

fn example() -> Topology {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ai-system.toml");
    mesh_topology::validate::load(&path).unwrap_or_else(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

fn services(t: &Topology) -> Vec<&ServiceSpec> {
    t.groups
        .iter()
        .flat_map(|g| g.services.iter().map(|s| s.get_ref()))
        .collect()
}

fn placements(t: &Topology, hosts: &[HostState]) -> BTreeMap<String, String> {
    let p = plan(
        hosts,
        &group_needs(t),
        &BTreeMap::new(),
        t.placement.vram_headroom_mib,
    );
    assert!(p.unplaced.is_empty(), "unplaced: {:?}", p.unplaced);
    p.placements
}

#[test]
fn every_group_is_placed_where_the_users_run_it() {
    let t = example();
    let groups: Vec<&str> = t.groups.iter().map(|g| g.name.get_ref().as_str()).collect();
    assert_eq!(
        groups,
        [
            "core-services",
            "memory-system",
            "gpu-services",
            "system-services",
            "learning"
        ]
    );
    let placed = placements(&t, &hosts_from_topology(&t));
    assert_eq!(placed.len(), groups.len(), "{placed:?}");
    assert_eq!(placed["memory-system"], "pc2");
    assert_eq!(placed["gpu-services"], "mainpc");
    assert_eq!(placed["core-services"], "mainpc");
}

#[test]
fn either_host_alone_can_take_everything() {
    let t = example();
    for gone in ["mainpc", "pc2"] {
        let hosts: Vec<HostState> = hosts_from_topology(&t)
            .into_iter()
            .map(|mut h| {
                h.available = h.name != gone;
                h
            })
            .collect();
        let placed = placements(&t, &hosts);
        assert!(placed.values().all(|h| h != gone), "{gone}: {placed:?}");
    }
}

#[test]
fn services_follow_the_demo_conventions() {
    let t = example();
    let all = services(&t);
    assert_eq!(all.len(), 14);
    for s in &all {
        assert_eq!(s.image, "localhost/mesh-demo:latest", "{}", s.name);
        assert_eq!(
            s.env.get("DEMO_NAME").map(String::as_str),
            Some(s.name.as_str())
        );
        let mode = s.env.get("DEMO_MODE").map(String::as_str).unwrap_or("");
        assert!(matches!(mode, "rep" | "router" | "memory"), "{}", s.name);
        let zmq = s.health.as_ref().and_then(|h| h.zmq.as_ref());
        assert_eq!(zmq.map(|z| z.port), Some(5555), "{}", s.name);
        assert!((0.1..=0.5).contains(&s.cpus), "{}: {}", s.name, s.cpus);
        assert!((32..=64).contains(&s.memory_mib), "{}", s.name);
        assert!(s.gpus.is_empty(), "{}: test machines have no GPU", s.name);
        assert_eq!(s.ports.len(), 1, "{}", s.name);
        let port = parse_port(&s.ports[0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(port.container, 5555, "{}", s.name);
    }
    // Host ports are unique in the whole file: any group may move anywhere.
    let ports: BTreeSet<String> = all.iter().map(|s| s.ports[0].clone()).collect();
    assert_eq!(ports.len(), all.len());

    let vram: BTreeMap<&str, u64> = all
        .iter()
        .filter(|s| s.vram_mib > 0)
        .map(|s| (s.name.as_str(), s.vram_mib))
        .collect();
    assert_eq!(
        vram,
        BTreeMap::from([
            ("got-tot-reasoning", 4096),
            ("nllb-translation", 2048),
            ("phi-translation", 2048),
            ("tinyllama", 3072)
        ])
    );
}

#[test]
fn memory_services_are_durable_singletons_behind_bridges() {
    let t = example();
    let memory = t
        .groups
        .iter()
        .find(|g| g.name.get_ref() == "memory-system")
        .unwrap_or_else(|| panic!("no memory-system"));
    let failover = memory
        .failover
        .clone()
        .unwrap_or_else(|| panic!("no failover"));
    assert_eq!(failover.policy, "singleton");
    assert_eq!(failover.fallbacks, ["mainpc"]);
    let mut bridged = BTreeMap::new();
    for b in &t.bridges {
        bridged.insert(b.service.get_ref().as_str(), (b.port, b.pattern.as_str()));
    }
    for s in memory.services.iter().map(|s| s.get_ref()) {
        assert_eq!(s.env.get("DEMO_MODE").map(String::as_str), Some("memory"));
        assert!(
            s.volumes.len() == 1
                && matches!(&s.volumes[0], VolumeEntry::Managed(m) if m.target == "/data" && m.replicate),
            "{}",
            s.name
        );
        let host_port = parse_port(&s.ports[0]).map(|p| p.host).unwrap_or(0);
        assert_eq!(
            bridged.get(s.name.as_str()),
            Some(&(host_port, "rep")),
            "{}",
            s.name
        );
    }
    assert_eq!(bridged.len(), memory.services.len());
}

#[test]
fn everything_depends_back_to_the_registry() {
    let t = example();
    let deps: BTreeMap<&str, Vec<&str>> = services(&t)
        .into_iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.depends_on.iter().map(|d| d.get_ref().as_str()).collect(),
            )
        })
        .collect();
    for name in deps.keys() {
        let mut seen = BTreeSet::new();
        let mut stack = vec![*name];
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                stack.extend(deps.get(n).into_iter().flatten().copied());
            }
        }
        assert!(
            seen.contains("service-registry"),
            "{name} does not reach the registry"
        );
    }
    for s in ["session-memory", "knowledge-base"] {
        assert_eq!(deps[s], ["memory-orchestrator"]);
    }
    for s in [
        "got-tot-reasoning",
        "tinyllama",
        "nllb-translation",
        "phi-translation",
    ] {
        assert_eq!(deps[s], ["request-coordinator"]);
    }
}

#[test]
fn the_registry_group_counts_everything_else_as_dependents() {
    let t = mesh_topology::validate::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ai-system.toml"),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let needs = mesh_topology::placement::group_needs(&t);
    let of = |g: &str| needs.iter().find(|n| n.name == g).map(|n| n.dependents);
    // Every service outside core-services leads back to the registry.
    assert_eq!(of("core-services"), Some(11));
    assert_eq!(of("learning"), Some(0));
}
