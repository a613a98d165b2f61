use super::*;

const GOOD: &str = r#"
[[hosts]]
name = "mainpc"
labels = { role = "mainpc", gpu = "true" }
memory_mib = 65536
gpus = [{ name = "RTX 4090", vram_mib = 24576 }]

[[hosts]]
name = "pc2"
labels = { role = "pc2", gpu = "true" }
memory_mib = 32768
gpus = [{ name = "RTX 3060", vram_mib = 12288 }]

[[groups]]
name = "memory-system"
prefer = ["pc2"]

[[groups.services]]
name = "memory-orchestrator"
image = "localhost/mesh-demo:latest"
ports = ["7140:5555"]

[[groups.services]]
name = "session-memory"
image = "localhost/mesh-demo:latest"
depends_on = ["memory-orchestrator"]
"#;

fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("t.toml"), text) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn good_file_passes() {
    let t = parse(Path::new("t.toml"), GOOD).unwrap();
    assert_eq!(t.groups[0].services.len(), 2);
    assert_eq!(t.placement.vram_headroom_mib, 512);
}

#[test]
fn unknown_key_names_position_and_nearest() {
    let text = GOOD.replace("prefer = [\"pc2\"]", "prefr = [\"pc2\"]");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:16:1:"), "{}", e[0]);
    assert!(
        e[0].contains("unknown field `prefr`") && e[0].contains("did you mean `prefer`?"),
        "{}",
        e[0]
    );
}

#[test]
fn every_problem_in_one_run_with_lines() {
    let text = format!(
        "{GOOD}
[[groups]]
name = \"memory-system\"
prefer = [\"pc3\"]
anti_affinity = [\"gpu-servics\"]
constraints = {{ role = \"pc9\" }}

[[groups.services]]
name = \"a\"
image = \"img\"
ports = [\"7000:1\"]
depends_on = [\"b\", \"memory-orchestrater\"]
vram_mib = 40000

[[groups.services]]
name = \"b\"
image = \"img\"
ports = [\"7000:2\"]
depends_on = [\"a\"]

[[bridges]]
service = \"memory-orchestrato\"
port = 5555
pattern = \"req\"

[[bridges]]
service = \"a\"
port = 7001
in_flight = \"sometimes\"

[[bridges]]
service = \"b\"
port = 7001
"
    );
    let e = errors(&text).join("\n");
    for needle in [
        "group 'memory-system' is declared twice",
        "prefers unknown host 'pc3'",
        "did you mean 'pc2'?",
        "anti-affine to unknown group 'gpu-servics'",
        "needs labels role=pc9 that no declared host has",
        "both claim host port 7000/tcp",
        "depends on unknown service 'memory-orchestrater'",
        "did you mean 'memory-orchestrator'?",
        "needs 40000 MiB VRAM on one GPU; the largest declared GPU has 24576 MiB",
        "dependency cycle: a -> b -> a",
        "bridge for unknown service 'memory-orchestrato'",
        "bridge pattern 'req'",
        "bridge in_flight 'sometimes' is not error or retry-once",
        "bridge port 7001: service 'a' does not publish host port 7001",
        "add ports = [\"7001:CONTAINER_PORT\"] to the service",
        "bridges for 'a' and 'b' both use port 7001",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in\n{e}");
    }
    // Positions are real lines of the file.
    assert!(
        e.lines()
            .all(|l| l.starts_with("t.toml:") || l.starts_with("  hint:")),
        "{e}"
    );
}

#[test]
fn longer_cycles_are_printed_once() {
    let text = r#"
[[groups]]
name = "g"
[[groups.services]]
name = "x"
image = "i"
depends_on = ["y"]
[[groups.services]]
name = "y"
image = "i"
depends_on = ["z"]
[[groups.services]]
name = "z"
image = "i"
depends_on = ["x"]
"#;
    let e = errors(text);
    let cycles: Vec<&String> = e.iter().filter(|l| l.contains("cycle")).collect();
    assert_eq!(cycles.len(), 1, "{e:?}");
    assert!(cycles[0].contains("x -> y -> z -> x"), "{}", cycles[0]);
}

#[test]
fn helpers() {
    assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
    assert_eq!(distance("prefr", "prefer"), 1);
    assert_eq!(nearest("imgae", ["name", "image", "ports"]), Some("image"));
    assert_eq!(nearest("zzzzzz", ["name", "image"]), None);
}

const REPLICATED: &str = r#"
[[hosts]]
name = "pc2"
[[hosts]]
name = "mainpc"

[[groups]]
name = "memory-system"
failover = { policy = "singleton", fallbacks = ["mainpc"] }

[[groups.services]]
name = "memory-orchestrator"
image = "localhost/mesh-demo:latest"
volumes = ["models:/models:ro", { name = "memory-orchestrator-data", target = "/data", size_mib = 1024, replicate = true }]
"#;

#[test]
fn replicated_volumes_read_next_to_mounts() {
    let t = parse(Path::new("t.toml"), REPLICATED).unwrap();
    let volumes = &t.groups[0].services[0].get_ref().volumes;
    assert_eq!(volumes[0], "models:/models:ro");
    match &volumes[1] {
        crate::service::VolumeEntry::Managed(m) => {
            assert_eq!(
                (m.name.as_str(), m.target.as_str(), m.size_mib, m.replicate),
                ("memory-orchestrator-data", "/data", 1024, true)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replicated_volume_needs_a_failover_group_and_sane_keys() {
    let text = REPLICATED.replace(
        "failover = { policy = \"singleton\", fallbacks = [\"mainpc\"] }\n",
        "",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:10:1:"), "{}", e[0]);
    assert!(e[0].contains("has no failover policy"), "{}", e[0]);
    assert!(e[0].contains("policy = \"singleton\""), "{}", e[0]);

    let text = REPLICATED
        .replace("target = \"/data\"", "target = \"data\"")
        .replace("size_mib = 1024", "size_mib = 4")
        .replace("memory-orchestrator-data", "Data!");
    let e = errors(&text).join("\n");
    for needle in [
        "volume name 'Data!'",
        "must be an absolute path",
        "too small",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }

    // A typo in the table is named with its place, like every other key.
    let text = REPLICATED.replace("replicate = true", "replicat = true");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:14:"), "{}", e[0]);
    assert!(e[0].contains("replicat"), "{}", e[0]);

    // The same name twice in one topology.
    let text = format!(
        "{REPLICATED}\n[[groups.services]]\nname = \"other\"\nimage = \"i\"\nvolumes = [{{ name = \"memory-orchestrator-data\", target = \"/d\", size_mib = 64 }}]\n"
    );
    let e = errors(&text).join("\n");
    assert!(e.contains("declared twice"), "{e}");
}

#[test]
fn failback_is_manual_or_auto_with_a_sane_hold_down() {
    let ok = REPLICATED.replace(
        "fallbacks = [\"mainpc\"] }",
        "fallbacks = [\"mainpc\"], failback = \"auto\", failback_hold_ms = 30000 }",
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let bad = REPLICATED.replace(
        "fallbacks = [\"mainpc\"] }",
        "fallbacks = [\"mainpc\"], failback = \"always\", failback_hold_ms = 5 }",
    );
    let e = errors(&bad).join("\n");
    assert!(e.contains("failback = 'always' is unknown"), "{e}");
    assert!(e.contains("failback_hold_ms = 5 is out of range"), "{e}");
}
