//! Rules about a [`ContainerSpec`](crate::v1::ContainerSpec) that the
//! coordinator (to refuse bad input early) and the agent (before touching
//! Podman) both apply: validation with messages naming the field, the
//! stable hash that detects a changed spec, and the ownership labels.

use std::collections::BTreeMap;

use prost::Message;

use crate::v1::{ContainerSpec, RestartPolicy};

/// Labels the agent puts on every container it creates.
pub const LABEL_MESH: &str = "mesh.mesh";
pub const LABEL_GROUP: &str = "mesh.group";
pub const LABEL_SERVICE: &str = "mesh.service";
pub const LABEL_NAME: &str = "mesh.name";
pub const LABEL_SPEC_HASH: &str = "mesh.spec-hash";
pub const LABEL_GENERATION: &str = "mesh.generation";

/// Podman container name of a spec.
pub fn container_name(spec_name: &str) -> String {
    format!("mesh-{spec_name}")
}

/// A stable hash of everything that shapes the container. Encoding is
/// deterministic (fields in tag order, maps ordered), so equal specs hash
/// equally in every process.
///
/// The operator's hold is not part of it: holding or releasing a container
/// never recreates it. Nor is where an agent found a managed volume
/// mounted (the `source` it fills in for a `managed` mount): the desired
/// spec and the container created from it hash alike.
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut shaped = spec.clone();
    shaped.hold = 0;
    for v in shaped.volumes.iter_mut().filter(|v| !v.managed.is_empty()) {
        v.source.clear();
    }
    let bytes = shaped.encode_to_vec();
    // FNV-1a, 64 bit: change detection, not security.
    let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

/// The labels that mark a container as owned by an agent of `mesh`.
pub fn ownership_labels(
    mesh: &str,
    spec: &ContainerSpec,
    generation: u64,
) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_MESH.into(), mesh.into());
    labels.insert(LABEL_GROUP.into(), spec.group.clone());
    labels.insert(LABEL_SERVICE.into(), spec.service.clone());
    labels.insert(LABEL_NAME.into(), spec.name.clone());
    labels.insert(LABEL_SPEC_HASH.into(), spec_hash(spec));
    labels.insert(LABEL_GENERATION.into(), generation.to_string());
    labels
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The restart policy for a word of a topology or containers file.
pub fn restart_policy(word: &str) -> Result<RestartPolicy, String> {
    match word {
        "" | "always" => Ok(RestartPolicy::Always),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "never" | "no" => Ok(RestartPolicy::Never),
        other => Err(format!(
            "unknown restart policy '{other}'; use always, on-failure or never"
        )),
    }
}

/// Everything wrong with a spec, each naming the field.
pub fn validate(spec: &ContainerSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let n = &spec.name;
    if !valid_name(n) {
        problems.push(format!(
            "name '{n}': use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"
        ));
    }
    if spec.image.trim().is_empty() {
        problems.push(format!(
            "{n}: image is empty; name an image such as localhost/mesh-demo:latest"
        ));
    }
    let mut host_ports = BTreeMap::new();
    for p in &spec.ports {
        if p.container_port == 0 || p.container_port > 65535 {
            problems.push(format!(
                "{n}: container port {} is not in 1..=65535",
                p.container_port
            ));
        }
        if p.host_port > 65535 {
            problems.push(format!(
                "{n}: host port {} is not in 0..=65535",
                p.host_port
            ));
        }
        if !matches!(p.protocol.as_str(), "" | "tcp" | "udp") {
            problems.push(format!("{n}: protocol '{}' is not tcp or udp", p.protocol));
        }
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            &p.protocol
        };
        if p.host_port != 0
            && host_ports
                .insert((p.host_port, proto.to_string()), ())
                .is_some()
        {
            problems.push(format!(
                "{n}: host port {}/{proto} is mapped twice",
                p.host_port
            ));
        }
    }
    for v in &spec.volumes {
        if !v.target.starts_with('/') {
            problems.push(format!(
                "{n}: volume target '{}' must be an absolute path",
                v.target
            ));
        }
        if v.source.is_empty() && v.managed.is_empty() {
            problems.push(format!("{n}: volume for '{}' has no source", v.target));
        }
    }
    if let Some(r) = &spec.resources {
        if r.cpus < 0.0 || !r.cpus.is_finite() {
            problems.push(format!("{n}: cpus {} must be a positive number", r.cpus));
        }
    }
    if RestartPolicy::try_from(spec.restart).is_err() {
        problems.push(format!(
            "{n}: unknown restart policy value {}; use always, on-failure or never",
            spec.restart
        ));
    }
    if crate::v1::Hold::try_from(spec.hold).is_err() {
        problems.push(format!(
            "{n}: unknown hold value {}; use none, stopped, paused or killed",
            spec.hold
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Problems with a whole set for one host: each spec, and names used twice.
pub fn validate_set(specs: &[ContainerSpec]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut host_ports = BTreeMap::new();
    for spec in specs {
        if let Err(p) = validate(spec) {
            problems.extend(p);
        }
        if !seen.insert(spec.name.as_str()) {
            problems.push(format!("container name '{}' is used twice", spec.name));
        }
        for p in &spec.ports {
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                &p.protocol
            };
            if p.host_port != 0 {
                if let Some(other) =
                    host_ports.insert((p.host_port, proto.to_string()), spec.name.clone())
                {
                    if other != spec.name {
                        problems.push(format!(
                            "host port {}/{proto} is claimed by both {other} and {}",
                            p.host_port, spec.name
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;

/// What an agent reports as a desired container's error while it has not
/// been created yet and nothing has failed so far (for people; the
/// coordinator reads `ContainerFailure::NotCreatedYet`).
pub const NOT_CREATED_YET: &str = "not created yet";
