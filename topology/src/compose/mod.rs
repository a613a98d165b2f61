//! Importing docker-compose / podman-compose files into a topology.
//!
//! Pure: it takes the files' text and returns the topology's TOML text and
//! a warning for everything it could not carry over (naming the file, the
//! service, the compose key and why). It reads and writes no files; the
//! caller does. By default each compose file becomes one group (compose
//! runs a file's services together on one host); optionally each service
//! becomes a group of its own. The output is validated before it is
//! returned, and the same input always gives the same bytes.

mod emit;
mod file;
mod ports;
mod resources;
mod service;
#[cfg(test)]
mod tests;
mod units;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

pub use units::{duration_ms, mesh_name, size_mib};

/// One compose file to import.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    /// The file as the user named it: used in messages and in the header.
    pub path: PathBuf,
    /// Where relative bind mounts ("./logs") are resolved, as compose
    /// does: the file's directory, made absolute by the caller.
    pub base_dir: PathBuf,
    pub text: String,
}

impl ComposeFile {
    /// Relative bind mounts resolve against the directory of `path`.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> ComposeFile {
        let path = path.into();
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        ComposeFile {
            path,
            base_dir,
            text: text.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// One group per service instead of one per file.
    pub group_per_service: bool,
}

/// Something in a compose file that the topology does not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    /// The compose service, or None for a top-level key.
    pub service: Option<String>,
    /// The compose key, e.g. `networks` or `deploy.resources.reservations.devices`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(s) = &self.service {
            write!(f, "service '{s}': ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The topology file's text.
    pub toml: String,
    pub warnings: Vec<Warning>,
    pub groups: usize,
    pub services: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}:{column}: YAML syntax error: {message}\n  hint: fix the YAML at that line (indentation and quoting are the usual causes)")]
    Yaml {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: not a compose file: {why}\n  hint: pass a docker-compose or podman-compose file, with its containers under a top-level `services:` key")]
    NotCompose { file: PathBuf, why: String },
    #[error("{file}: service '{service}': {message}")]
    Service {
        file: PathBuf,
        service: String,
        message: String,
    },
    #[error("service '{name}' is defined in both {first} and {second}\n  hint: service names are unique in a topology: rename one of them in its compose file")]
    DuplicateService {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no compose files to import\n  hint: name one or more files, e.g. `meshctl import compose docker-compose.yml`")]
    NoFiles,
    #[error("the imported topology does not validate:\n{}", list(.problems))]
    Invalid { problems: Vec<String> },
}

fn list(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One compose file, read.
#[derive(Debug)]
pub(crate) struct Project {
    pub file: PathBuf,
    /// The group name: the `name:` key, else from the file name.
    pub group: String,
    pub services: Vec<Service>,
}

/// One service, in the topology's terms.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Service {
    /// As the compose file names it (warnings use this).
    pub compose_name: String,
    /// As the topology names it (a valid mesh name).
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub cpus: Option<f64>,
    pub memory_mib: Option<u64>,
    pub gpus: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub restart: Option<String>,
    pub health: Option<Health>,
    /// Compose names, resolved to topology names once the file is read.
    pub depends_on: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Health {
    pub exec: Vec<String>,
    pub interval_ms: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub retries: Option<u32>,
    pub start_period_ms: Option<u32>,
}

/// Where warnings go while one file (and one of its services) is read.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub service: Option<String>,
    pub warnings: &'a mut Vec<Warning>,
    interpolated: BTreeSet<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, service: Option<String>, warnings: &'a mut Vec<Warning>) -> Self {
        Ctx {
            file,
            service,
            warnings,
            interpolated: BTreeSet::new(),
        }
    }

    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            service: self.service.clone(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// A scalar as text with compose's `$$` unescaped; warns (once per key)
    /// about `${VAR}` interpolation, which is left as it is. None (and a
    /// warning) for a list or a mapping.
    pub fn text(&mut self, key: &str, v: &Value) -> Option<String> {
        let raw = match scalar(v) {
            Some(s) => s,
            None => {
                self.warn(
                    key,
                    format!(
                        "expected a single value, found {}; not carried over",
                        kind(v)
                    ),
                );
                return None;
            }
        };
        let (text, interpolates) = units::unescape_dollars(&raw);
        if interpolates && self.interpolated.insert(key.to_string()) {
            self.warn(
                key,
                format!("'{raw}' uses ${{VAR}} interpolation, which the mesh does not do: it is left as is; write the value in instead"),
            );
        }
        Some(text)
    }
}

/// A string, number or boolean as text; None for null, lists and maps.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// What kind of YAML value `v` is, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Imports `files` into one topology.
pub fn import(files: &[ComposeFile], options: Options) -> Result<Imported, ImportError> {
    if files.is_empty() {
        return Err(ImportError::NoFiles);
    }
    let mut warnings = Vec::new();
    let mut projects = Vec::new();
    for f in files {
        projects.push(file::read(f, &mut warnings)?);
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for p in &projects {
        for s in &p.services {
            if let Some(first) = seen.insert(s.name.clone(), p.file.clone()) {
                return Err(ImportError::DuplicateService {
                    name: s.name.clone(),
                    first,
                    second: p.file.clone(),
                });
            }
        }
    }
    // Warnings in file order, then service order, each file's own first.
    let order: BTreeMap<(PathBuf, Option<String>), usize> = projects
        .iter()
        .enumerate()
        .flat_map(|(fi, p)| {
            let own = ((p.file.clone(), None), fi * 100_000);
            let services = p.services.iter().enumerate().map(move |(si, s)| {
                (
                    (p.file.clone(), Some(s.compose_name.clone())),
                    fi * 100_000 + si + 1,
                )
            });
            std::iter::once(own).chain(services)
        })
        .collect();
    let groups = group(projects, options, &mut warnings);
    warnings.sort_by_key(|w| {
        order
            .get(&(w.file.clone(), w.service.clone()))
            .copied()
            .unwrap_or(usize::MAX)
    });
    let toml = emit::topology(files, &groups, &warnings);
    if let Err(diagnostics) = crate::validate::parse(Path::new("imported.toml"), &toml) {
        return Err(ImportError::Invalid {
            problems: diagnostics
                .into_iter()
                .map(|d| match d.hint {
                    Some(h) => format!("{} ({h})", d.message),
                    None => d.message,
                })
                .collect(),
        });
    }
    Ok(Imported {
        toml,
        groups: groups.len(),
        services: groups.iter().map(|g| g.services.len()).sum(),
        warnings,
    })
}

/// A group as it will be written, with the file its services came from.
pub(crate) struct Group {
    pub name: String,
    pub services: Vec<(PathBuf, Service)>,
}

fn group(projects: Vec<Project>, options: Options, warnings: &mut Vec<Warning>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut names = BTreeSet::new();
    for p in projects {
        if options.group_per_service {
            for s in p.services {
                names.insert(s.name.clone());
                groups.push(Group {
                    name: s.name.clone(),
                    services: vec![(p.file.clone(), s)],
                });
            }
            continue;
        }
        let mut name = p.group.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{}-{n}", p.group);
            n += 1;
        }
        if name != p.group {
            warnings.push(Warning {
                file: p.file.clone(),
                service: None,
                key: "name".into(),
                message: format!(
                    "another file already makes group '{}'; this file's group is '{name}'",
                    p.group
                ),
            });
        }
        groups.push(Group {
            name,
            services: p
                .services
                .into_iter()
                .map(|s| (p.file.clone(), s))
                .collect(),
        });
    }
    for g in &mut groups {
        drop_port_clashes(g, warnings);
    }
    groups
}

/// Two services of one group run on one host: a host port can be
/// published once. Compose would refuse to start the second; the topology
/// would not validate. The later mapping is dropped.
fn drop_port_clashes(g: &mut Group, warnings: &mut Vec<Warning>) {
    let mut taken: BTreeMap<(u16, String), String> = BTreeMap::new();
    for (file, s) in &mut g.services {
        let mut kept = Vec::new();
        for p in std::mem::take(&mut s.ports) {
            let parsed = crate::service::parse_port(&p);
            match parsed {
                Ok(port) if port.host != 0 => {
                    let key = (port.host, port.protocol.clone());
                    if let Some(other) = taken.get(&key) {
                        let by = if *other == s.name {
                            "this service".to_string()
                        } else {
                            format!("'{other}', in the same group '{}' (one host)", g.name)
                        };
                        warnings.push(Warning {
                            file: file.clone(),
                            service: Some(s.compose_name.clone()),
                            key: "ports".into(),
                            message: format!(
                                "'{p}' not carried over: host port {}/{} is already published by {by}",
                                port.host, port.protocol
                            ),
                        });
                        continue;
                    }
                    taken.insert(key, s.name.clone());
                    kept.push(p);
                }
                _ => kept.push(p),
            }
        }
        s.ports = kept;
    }
}
