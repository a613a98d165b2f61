//! CPU, memory and GPU keys: `deploy.resources`, `deploy.restart_policy`
//! and the other `deploy` keys, the version-2 `mem_limit`,
//! `mem_reservation` and `cpus`, `runtime: nvidia` and `gpus:`.
//!
//! The topology has one value for CPUs and one for memory: the container's
//! limit, which placement also reserves. Limits win over reservations;
//! `deploy.resources.limits` wins over `mem_limit` / `cpus`.

use yaml_serde::Value;

use super::units::size_mib;
use super::{kind, scalar, service, Ctx, Service};

/// The service keys this module reads.
pub(super) const KEYS: [&str; 6] = [
    "deploy",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "runtime",
    "gpus",
];

const VRAM_HINT: &str =
    "compose does not say how much VRAM it uses: set vram_mib by hand for VRAM-aware placement";

#[derive(Default)]
struct Amounts {
    cpus: Option<f64>,
    memory_mib: Option<u64>,
}

#[derive(Default)]
struct Gathered {
    limits: Amounts,
    reservations: Amounts,
    v2: Amounts,
    devices: Option<Vec<String>>,
    gpus_key: Option<Vec<String>>,
    runtime: Option<Vec<String>>,
    /// mem_reservation, or the deploy key, for warnings.
    memory_reservation_key: Option<&'static str>,
}

/// Applies the resource keys `entries` (in file order) to `s`.
pub(super) fn apply(ctx: &mut Ctx, s: &mut Service, entries: &[(&str, &Value)]) {
    let mut g = Gathered::default();
    for (key, value) in entries {
        match *key {
            "deploy" => deploy(ctx, s, value, &mut g),
            "mem_limit" => g.v2.memory_mib = memory(ctx, "mem_limit", value),
            "mem_reservation" => {
                g.reservations.memory_mib = memory(ctx, "mem_reservation", value);
                g.memory_reservation_key = Some("mem_reservation");
            }
            "cpus" => g.v2.cpus = cpus(ctx, "cpus", value),
            "runtime" => match scalar(value).as_deref() {
                Some("nvidia") => g.runtime = Some(vec!["all".into()]),
                _ => ctx.warn("runtime", "not carried over: containers run with the host's default OCI runtime (only nvidia is understood, as GPU access)"),
            },
            "gpus" => g.gpus_key = gpu_requests(ctx, "gpus", value),
            _ => {}
        }
    }
    s.cpus = pick(
        ctx,
        "cpus",
        [g.limits.cpus, g.v2.cpus, g.reservations.cpus],
        "deploy.resources.reservations.cpus",
    );
    s.memory_mib = pick(
        ctx,
        "memory",
        [
            g.limits.memory_mib,
            g.v2.memory_mib,
            g.reservations.memory_mib,
        ],
        g.memory_reservation_key
            .unwrap_or("deploy.resources.reservations.memory"),
    );
    let (key, gpus) = if let Some(d) = g.devices {
        ("deploy.resources.reservations.devices", d)
    } else if let Some(d) = g.gpus_key {
        ("gpus", d)
    } else if let Some(d) = g.runtime {
        ("runtime", d)
    } else {
        return;
    };
    let list = gpus
        .iter()
        .map(|g| format!("\"{g}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let which = if gpus.iter().any(|g| g == "all") {
        "every GPU of the host"
    } else if gpus.iter().all(|g| g.chars().all(|c| c.is_ascii_digit())) {
        "GPUs by index on the host"
    } else {
        "GPUs by id"
    };
    ctx.warn(
        key,
        format!("carried over as gpus = [{list}] ({which}); {VRAM_HINT}"),
    );
    s.gpus = gpus;
}

/// Limit, else the version-2 key, else the reservation (with a warning).
fn pick<T: PartialEq + Copy + std::fmt::Display>(
    ctx: &mut Ctx,
    what: &str,
    [limit, v2, reservation]: [Option<T>; 3],
    reservation_key: &str,
) -> Option<T> {
    let chosen = limit.or(v2);
    if let (Some(l), Some(v)) = (limit, v2) {
        if l != v {
            ctx.warn(
                &format!("deploy.resources.limits.{what}"),
                format!(
                    "{l} and the version-2 key's {v} disagree; the deploy limit is carried over"
                ),
            );
        }
    }
    match (chosen, reservation) {
        (Some(_), Some(r)) => {
            ctx.warn(reservation_key, format!("{r} not carried over: the topology has one value, the limit, which placement also reserves"));
            chosen
        }
        (None, Some(r)) => {
            ctx.warn(reservation_key, format!("{r} carried over as the limit: the topology has one value, which is both the container's limit and what placement reserves"));
            Some(r)
        }
        _ => chosen,
    }
}

fn deploy(ctx: &mut Ctx, s: &mut Service, value: &Value, g: &mut Gathered) {
    let Value::Mapping(m) = value else {
        ctx.warn(
            "deploy",
            format!("is {}, not a mapping; not carried over", kind(value)),
        );
        return;
    };
    for (k, v) in m {
        let Some(k) = k.as_str() else { continue };
        match k {
            "resources" => resources(ctx, v, g),
            "restart_policy" => {
                for (rk, rv) in v.as_mapping().into_iter().flatten() {
                    match rk.as_str() {
                        Some("condition") => {
                            let policy = service::restart(ctx, "deploy.restart_policy.condition", rv);
                            // An explicit `restart:` wins.
                            if s.restart.is_none() {
                                s.restart = policy;
                            }
                        }
                        Some(other) => ctx.warn(&format!("deploy.restart_policy.{other}"), "not carried over: the mesh restarts with exponential backoff (1 s doubling to 60 s)"),
                        None => {}
                    }
                }
            }
            "replicas" => {
                if v.as_u64().is_some_and(|n| n > 1) {
                    ctx.warn(
                        "deploy.replicas",
                        "not carried over: the mesh runs one container per service",
                    );
                }
            }
            "placement" => ctx.warn(
                "deploy.placement",
                "not carried over: use the group's constraints and prefer in the topology",
            ),
            other => ctx.warn(
                &format!("deploy.{other}"),
                "not carried over: the topology has no such setting",
            ),
        }
    }
}

fn resources(ctx: &mut Ctx, value: &Value, g: &mut Gathered) {
    for (k, v) in value.as_mapping().into_iter().flatten() {
        let Some(k) = k.as_str() else { continue };
        let into = match k {
            "limits" => &mut g.limits,
            "reservations" => &mut g.reservations,
            other => {
                ctx.warn(
                    &format!("deploy.resources.{other}"),
                    "unknown key; not carried over",
                );
                continue;
            }
        };
        for (rk, rv) in v.as_mapping().into_iter().flatten() {
            let Some(rk) = rk.as_str() else { continue };
            let key = format!("deploy.resources.{k}.{rk}");
            match rk {
                "cpus" => into.cpus = cpus(ctx, &key, rv),
                "memory" => {
                    into.memory_mib = memory(ctx, &key, rv);
                    if k == "reservations" {
                        g.memory_reservation_key = None;
                    }
                }
                "devices" if k == "reservations" => g.devices = gpu_requests(ctx, &key, rv),
                _ => ctx.warn(
                    &key,
                    "not carried over: the topology limits CPUs, memory and GPUs only",
                ),
            }
        }
    }
}

fn cpus(ctx: &mut Ctx, key: &str, value: &Value) -> Option<f64> {
    let text = ctx.text(key, value)?;
    match text.trim().parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() => Some(c),
        Ok(_) => None,
        Err(_) => {
            ctx.warn(
                key,
                format!("'{text}' is not a number of CPUs; not carried over"),
            );
            None
        }
    }
}

fn memory(ctx: &mut Ctx, key: &str, value: &Value) -> Option<u64> {
    let text = ctx.text(key, value)?;
    match size_mib(&text) {
        Ok(0) => None,
        Ok(m) => Some(m),
        Err(e) => {
            ctx.warn(key, format!("{e}; not carried over"));
            None
        }
    }
}

/// Device requests (`driver: nvidia`, `capabilities: [gpu]`, `count` or
/// `device_ids`), or `gpus: all` -> the topology's gpus: "all", indices
/// "0".."N-1" for a count, or the ids.
fn gpu_requests(ctx: &mut Ctx, key: &str, value: &Value) -> Option<Vec<String>> {
    if scalar(value).as_deref() == Some("all") {
        return Some(vec!["all".into()]);
    }
    let Value::Sequence(items) = value else {
        ctx.warn(
            key,
            format!(
                "is {}, not a list of device requests; not carried over",
                kind(value)
            ),
        );
        return None;
    };
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let caps: Vec<String> = item
            .get("capabilities")
            .and_then(Value::as_sequence)
            .map(|c| c.iter().filter_map(scalar).collect())
            .unwrap_or_default();
        let driver = item.get("driver").and_then(scalar).unwrap_or_default();
        if !(caps.iter().any(|c| c == "gpu") || driver == "nvidia") {
            ctx.warn(
                key,
                format!(
                    "a device request for {} is not carried over: GPUs only",
                    if caps.is_empty() {
                        "no capability".to_string()
                    } else {
                        caps.join(", ")
                    }
                ),
            );
            continue;
        }
        if let Some(ids) = item.get("device_ids").and_then(Value::as_sequence) {
            out.extend(ids.iter().filter_map(scalar));
        } else {
            match item.get("count").and_then(scalar).as_deref() {
                None | Some("all") | Some("-1") => out.push("all".into()),
                Some(n) => match n.parse::<u32>() {
                    Ok(n) => out.extend((0..n).map(|i| i.to_string())),
                    Err(_) => ctx.warn(
                        key,
                        format!("count '{n}' is not a number or all; not carried over"),
                    ),
                },
            }
        }
        if item.get("options").is_some() {
            ctx.warn(key, "device request options are not carried over");
        }
    }
    if out.iter().any(|g| g == "all") {
        return Some(vec!["all".into()]);
    }
    let mut unique = Vec::new();
    for g in out {
        if !unique.contains(&g) {
            unique.push(g);
        }
    }
    (!unique.is_empty()).then_some(unique)
}
