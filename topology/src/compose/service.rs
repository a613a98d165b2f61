//! One compose service: every key either carried over into the topology's
//! terms or named in a warning that says why not.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_serde::{Mapping, Value};

use super::units::{duration_ms, split_command, Split};
use super::{kind, ports, resources, scalar, volumes, Ctx, Health, ImportError, Service};

/// Converts the service `compose_name` with keys `body`.
pub(super) fn convert(
    ctx: &mut Ctx,
    compose_name: &str,
    body: &Mapping,
    base_dir: &Path,
    volume_names: &BTreeMap<String, String>,
) -> Result<Service, ImportError> {
    let mut s = Service {
        compose_name: compose_name.to_string(),
        ..Service::default()
    };
    let mut build = false;
    let mut resource_keys = Vec::new();
    for (key, value) in body {
        let Some(key) = key.as_str() else { continue };
        match key {
            "image" => s.image = ctx.text("image", value).unwrap_or_default(),
            "build" => build = true,
            "command" => s.command = command(ctx, value),
            "entrypoint" => ctx.warn(
                "entrypoint",
                "not carried over: the topology has no entrypoint; the image's ENTRYPOINT runs with command as its arguments (put the entrypoint in the image, or move it into command)",
            ),
            "environment" => s.env = pairs(ctx, "environment", value),
            "labels" => s.labels = pairs(ctx, "labels", value),
            "env_file" => ctx.warn(
                "env_file",
                "not read: copy its variables into the service's env in the topology",
            ),
            "ports" => s.ports = ports::ports(ctx, value),
            "volumes" => s.volumes = volumes::volumes(ctx, value, base_dir, volume_names),
            "depends_on" => s.depends_on = depends_on(ctx, value),
            "healthcheck" => s.health = health(ctx, value),
            "restart" => s.restart = restart(ctx, "restart", value),
            "container_name" => {
                if scalar(value).as_deref() != Some(compose_name) {
                    ctx.warn(
                        "container_name",
                        "not carried over: the mesh names containers after their service",
                    );
                }
            }
            "expose" => ctx.warn(
                "expose",
                "not needed: only published ports (ports:) matter to the mesh",
            ),
            k if k.starts_with("x-") => {}
            k if resources::KEYS.contains(&k) => resource_keys.push((k, value)),
            k => ctx.warn(k, unsupported(k)),
        }
    }
    resources::apply(ctx, &mut s, &resource_keys);
    if s.image.trim().is_empty() {
        if !build {
            return Err(ImportError::Service {
                file: ctx.file.to_path_buf(),
                service: compose_name.to_string(),
                message: "it has neither image: nor build:; add the image it runs".into(),
            });
        }
        let tag = format!("localhost/{}:latest", super::units::mesh_name(compose_name));
        ctx.warn(
            "build",
            format!("not carried over: the mesh runs images, it does not build them; build it on each host that may run it (`podman build -t {tag} CONTEXT`) — the topology names it {tag}"),
        );
        s.image = tag;
    } else if build {
        ctx.warn(
            "build",
            "not carried over: the mesh runs the image named by image:, so build and tag it on each host first",
        );
    }
    Ok(s)
}

/// Why a compose key the topology has no place for is not carried over.
fn unsupported(key: &str) -> String {
    let why = match key {
        "networks" => "the mesh creates no networks; services of one group reach each other through published host ports, other hosts through bridges",
        "network_mode" => "containers run on Podman's default network",
        "privileged" => "the topology runs no privileged containers",
        "cap_add" | "cap_drop" => "the topology sets no Linux capabilities",
        "logging" => "the mesh keeps container logs itself (meshctl logs)",
        "extra_hosts" => "the topology writes no /etc/hosts entries; use bridges, or addresses in env",
        "devices" => "the topology maps no devices except GPUs (gpus)",
        "security_opt" => "the topology sets no security options",
        "hostname" | "domainname" => "containers get Podman's default host name",
        "dns" | "dns_search" | "dns_opt" => "the topology sets no DNS options",
        "user" => "the image's USER is used",
        "working_dir" => "the image's WORKDIR is used",
        "shm_size" => "the topology does not size /dev/shm (PyTorch data loaders may need more than the default)",
        "tmpfs" => "the topology mounts no tmpfs",
        "stop_signal" | "stop_grace_period" => "the mesh stops containers with SIGTERM and its own grace period",
        "profiles" => "the service is imported whatever its profiles",
        "extends" => "not followed: copy the keys it brings into the service",
        "secrets" | "configs" => "the topology has no secrets or configs; mount files with volumes instead",
        "links" | "external_links" => "services reach each other through published ports and bridges",
        "ulimits" | "sysctls" => "the topology sets neither",
        "scale" => "the mesh runs one container per service",
        "tty" | "stdin_open" => "containers run without a terminal",
        _ => "the topology has no such setting",
    };
    format!("not carried over: {why}")
}

/// `command:` as a list (as is) or a string (split like a shell would, or
/// run by `sh -c` when it uses shell syntax).
fn command(ctx: &mut Ctx, value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| ctx.text("command", i))
            .collect(),
        Value::Null => Vec::new(),
        v => {
            let Some(text) = ctx.text("command", v) else {
                return Vec::new();
            };
            match split_command(&text) {
                Split::Words(words) => words,
                Split::NeedsShell => {
                    ctx.warn("command", "uses shell syntax, so it runs as [\"sh\", \"-c\", ...]: the image needs a shell");
                    vec!["sh".into(), "-c".into(), text]
                }
                Split::Unbalanced => {
                    ctx.warn("command", "has an unbalanced quote; it runs as [\"sh\", \"-c\", ...] as written: check it");
                    vec!["sh".into(), "-c".into(), text]
                }
            }
        }
    }
}

/// `environment:` / `labels:` as a mapping or a list of "KEY=value".
/// Later duplicates win, as in compose.
fn pairs(ctx: &mut Ctx, key: &str, value: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: String, v: String| match out.iter_mut().find(|(ok, _)| *ok == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(k) = scalar(k) else { continue };
                if v.is_null() {
                    ctx.warn(key, format!("'{k}' has no value (compose takes it from the shell); not carried over: give it a value"));
                    continue;
                }
                if let Some(v) = ctx.text(key, v) {
                    put(k, v);
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                let Some(entry) = ctx.text(key, item) else {
                    continue;
                };
                match entry.split_once('=') {
                    Some((k, v)) => put(k.to_string(), v.to_string()),
                    None => ctx.warn(key, format!("'{entry}' has no value (compose takes it from the shell); not carried over: write {entry}=VALUE")),
                }
            }
        }
        Value::Null => {}
        other => ctx.warn(
            key,
            format!(
                "is {}, not a mapping or a list; not carried over",
                kind(other)
            ),
        ),
    }
    out
}

/// `depends_on:` as a list or as a mapping with conditions. The topology
/// orders on "healthy" only.
fn depends_on(ctx: &mut Ctx, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match value {
        Value::Sequence(items) => {
            out.extend(items.iter().filter_map(|i| ctx.text("depends_on", i)))
        }
        Value::Mapping(m) => {
            for (dep, spec) in m {
                let Some(dep) = scalar(dep) else { continue };
                let condition = spec
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                match condition {
                    "service_healthy" => {}
                    "service_started" | "service_completed_successfully" => ctx.warn(
                        "depends_on",
                        format!("'{dep}': condition {condition} becomes \"healthy\", the only ordering the topology has: this service starts once '{dep}' is healthy (running, if it has no health check)"),
                    ),
                    other => ctx.warn(
                        "depends_on",
                        format!("'{dep}': unknown condition '{other}'; ordered on healthy"),
                    ),
                }
                if spec.get("required").and_then(Value::as_bool) == Some(false) {
                    ctx.warn("depends_on", format!("'{dep}': required: false is not carried over; the dependency is required"));
                }
                out.push(dep);
            }
        }
        Value::Null => {}
        other => ctx.warn(
            "depends_on",
            format!(
                "is {}, not a list or a mapping; not carried over",
                kind(other)
            ),
        ),
    }
    out
}

/// `healthcheck:` -> an exec health check (CMD / CMD-SHELL / a string).
fn health(ctx: &mut Ctx, value: &Value) -> Option<Health> {
    let Value::Mapping(m) = value else {
        ctx.warn(
            "healthcheck",
            format!("is {}, not a mapping; not carried over", kind(value)),
        );
        return None;
    };
    if m.get("disable").and_then(Value::as_bool) == Some(true) {
        ctx.warn("healthcheck.disable", "the health check is disabled, so the service has none in the topology (services that depend on it start once it runs)");
        return None;
    }
    let mut h = Health::default();
    for (k, v) in m {
        let Some(k) = k.as_str() else { continue };
        let key = format!("healthcheck.{k}");
        let ms = |ctx: &mut Ctx| {
            let text = ctx.text(&key, v)?;
            duration_ms(&text)
                .map_err(|e| ctx.warn(&key, format!("{e}; not carried over")))
                .ok()
        };
        match k {
            "test" => h.exec = test(ctx, v)?,
            "interval" => h.interval_ms = ms(ctx),
            "timeout" => h.timeout_ms = ms(ctx),
            "start_period" => h.start_period_ms = ms(ctx),
            "retries" => match v.as_u64().and_then(|r| u32::try_from(r).ok()) {
                Some(r) => h.retries = Some(r),
                None => ctx.warn(
                    &key,
                    format!("{} is not a count; not carried over", kind(v)),
                ),
            },
            "disable" => {}
            "start_interval" => ctx.warn(
                &key,
                "not carried over: the mesh checks at interval during the start period too",
            ),
            _ => ctx.warn(&key, "unknown health check key; not carried over"),
        }
    }
    if h.exec.is_empty() {
        ctx.warn("healthcheck", "has no test (compose would use the image's HEALTHCHECK); no health check is carried over");
        return None;
    }
    if let Some(port) = zmq_probe_port(&h.exec) {
        ctx.warn("healthcheck.test", format!("carried over as an exec check, but it looks like a ZeroMQ REQ \"health\" probe on port {port}: the mesh's own `zmq = {{ port = {port} }}` check needs no Python in the image"));
    }
    Some(h)
}

/// The health check's `test`: None when it says NONE (disabled).
fn test(ctx: &mut Ctx, v: &Value) -> Option<Vec<String>> {
    let words: Vec<String> = match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| ctx.text("healthcheck.test", i))
            .collect(),
        other => {
            let text = ctx.text("healthcheck.test", other)?;
            return Some(vec!["sh".into(), "-c".into(), text]);
        }
    };
    match words.split_first() {
        Some((first, rest)) if first == "CMD" => Some(rest.to_vec()),
        Some((first, rest)) if first == "CMD-SHELL" => {
            Some(vec!["sh".into(), "-c".into(), rest.join(" ")])
        }
        Some((first, _)) if first == "NONE" => {
            ctx.warn(
                "healthcheck.test",
                "NONE disables the health check; none is carried over",
            );
            None
        }
        _ => {
            ctx.warn(
                "healthcheck.test",
                "a list must start with CMD, CMD-SHELL or NONE; not carried over",
            );
            None
        }
    }
}

/// The port of a `tcp://localhost:PORT` ZeroMQ probe in a health command.
fn zmq_probe_port(exec: &[String]) -> Option<u16> {
    let joined = exec.join(" ");
    if !joined.contains("zmq") {
        return None;
    }
    let at = joined
        .find("tcp://localhost:")
        .map(|i| i + "tcp://localhost:".len())
        .or_else(|| {
            joined
                .find("tcp://127.0.0.1:")
                .map(|i| i + "tcp://127.0.0.1:".len())
        })?;
    let digits: String = joined[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `restart:` (and deploy.restart_policy.condition) -> always,
/// on-failure or never.
pub(super) fn restart(ctx: &mut Ctx, key: &str, value: &Value) -> Option<String> {
    let text = ctx.text(key, value)?;
    let policy = match text.as_str() {
        "always" | "unless-stopped" | "any" => "always",
        "no" | "none" => "never",
        "on-failure" => "on-failure",
        t if t.starts_with("on-failure:") => {
            ctx.warn(
                key,
                format!(
                    "'{t}': the retry count is not carried over; the mesh retries with backoff"
                ),
            );
            "on-failure"
        }
        other => {
            ctx.warn(
                key,
                format!(
                    "unknown policy '{other}'; not carried over (the mesh's default is always)"
                ),
            );
            return None;
        }
    };
    Some(policy.to_string())
}
