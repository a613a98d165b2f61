//! Imports the sample compose files in tests/compose/ (modelled on our
//! users' MainPC and PC2 setups) and checks the mapping field by field,
//! the warnings, and that the result is a valid topology.

use std::path::{Path, PathBuf};

use mesh_topology::compose::{import, ComposeFile, Imported, Options};
use mesh_topology::model::Topology;
use mesh_topology::service::ServiceSpec;

/// Where the users keep their compose files (relative binds resolve here).
const PROJECT_DIR: &str = "/opt/ai-system";

fn sample(name: &str) -> ComposeFile {
    let on_disk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compose")
        .join(name);
    let text =
        std::fs::read_to_string(&on_disk).unwrap_or_else(|e| panic!("{}: {e}", on_disk.display()));
    let mut f = ComposeFile::new(Path::new("tests/compose").join(name), text);
    f.base_dir = PathBuf::from(PROJECT_DIR);
    f
}

fn both(options: Options) -> Imported {
    import(
        &[sample("mainpc-compose.yml"), sample("pc2-compose.yml")],
        options,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn parsed(i: &Imported) -> Topology {
    mesh_topology::validate::parse(Path::new("imported.toml"), &i.toml).unwrap_or_else(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        panic!("{}\n{}", lines.join("\n"), i.toml)
    })
}

fn service<'a>(t: &'a Topology, name: &str) -> &'a ServiceSpec {
    t.groups
        .iter()
        .flat_map(|g| g.services.iter().map(|s| s.get_ref()))
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn deps(s: &ServiceSpec) -> Vec<&str> {
    s.depends_on.iter().map(|d| d.get_ref().as_str()).collect()
}

/// The warnings as printed: "FILE: service 'S': KEY: MESSAGE".
fn warning_lines(i: &Imported) -> Vec<String> {
    i.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn groups_follow_the_files() {
    let i = both(Options::default());
    let t = parsed(&i);
    let groups: Vec<(&str, Vec<&str>)> = t
        .groups
        .iter()
        .map(|g| {
            (
                g.name.get_ref().as_str(),
                g.services
                    .iter()
                    .map(|s| s.get_ref().name.as_str())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (
                "mainpc",
                vec![
                    "system-digital-twin",
                    "request-coordinator",
                    "got-tot-agent",
                    "tinyllama-service",
                    "model-manager-agent"
                ]
            ),
            (
                "pc2-memory",
                vec![
                    "memory-orchestrator",
                    "session-memory-agent",
                    "knowledge-base",
                    "translation-service"
                ]
            ),
        ]
    );
    assert_eq!((i.groups, i.services), (2, 9));
    assert!(t.hosts.is_empty(), "validation does not need hosts");
    assert!(i.toml.starts_with("# Topology imported from compose files by `meshctl import compose`:\n#   tests/compose/mainpc-compose.yml -> group 'mainpc'\n#   tests/compose/pc2-compose.yml -> group 'pc2-memory'\n"), "{}", i.toml);
    assert!(i.toml.contains("# Hosts: placement needs the machines"));
    // Same input, same bytes.
    assert_eq!(both(Options::default()).toml, i.toml);
}

#[test]
fn mainpc_fields() {
    let t = parsed(&both(Options::default()));
    let twin = service(&t, "system-digital-twin");
    assert_eq!(twin.image, "localhost/ai-system-core:latest");
    assert_eq!(
        twin.command,
        ["python3", "main_pc_code/agents/system_digital_twin.py"]
    );
    assert_eq!(twin.ports, ["7120:7120", "7121:7121"]);
    assert_eq!(
        twin.volumes,
        [
            "/opt/ai-system/logs:/app/logs",
            "/opt/ai-system/config:/app/config:ro"
        ]
    );
    assert_eq!((twin.cpus, twin.memory_mib), (0.5, 512));
    assert_eq!(
        twin.restart, "always",
        "unless-stopped, from the x-agent anchor"
    );
    assert_eq!(
        twin.env.get("AGENT_NAME").map(String::as_str),
        Some("SystemDigitalTwin")
    );
    let h = twin.health.clone().unwrap_or_default();
    let exec = h.exec.unwrap_or_default();
    assert_eq!(exec[..2], ["sh", "-c"]);
    assert!(exec[2].starts_with("python3 -c \"import zmq;"), "{exec:?}");
    assert_eq!(
        (h.interval_ms, h.timeout_ms, h.start_period_ms, h.retries),
        (30_000, 10_000, 60_000, 3)
    );

    let coordinator = service(&t, "request-coordinator");
    assert_eq!(coordinator.image, "localhost/request-coordinator:latest");
    assert_eq!(
        coordinator.command,
        [
            "python3",
            "main_pc_code/agents/request_coordinator.py",
            "--port",
            "26002"
        ]
    );
    assert_eq!(coordinator.ports, ["26002:26002", "26003:26003"]);
    assert_eq!((coordinator.cpus, coordinator.memory_mib), (1.5, 1024));
    assert_eq!(coordinator.restart, "on-failure");
    assert_eq!(deps(coordinator), ["system-digital-twin"]);
    assert_eq!(
        coordinator.env.get("PC2_HOST").map(String::as_str),
        Some("${PC2_IP:-192.168.100.17}")
    );
    let h = coordinator.health.clone().unwrap_or_default();
    assert_eq!((h.interval_ms, h.timeout_ms), (90_000, 500));

    let got = service(&t, "got-tot-agent");
    assert_eq!(got.gpus, ["0"]);
    assert_eq!(got.vram_mib, 0, "compose does not say; set by hand");
    assert_eq!(got.memory_mib, 8192);
    assert_eq!(
        got.command,
        [
            "sh",
            "-c",
            "python3 main_pc_code/FORMAINPC/GOT_TOTAgent.py 2>&1 | tee -a /app/logs/got.log"
        ]
    );
    assert_eq!(
        got.volumes,
        [
            "/opt/ai-system/models:/app/models:ro",
            "model-cache:/root/.cache/huggingface"
        ]
    );
    assert_eq!(deps(got), ["request-coordinator"]);

    let tiny = service(&t, "tinyllama-service");
    assert_eq!(tiny.gpus, ["all"]);
    assert_eq!(tiny.ports, ["5615:5615"]);
    assert!(tiny.health.is_none());
    assert_eq!(tiny.command[..2], ["sh", "-c"]);

    let mma = service(&t, "model-manager-agent");
    assert_eq!(mma.ports, ["5570:5570", "5571:5571"]);
    assert_eq!(mma.restart, "always");
}

#[test]
fn pc2_fields() {
    let t = parsed(&both(Options::default()));
    let orchestrator = service(&t, "memory-orchestrator");
    assert_eq!(
        orchestrator.volumes,
        [
            "pc2_memory_data:/app/data",
            "/opt/ai-system/config:/app/config:ro"
        ]
    );
    assert_eq!((orchestrator.cpus, orchestrator.memory_mib), (1.0, 1536));
    assert_eq!(
        orchestrator.env.get("REDIS_URL").map(String::as_str),
        Some("redis://localhost:6379/0")
    );
    let h = orchestrator.health.clone().unwrap_or_default();
    assert_eq!((h.interval_ms, h.retries), (15_000, 5));

    let session = service(&t, "session-memory-agent");
    assert_eq!(deps(session), ["memory-orchestrator"]);
    assert_eq!(session.restart, "never", "restart: \"no\" wins over deploy");
    assert_eq!(session.memory_mib, 256);

    let kb = service(&t, "knowledge-base");
    assert_eq!(deps(kb), ["memory-orchestrator", "session-memory-agent"]);
    assert_eq!(kb.restart, "always");
    assert_eq!(
        kb.labels.get("com.example.tier").map(String::as_str),
        Some("memory")
    );

    let translation = service(&t, "translation-service");
    assert_eq!(translation.gpus, ["0"]);
    assert_eq!(translation.ports, ["5595:5595"]);
    let h = translation.health.clone().unwrap_or_default();
    assert_eq!(
        h.exec.unwrap_or_default(),
        ["curl", "-f", "http://localhost:5595/health"]
    );
    assert_eq!(h.start_period_ms, 120_000);
}

#[test]
fn warnings_name_file_service_key_and_why() {
    let i = both(Options::default());
    let lines = warning_lines(&i);
    let m = "tests/compose/mainpc-compose.yml";
    let p = "tests/compose/pc2-compose.yml";
    for expected in [
        format!("{m}: networks: not carried over: the mesh creates no networks"),
        format!("{m}: service 'system-digital-twin': networks: not carried over"),
        format!("{m}: service 'system-digital-twin': logging: not carried over"),
        format!("{m}: service 'system-digital-twin': volumes: relative bind mounts resolved from the compose file's directory: ./logs -> /opt/ai-system/logs, ./config -> /opt/ai-system/config"),
        format!("{m}: service 'system-digital-twin': healthcheck.test: carried over as an exec check, but it looks like a ZeroMQ REQ \"health\" probe on port 7121"),
        format!("{m}: service 'request-coordinator': build: not carried over: the mesh runs images, it does not build them; build it on each host that may run it (`podman build -t localhost/request-coordinator:latest CONTEXT`)"),
        format!("{m}: service 'request-coordinator': ports: '127.0.0.1:26003:26003': the bind address 127.0.0.1 is dropped"),
        format!("{m}: service 'request-coordinator': environment: '${{PC2_IP:-192.168.100.17}}' uses ${{VAR}} interpolation, which the mesh does not do: it is left as is"),
        format!("{m}: service 'request-coordinator': restart: 'on-failure:5': the retry count is not carried over"),
        format!("{m}: service 'got-tot-agent': container_name: not carried over"),
        format!("{m}: service 'got-tot-agent': shm_size: not carried over"),
        format!("{m}: service 'got-tot-agent': deploy.resources.reservations.devices: carried over as gpus = [\"0\"] (GPUs by index on the host); compose does not say how much VRAM it uses: set vram_mib by hand for VRAM-aware placement"),
        format!("{m}: service 'tinyllama-service': runtime: carried over as gpus = [\"all\"]"),
        format!("{m}: service 'tinyllama-service': command: uses shell syntax, so it runs as [\"sh\", \"-c\", ...]"),
        format!("{m}: service 'tinyllama-service': ports: '5616-5620:5616/tcp': published range 5616-5620 means any free port of the range"),
        format!("{m}: service 'tinyllama-service': env_file: not read"),
        format!("{m}: service 'tinyllama-service': healthcheck.disable: the health check is disabled"),
        format!("{m}: service 'tinyllama-service': depends_on: 'request-coordinator': condition service_started becomes \"healthy\""),
        format!("{m}: service 'model-manager-agent': entrypoint: not carried over"),
        format!("{m}: service 'model-manager-agent': network_mode: not carried over"),
        format!("{m}: service 'model-manager-agent': privileged: not carried over"),
        format!("{m}: service 'model-manager-agent': cap_add: not carried over"),
        format!("{m}: service 'model-manager-agent': extra_hosts: not carried over"),
        format!("{p}: volumes.memory-data.driver: not carried over"),
        format!("{p}: service 'memory-orchestrator': deploy.resources.reservations.memory: 512 not carried over"),
        format!("{p}: service 'session_memory_agent': service name: renamed to 'session-memory-agent'"),
        format!("{p}: service 'knowledge-base': deploy.restart_policy.max_attempts: not carried over"),
        format!("{p}: service 'translation-service': ports: '5595:5596' not carried over: host port 5595/tcp is already published by this service"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&expected)),
            "no warning starting {expected:?} in\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), 33, "{}", lines.join("\n"));
    // In file order, then service order.
    let first_pc2 = lines.iter().position(|l| l.starts_with(p)).unwrap_or(0);
    assert!(lines[..first_pc2].iter().all(|l| l.starts_with(m)));
    assert!(lines[first_pc2..].iter().all(|l| l.starts_with(p)));
}

#[test]
fn one_group_per_service_keeps_dependencies_across_groups() {
    let i = both(Options {
        group_per_service: true,
    });
    let t = parsed(&i);
    assert_eq!(t.groups.len(), 9);
    assert!(t
        .groups
        .iter()
        .all(|g| g.services.len() == 1 && g.services[0].get_ref().name == *g.name.get_ref()));
    assert_eq!(
        deps(service(&t, "knowledge-base")),
        ["memory-orchestrator", "session-memory-agent"]
    );
    // A service that publishes one host port twice is still cut to one.
    assert_eq!(service(&t, "translation-service").ports, ["5595:5595"]);
}
