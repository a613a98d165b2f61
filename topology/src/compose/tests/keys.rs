//! Each compose key: what is carried over, and the warning for what is not.

use super::*;

#[test]
fn commands_split_or_run_in_a_shell() {
    let i = import_one(
        r#"
services:
  a: { image: i, command: "python3 agent.py --name 'Memory Agent'" }
  b: { image: i, command: "python3 agent.py > /log 2>&1" }
  c: { image: i, command: ["python3", "-u", 7] }
  d: { image: i, command: 'sh -c "echo $$HOME && run"' }
"#,
    );
    assert_eq!(
        service(&i, "a").command,
        ["python3", "agent.py", "--name", "Memory Agent"]
    );
    assert_eq!(
        service(&i, "b").command,
        ["sh", "-c", "python3 agent.py > /log 2>&1"]
    );
    assert!(warned(&i, "b", "command", "image needs a shell"));
    assert_eq!(service(&i, "c").command, ["python3", "-u", "7"]);
    // $$ is compose's escape for $; inside quotes it reaches sh as is.
    assert_eq!(service(&i, "d").command, ["sh", "-c", "echo $HOME && run"]);
    assert!(!i
        .warnings
        .iter()
        .any(|w| w.message.contains("interpolation")));
}

#[test]
fn ports_in_every_form() {
    let i = import_one(
        r#"
services:
  a:
    image: i
    ports:
      - "7120:7120"
      - 5555
      - "127.0.0.1:7121:7121"
      - "[::1]:7122:7122"
      - "9000:9000/udp"
      - "7200-7201:8200-8201"
      - "7300-7310:80"
      - "127.0.0.1::7400"
      - "7500:7500/sctp"
      - target: 7600
        published: 7601
      - target: 7700
        published: "7700-7705"
      - target: 7800
        published: 7800
        host_ip: 10.0.0.1
        protocol: udp
        app_protocol: http
"#,
    );
    assert_eq!(
        service(&i, "a").ports,
        [
            "7120:7120",
            "5555",
            "7121:7121",
            "7122:7122",
            "9000:9000/udp",
            "7200:8200",
            "7201:8201",
            "7400",
            "7601:7600",
            "7800:7800/udp"
        ]
    );
    for needle in [
        "'127.0.0.1:7121:7121': the bind address 127.0.0.1 is dropped",
        "the bind address ::1 is dropped",
        "'7300-7310:80': a host range",
        "compose picks a random host port",
        "protocol sctp is not carried over",
        "published range 7700-7705",
        "the bind address 10.0.0.1 is dropped",
    ] {
        assert!(
            warned(&i, "a", "ports", needle),
            "{needle}: {:?}",
            i.warnings
        );
    }
    assert!(warned(&i, "a", "ports.app_protocol", "not carried over"));
}

#[test]
fn volumes_named_bind_and_refused() {
    let i = import_one(
        r#"
services:
  a:
    image: i
    volumes:
      - memdata:/data
      - ./logs:/app/logs
      - ../models:/models:ro,z
      - /etc/ai:/etc/ai:ro
      - /scratch
      - ~/cache:/cache
      - type: bind
        source: ./config
        target: /app/config
        read_only: true
      - type: tmpfs
        target: /tmp
      - type: volume
        source: hf
        target: /root/.cache
        volume: { nocopy: true }
volumes:
  memdata:
    name: pc2_memory_data
  hf:
"#,
    );
    assert_eq!(
        service(&i, "a").volumes,
        [
            "pc2_memory_data:/data",
            "/srv/ai/logs:/app/logs",
            "/srv/models:/models:ro",
            "/etc/ai:/etc/ai:ro",
            "/srv/ai/config:/app/config:ro",
            "hf:/root/.cache"
        ]
    );
    for needle in [
        "./logs -> /srv/ai/logs, ../models -> /srv/models, ./config -> /srv/ai/config",
        "option z is dropped",
        "'/scratch': an anonymous volume",
        "a path under ~",
        "type tmpfs is not carried over",
    ] {
        assert!(
            warned(&i, "a", "volumes", needle),
            "{needle}: {:?}",
            i.warnings
        );
    }
    assert!(warned(&i, "a", "volumes.volume", "not carried over"));
}

#[test]
fn environment_and_labels_in_both_forms() {
    let i = import_one(
        r#"
services:
  a:
    image: "registry/agent:${TAG}"
    environment:
      PORT: 7140
      DEBUG: false
      FROM_SHELL:
      PRICE: "$$5"
      HOST: ${PC2_IP:-10.0.0.2}
    labels: ["tier=memory", "owner=ai"]
  b:
    image: i
    environment: ["A=1", "B=x=y", "C", "A=2"]
"#,
    );
    let a = service(&i, "a");
    assert_eq!(a.image, "registry/agent:${TAG}");
    let env: Vec<(&str, &str)> = a
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("DEBUG", "false"),
            ("HOST", "${PC2_IP:-10.0.0.2}"),
            ("PORT", "7140"),
            ("PRICE", "$5")
        ]
    );
    assert_eq!(a.labels.get("tier").map(String::as_str), Some("memory"));
    assert!(warned(&i, "a", "image", "interpolation"));
    assert!(warned(&i, "a", "environment", "'FROM_SHELL' has no value"));
    // One interpolation warning per key, not per value.
    let n = i
        .warnings
        .iter()
        .filter(|w| w.key == "environment" && w.message.contains("interpolation"))
        .count();
    assert_eq!(n, 1);
    let b = service(&i, "b");
    assert_eq!(b.env.get("A").map(String::as_str), Some("2"));
    assert_eq!(b.env.get("B").map(String::as_str), Some("x=y"));
    assert!(warned(&i, "b", "environment", "write C=VALUE"));
}

#[test]
fn depends_on_conditions_and_unknown_services() {
    let i = import_one(
        r#"
services:
  registry: { image: i }
  orchestrator:
    image: i
    depends_on: [registry]
  session:
    image: i
    depends_on:
      orchestrator: { condition: service_healthy }
      registry: { condition: service_started }
      migrate: { condition: service_completed_successfully, required: false }
  migrate: { image: i, restart: "no" }
  late:
    image: i
    depends_on: [nowhere, registry]
"#,
    );
    assert_eq!(deps(&service(&i, "orchestrator")), ["registry"]);
    assert_eq!(
        deps(&service(&i, "session")),
        ["orchestrator", "registry", "migrate"]
    );
    assert!(warned(
        &i,
        "session",
        "depends_on",
        "'registry': condition service_started becomes \"healthy\""
    ));
    assert!(warned(
        &i,
        "session",
        "depends_on",
        "condition service_completed_successfully"
    ));
    assert!(warned(&i, "session", "depends_on", "required: false"));
    assert!(!i
        .warnings
        .iter()
        .any(|w| w.message.contains("'orchestrator'")));
    assert_eq!(deps(&service(&i, "late")), ["registry"]);
    assert!(warned(
        &i,
        "late",
        "depends_on",
        "'nowhere' is not a service of this file"
    ));
}

#[test]
fn health_checks_and_durations() {
    let i = import_one(
        r#"
services:
  cmd:
    image: i
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost/health"]
      interval: 1m30s
      timeout: 500ms
      start_period: 2m
      retries: 4
      start_interval: 1s
  shell:
    image: i
    healthcheck: { test: ["CMD-SHELL", "pgrep agent || exit 1"], interval: 10s }
  string:
    image: i
    healthcheck: { test: "python3 -c \"import zmq; s.connect('tcp://localhost:7121')\"", timeout: 3 }
  none:
    image: i
    healthcheck: { test: ["NONE"] }
  off:
    image: i
    healthcheck: { test: ["CMD", "true"], disable: true }
"#,
    );
    let h = service(&i, "cmd").health.unwrap_or_default();
    assert_eq!(
        h.exec.as_deref(),
        Some(
            &[
                "curl".to_string(),
                "-f".into(),
                "http://localhost/health".into()
            ][..]
        )
    );
    assert_eq!(
        (h.interval_ms, h.timeout_ms, h.start_period_ms, h.retries),
        (90_000, 500, 120_000, 4)
    );
    assert!(warned(
        &i,
        "cmd",
        "healthcheck.start_interval",
        "not carried over"
    ));
    let h = service(&i, "shell").health.unwrap_or_default();
    assert_eq!(
        h.exec.unwrap_or_default(),
        ["sh", "-c", "pgrep agent || exit 1"]
    );
    assert_eq!(h.interval_ms, 10_000);
    let h = service(&i, "string").health.unwrap_or_default();
    assert_eq!(h.exec.unwrap_or_default()[..2], ["sh", "-c"]);
    assert!(warned(
        &i,
        "string",
        "healthcheck.timeout",
        "'3' is not a duration"
    ));
    assert!(warned(
        &i,
        "string",
        "healthcheck.test",
        "`zmq = { port = 7121 }`"
    ));
    assert!(service(&i, "none").health.is_none());
    assert!(warned(&i, "none", "healthcheck.test", "NONE disables"));
    assert!(service(&i, "off").health.is_none());
    assert!(warned(&i, "off", "healthcheck.disable", "disabled"));
}

#[test]
fn restart_policies() {
    let i = import_one(
        r#"
services:
  a: { image: i, restart: always }
  b: { image: i, restart: unless-stopped }
  c: { image: i, restart: "no" }
  d: { image: i, restart: "on-failure:3" }
  e: { image: i, restart: sometimes }
  f: { image: i, deploy: { restart_policy: { condition: on-failure, delay: 5s } } }
  g: { image: i, restart: always, deploy: { restart_policy: { condition: none } } }
  h: { image: i }
"#,
    );
    let r = |n: &str| service(&i, n).restart;
    assert_eq!(
        [
            r("a"),
            r("b"),
            r("c"),
            r("d"),
            r("e"),
            r("f"),
            r("g"),
            r("h")
        ],
        [
            "always",
            "always",
            "never",
            "on-failure",
            "",
            "on-failure",
            "always",
            ""
        ]
    );
    assert!(warned(&i, "d", "restart", "the retry count"));
    assert!(warned(&i, "e", "restart", "unknown policy 'sometimes'"));
    assert!(warned(&i, "f", "deploy.restart_policy.delay", "backoff"));
}

#[test]
fn cpu_memory_and_gpus() {
    let i = import_one(
        r#"
services:
  limits:
    image: i
    deploy:
      resources:
        limits: { cpus: "0.50", memory: 1.5G, pids: 100 }
        reservations: { cpus: "0.25", memory: 512M }
  v2: { image: i, mem_limit: 2g, cpus: 2 }
  reserved: { image: i, deploy: { resources: { reservations: { memory: 256m } } } }
  v2-reserved: { image: i, mem_reservation: 128m }
  both: { image: i, mem_limit: 1g, deploy: { resources: { limits: { memory: 2g } } } }
  gpu-count:
    image: i
    deploy:
      resources:
        reservations:
          devices: [{ driver: nvidia, count: 2, capabilities: [gpu] }]
  gpu-all:
    image: i
    deploy: { resources: { reservations: { devices: [{ capabilities: [gpu], count: all }] } } }
  gpu-ids:
    image: i
    deploy: { resources: { reservations: { devices: [{ driver: nvidia, device_ids: ["1", "GPU-abc"], capabilities: [gpu, utility] }] } } }
  gpu-default:
    image: i
    deploy: { resources: { reservations: { devices: [{ driver: nvidia, capabilities: [gpu] }] } } }
  runtime: { image: i, runtime: nvidia }
  gpus-key: { image: i, gpus: all }
  tpu:
    image: i
    deploy: { resources: { reservations: { devices: [{ capabilities: [tpu] }] } }, replicas: 3 }
"#,
    );
    let l = service(&i, "limits");
    assert_eq!((l.cpus, l.memory_mib), (0.5, 1536));
    assert!(warned(
        &i,
        "limits",
        "deploy.resources.reservations.memory",
        "512 not carried over"
    ));
    assert!(warned(
        &i,
        "limits",
        "deploy.resources.limits.pids",
        "not carried over"
    ));
    let v2 = service(&i, "v2");
    assert_eq!((v2.cpus, v2.memory_mib), (2.0, 2048));
    assert_eq!(service(&i, "reserved").memory_mib, 256);
    assert!(warned(
        &i,
        "reserved",
        "deploy.resources.reservations.memory",
        "carried over as the limit"
    ));
    assert_eq!(service(&i, "v2-reserved").memory_mib, 128);
    assert!(warned(
        &i,
        "v2-reserved",
        "mem_reservation",
        "carried over as the limit"
    ));
    assert_eq!(service(&i, "both").memory_mib, 2048);
    assert!(warned(
        &i,
        "both",
        "deploy.resources.limits.memory",
        "disagree"
    ));
    let gpus = |n: &str| service(&i, n).gpus;
    assert_eq!(gpus("gpu-count"), ["0", "1"]);
    assert_eq!(gpus("gpu-all"), ["all"]);
    assert_eq!(gpus("gpu-ids"), ["1", "GPU-abc"]);
    assert_eq!(gpus("gpu-default"), ["all"]);
    assert_eq!(gpus("runtime"), ["all"]);
    assert_eq!(gpus("gpus-key"), ["all"]);
    assert!(gpus("tpu").is_empty());
    for (name, key) in [
        ("gpu-count", "deploy.resources.reservations.devices"),
        ("runtime", "runtime"),
        ("gpus-key", "gpus"),
    ] {
        assert!(warned(&i, name, key, "set vram_mib by hand"), "{name}");
    }
    assert!(services(&i).iter().all(|s| s.vram_mib == 0));
    assert!(warned(
        &i,
        "tpu",
        "deploy.resources.reservations.devices",
        "tpu is not carried over"
    ));
    assert!(warned(&i, "tpu", "deploy.replicas", "one container"));
}

#[test]
fn unsupported_and_unknown_keys_are_named() {
    let i = import_one(
        r#"
x-common: &common
  restart: always
services:
  a:
    <<: *common
    build: ./agent
    entrypoint: /init
    env_file: .env
    networks: [backend]
    network_mode: host
    privileged: true
    cap_add: [NET_ADMIN]
    logging: { driver: json-file }
    extra_hosts: ["pc2:10.0.0.2"]
    x-note: ignored
    colour: blue
networks: { backend: {} }
secrets: { token: { file: ./token } }
frobnicate: 1
"#,
    );
    let a = service(&i, "a");
    assert_eq!(a.image, "localhost/a:latest");
    assert_eq!(a.restart, "always", "merge keys are applied");
    assert!(warned(
        &i,
        "a",
        "build",
        "podman build -t localhost/a:latest"
    ));
    for key in [
        "entrypoint",
        "env_file",
        "networks",
        "network_mode",
        "privileged",
        "cap_add",
        "logging",
        "extra_hosts",
    ] {
        assert!(warned(&i, "a", key, "not"), "{key}: {:?}", i.warnings);
    }
    assert!(warned(&i, "a", "colour", "no such setting"));
    assert!(!i.warnings.iter().any(|w| w.key.starts_with("x-")));
    let top: Vec<&str> = i
        .warnings
        .iter()
        .filter(|w| w.service.is_none())
        .map(|w| w.key.as_str())
        .collect();
    assert_eq!(top, ["networks", "secrets", "frobnicate"]);
    // Every warning is also a comment in the file.
    assert!(
        i.toml.contains("# import: privileged: not carried over"),
        "{}",
        i.toml
    );
}
