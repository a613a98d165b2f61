//! One compose file: YAML, its top-level keys, its project (group) name
//! and its services.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_serde::{Mapping, Value};

use super::units::mesh_name;
use super::{kind, service, ComposeFile, Ctx, ImportError, Project, Warning};

/// Reads `f`; warnings go to `warnings`.
pub(super) fn read(f: &ComposeFile, warnings: &mut Vec<Warning>) -> Result<Project, ImportError> {
    let top = parse_yaml(f)?;
    let not_compose = |why: String| ImportError::NotCompose {
        file: f.path.clone(),
        why,
    };
    let top = match top {
        Value::Mapping(m) => m,
        Value::Null => return Err(not_compose("the file is empty".into())),
        other => {
            return Err(not_compose(format!(
                "the top level is {}, not a mapping of keys",
                kind(&other)
            )))
        }
    };
    let services = match top.get("services") {
        Some(Value::Mapping(m)) if !m.is_empty() => m,
        Some(Value::Mapping(_)) | Some(Value::Null) => {
            return Err(not_compose("`services:` lists no services".into()))
        }
        Some(other) => {
            return Err(not_compose(format!(
                "`services:` is {}, not a mapping of service names to services",
                kind(other)
            )))
        }
        None => return Err(not_compose("it has no top-level `services:` key".into())),
    };
    let mut ctx = Ctx::new(&f.path, None, warnings);
    let volume_names = top_level(&mut ctx, &top);
    let group = project_name(&mut ctx, &top, &f.path);

    let mut out = Vec::new();
    for (key, body) in services {
        let Some(compose_name) = key.as_str() else {
            return Err(not_compose(format!(
                "a service name is {}, not a string",
                kind(key)
            )));
        };
        let Value::Mapping(body) = body else {
            return Err(ImportError::Service {
                file: f.path.clone(),
                service: compose_name.to_string(),
                message: format!(
                    "the service is {}, not a mapping of keys such as image:",
                    kind(body)
                ),
            });
        };
        let mut ctx = Ctx::new(&f.path, Some(compose_name.to_string()), warnings);
        let s = service::convert(&mut ctx, compose_name, body, &f.base_dir, &volume_names)?;
        out.push(s);
    }
    resolve_names(&f.path, &mut out, warnings)?;
    Ok(Project {
        file: f.path.clone(),
        group,
        services: out,
    })
}

fn parse_yaml(f: &ComposeFile) -> Result<Value, ImportError> {
    let yaml_error = |e: yaml_serde::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ImportError::Yaml {
            file: f.path.clone(),
            line,
            column,
            message: e.to_string(),
        }
    };
    let mut value: Value = yaml_serde::from_str(&f.text).map_err(yaml_error)?;
    // `<<: *defaults` merge keys, common in compose files.
    value.apply_merge().map_err(yaml_error)?;
    Ok(value)
}

/// Checks the top-level keys; returns the top-level volumes' real names
/// (a volume may set `name:`).
fn top_level(ctx: &mut Ctx, top: &Mapping) -> BTreeMap<String, String> {
    let mut volume_names = BTreeMap::new();
    for (key, value) in top {
        let Some(key) = key.as_str() else { continue };
        match key {
            "services" | "name" | "version" => {}
            k if k.starts_with("x-") => {}
            "volumes" => {
                if let Value::Mapping(vols) = value {
                    for (vname, decl) in vols {
                        let Some(vname) = vname.as_str() else {
                            continue;
                        };
                        volume_names.insert(vname.to_string(), volume(ctx, vname, decl));
                    }
                }
            }
            "networks" => ctx.warn(
                "networks",
                "not carried over: the mesh creates no networks; services of one group reach each other through published host ports, other hosts through bridges",
            ),
            "secrets" | "configs" => ctx.warn(
                key,
                "not carried over: the topology has no secrets or configs; mount files with volumes instead",
            ),
            "include" => ctx.warn(
                "include",
                "not followed: import the included files too, by naming them on the command line",
            ),
            other => ctx.warn(other, "unknown top-level key; not carried over"),
        }
    }
    volume_names
}

/// A top-level volume declaration: its real name, warnings for settings
/// the mesh does not use.
fn volume(ctx: &mut Ctx, vname: &str, decl: &Value) -> String {
    let mut name = vname.to_string();
    let Value::Mapping(m) = decl else {
        return name;
    };
    for (k, v) in m {
        match k.as_str() {
            Some("name") => {
                if let Some(n) = v.as_str() {
                    name = n.to_string();
                }
            }
            Some("external") => {}
            Some(other) => ctx.warn(
                &format!("volumes.{vname}.{other}"),
                "not carried over: the mesh's volumes are plain Podman volumes on the group's host",
            ),
            None => {}
        }
    }
    name
}

/// The group name: the project's `name:`, else the file name without the
/// usual compose words ("docker-compose.gpu-services.yml" -> "gpu-services",
/// "mainpc-compose.yml" -> "mainpc"), else the directory's name as compose
/// itself does for a plain "docker-compose.yml".
fn project_name(ctx: &mut Ctx, top: &Mapping, path: &Path) -> String {
    if let Some(v) = top.get("name") {
        if let Some(n) = ctx.text("name", v) {
            let name = mesh_name(&n);
            if !name.is_empty() {
                return name;
            }
            ctx.warn(
                "name",
                format!(
                    "'{n}' has no letters or digits to name a group with; the file name is used"
                ),
            );
        }
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = stem.to_ascii_lowercase();
    for word in ["docker-compose", "podman-compose", "compose"] {
        if let Some(rest) = name.strip_prefix(word) {
            name = rest.trim_start_matches(['.', '-', '_']).to_string();
        }
        if let Some(rest) = name.strip_suffix(word) {
            name = rest.trim_end_matches(['.', '-', '_']).to_string();
        }
    }
    let name = mesh_name(&name);
    if !name.is_empty() {
        return name;
    }
    let dir = path
        .parent()
        .and_then(Path::file_name)
        .map(|d| mesh_name(&d.to_string_lossy()))
        .unwrap_or_default();
    if dir.is_empty() {
        "compose".into()
    } else {
        dir
    }
}

/// Gives every service a valid mesh name and resolves depends_on to those
/// names; a dependency on a service the file does not define is dropped.
fn resolve_names(
    file: &Path,
    services: &mut [super::Service],
    warnings: &mut Vec<Warning>,
) -> Result<(), ImportError> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for s in services.iter_mut() {
        let name = mesh_name(&s.compose_name);
        if name.is_empty() {
            return Err(ImportError::Service {
                file: file.to_path_buf(),
                service: s.compose_name.clone(),
                message: "the name has no letters or digits; rename the service".into(),
            });
        }
        if let Some(other) = taken.insert(name.clone(), s.compose_name.clone()) {
            return Err(ImportError::Service {
                file: file.to_path_buf(),
                service: s.compose_name.clone(),
                message: format!("as a mesh name (a-z, 0-9, '-') it becomes '{name}', the same as service '{other}'; rename one of them"),
            });
        }
        if name != s.compose_name {
            warnings.push(Warning {
                file: file.to_path_buf(),
                service: Some(s.compose_name.clone()),
                key: "service name".into(),
                message: format!("renamed to '{name}': mesh names are 1-63 of a-z, 0-9 and '-'"),
            });
        }
        names.insert(s.compose_name.clone(), name.clone());
        s.name = name;
    }
    for s in services.iter_mut() {
        let mut resolved = Vec::new();
        for dep in std::mem::take(&mut s.depends_on) {
            match names.get(&dep) {
                Some(n) if !resolved.contains(n) => resolved.push(n.clone()),
                Some(_) => {}
                None => warnings.push(Warning {
                    file: file.to_path_buf(),
                    service: Some(s.compose_name.clone()),
                    key: "depends_on".into(),
                    message: format!(
                        "'{dep}' is not a service of this file; the dependency is dropped"
                    ),
                }),
            }
        }
        s.depends_on = resolved;
    }
    Ok(())
}
