//! Reading and checking a topology file. Every problem is reported, not
//! only the first, each with file, line and column, what is wrong and a
//! hint. A file with any error is never handed on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::model::Topology;
use crate::service::{check_managed, parse_port, parse_volume, VolumeEntry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Edit distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The nearest of `candidates` to `word`, if it is plausibly a typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

/// Parses and validates `text` as the topology file `path`.
pub fn parse(path: &Path, text: &str) -> Result<Topology, Vec<Diagnostic>> {
    let topology: Topology = toml::from_str(text).map_err(|e| vec![parse_error(path, text, &e)])?;
    let problems = Checker::new(path, text).run(&topology);
    if problems.is_empty() {
        Ok(topology)
    } else {
        Err(problems)
    }
}

pub fn load(path: &Path) -> Result<Topology, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the topology: {e}"),
            hint: None,
        }]
    })?;
    parse(path, &text)
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> Diagnostic {
    let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
    let message = e.message().trim().to_string();
    // "unknown field `imgae`, expected one of `name`, `image`, ..."
    let hint = message.strip_prefix("unknown field `").and_then(|rest| {
        let (word, expected) = rest.split_once('`')?;
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        nearest(word, known.iter().copied()).map(|n| format!("did you mean `{n}`?"))
    });
    Diagnostic {
        file: path.to_path_buf(),
        line,
        column,
        message,
        hint,
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Diagnostic>,
    /// Managed volumes seen so far (names are unique in a topology).
    managed_names: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(path: &'a Path, text: &'a str) -> Checker<'a> {
        Checker {
            path,
            text,
            problems: Vec::new(),
            managed_names: BTreeSet::new(),
        }
    }

    fn at<T>(&mut self, spanned: &Spanned<T>, message: String, hint: Option<String>) {
        let (line, column) = line_col(self.text, spanned.span().start);
        self.problems.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            column,
            message,
            hint,
        });
    }

    fn run(mut self, t: &Topology) -> Vec<Diagnostic> {
        let mut hosts = BTreeSet::new();
        for h in &t.hosts {
            if !hosts.insert(h.name.get_ref().as_str()) {
                self.at(
                    &h.name,
                    format!("host '{}' is declared twice", h.name.get_ref()),
                    None,
                );
            }
            for (k, v) in &h.labels {
                if let Err(e) = crate::validate_label(k, v) {
                    self.at(&h.name, format!("host '{}': {e}", h.name.get_ref()), None);
                }
            }
        }
        let mut groups = BTreeSet::new();
        let mut services: BTreeMap<&str, &str> = BTreeMap::new();
        for g in &t.groups {
            let gname = g.name.get_ref().as_str();
            if !groups.insert(gname) {
                self.at(&g.name, format!("group '{gname}' is declared twice"), None);
            }
            for s in &g.services {
                let name = s.get_ref().name.as_str();
                if services.insert(name, gname).is_some() {
                    self.at(s, format!("service '{name}' is declared twice (service names are unique in a topology)"), None);
                }
            }
        }
        for g in &t.groups {
            self.check_group(t, g, &hosts, &groups);
        }
        for g in &t.groups {
            for s in &g.services {
                for dep in &s.get_ref().depends_on {
                    if !services.contains_key(dep.get_ref().as_str()) {
                        let hint = nearest(dep.get_ref(), services.keys().copied())
                            .map(|n| format!("did you mean '{n}'?"));
                        self.at(
                            dep,
                            format!(
                                "service '{}' depends on unknown service '{}'",
                                s.get_ref().name,
                                dep.get_ref()
                            ),
                            hint,
                        );
                    }
                }
            }
        }
        self.check_cycles(t);
        let specs: BTreeMap<&str, &crate::service::ServiceSpec> = t
            .groups
            .iter()
            .flat_map(|g| {
                g.services
                    .iter()
                    .map(|s| (s.get_ref().name.as_str(), s.get_ref()))
            })
            .collect();
        let mut bridge_ports: BTreeMap<u16, &str> = BTreeMap::new();
        for b in &t.bridges {
            if !services.contains_key(b.service.get_ref().as_str()) {
                let hint = nearest(b.service.get_ref(), services.keys().copied())
                    .map(|n| format!("did you mean '{n}'?"));
                self.at(
                    &b.service,
                    format!("bridge for unknown service '{}'", b.service.get_ref()),
                    hint,
                );
            }
            if !matches!(
                b.pattern.as_str(),
                "" | "rep" | "router" | "pub" | "pull" | "push" | "tcp"
            ) {
                self.at(
                    &b.service,
                    format!(
                        "bridge pattern '{}' is not one of rep, router, pub, pull, push, tcp",
                        b.pattern
                    ),
                    None,
                );
            }
            if !matches!(b.in_flight.as_str(), "" | "error" | "retry-once") {
                self.at(
                    &b.service,
                    format!(
                        "bridge in_flight '{}' is not error or retry-once",
                        b.in_flight
                    ),
                    None,
                );
            }
            if let Some(spec) = specs.get(b.service.get_ref().as_str()) {
                let published = spec
                    .ports
                    .iter()
                    .filter_map(|p| parse_port(p).ok())
                    .any(|p| p.host == b.port && p.protocol == "tcp");
                if !published {
                    self.at(
                        &b.service,
                        format!(
                            "bridge port {}: service '{}' does not publish host port {}",
                            b.port,
                            b.service.get_ref(),
                            b.port
                        ),
                        Some(format!(
                            "add ports = [\"{}:CONTAINER_PORT\"] to the service: the bridge endpoint is that port on every host",
                            b.port
                        )),
                    );
                }
            }
            if let Some(other) = bridge_ports.insert(b.port, b.service.get_ref().as_str()) {
                self.at(
                    &b.service,
                    format!(
                        "bridges for '{other}' and '{}' both use port {}",
                        b.service.get_ref(),
                        b.port
                    ),
                    Some("every bridge needs a port of its own (it is open on every host)".into()),
                );
            }
        }
        self.problems.sort_by_key(|d| (d.line, d.column));
        self.problems
    }

    fn check_group(
        &mut self,
        t: &Topology,
        g: &crate::model::GroupDecl,
        hosts: &BTreeSet<&str>,
        groups: &BTreeSet<&str>,
    ) {
        let gname = g.name.get_ref();
        if let Some(f) = &g.failover {
            if !matches!(f.policy.as_str(), "singleton") {
                self.at(
                    &g.name,
                    format!("group '{gname}': failover policy '{}' is unknown", f.policy),
                    Some("use policy = \"singleton\"".into()),
                );
            }
            for fb in &f.fallbacks {
                if !hosts.contains(fb.as_str()) {
                    let hint =
                        nearest(fb, hosts.iter().copied()).map(|n| format!("did you mean '{n}'?"));
                    self.at(
                        &g.name,
                        format!("group '{gname}': failover fallback '{fb}' is not a host of this topology"),
                        hint,
                    );
                }
            }
            if let Some(ms) = f.lease_ms {
                if !(500..=60_000).contains(&ms) {
                    self.at(
                        &g.name,
                        format!("group '{gname}': failover lease_ms = {ms} is out of range"),
                        Some("use 500 to 60000; the default is 2000".into()),
                    );
                }
            }
            if let Some(fb) = &f.failback {
                if !matches!(fb.as_str(), "manual" | "auto") {
                    self.at(
                        &g.name,
                        format!("group '{gname}': failback = '{fb}' is unknown"),
                        Some("use failback = \"manual\" (the default) or \"auto\"".into()),
                    );
                }
            }
            if let Some(ms) = f.failback_hold_ms {
                if !(1_000..=86_400_000).contains(&ms) {
                    self.at(
                        &g.name,
                        format!("group '{gname}': failback_hold_ms = {ms} is out of range"),
                        Some("use 1000 (1 s) to 86400000 (a day); the default is 60000".into()),
                    );
                }
            }
        }
        for p in &g.prefer {
            if !hosts.contains(p.get_ref().as_str()) {
                let hint = nearest(p.get_ref(), hosts.iter().copied())
                    .map(|n| format!("did you mean '{n}'?"));
                self.at(
                    p,
                    format!("group '{gname}' prefers unknown host '{}'", p.get_ref()),
                    hint,
                );
            }
        }
        for a in &g.anti_affinity {
            if !groups.contains(a.get_ref().as_str()) {
                let hint = nearest(a.get_ref(), groups.iter().copied())
                    .map(|n| format!("did you mean '{n}'?"));
                self.at(
                    a,
                    format!(
                        "group '{gname}' is anti-affine to unknown group '{}'",
                        a.get_ref()
                    ),
                    hint,
                );
            }
        }
        if !g.constraints.is_empty() && !t.hosts.is_empty() {
            let any = t.hosts.iter().any(|h| {
                g.constraints
                    .iter()
                    .all(|(k, v)| h.labels.get(k) == Some(v))
            });
            if !any {
                let wanted: Vec<String> = g
                    .constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                self.at(
                    &g.name,
                    format!(
                        "group '{gname}' needs labels {} that no declared host has",
                        wanted.join(", ")
                    ),
                    Some("add the labels to a host, or relax the constraint".into()),
                );
            }
        }
        let mut ports: BTreeMap<(u16, String), &str> = BTreeMap::new();
        let mut memory = 0u64;
        for s in &g.services {
            let spec = s.get_ref();
            if spec.image.trim().is_empty() {
                self.at(s, format!("service '{}' has no image", spec.name), None);
            }
            for p in &spec.ports {
                match parse_port(p) {
                    Ok(port) if port.host != 0 => {
                        if let Some(other) =
                            ports.insert((port.host, port.protocol.clone()), spec.name.as_str())
                        {
                            self.at(s, format!("services '{other}' and '{}' both claim host port {}/{} in group '{gname}' (one host)", spec.name, port.host, port.protocol), Some("give one of them another host port".into()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.at(s, format!("service '{}': {e}", spec.name), None),
                }
            }
            for v in &spec.volumes {
                match v {
                    VolumeEntry::Mount(m) => {
                        if let Err(e) = parse_volume(m) {
                            self.at(s, format!("service '{}': {e}", spec.name), None);
                        }
                    }
                    VolumeEntry::Managed(m) => {
                        for problem in check_managed(m) {
                            self.at(s, format!("service '{}': {problem}", spec.name), None);
                        }
                        if !self.managed_names.insert(m.name.clone()) {
                            self.at(
                                s,
                                format!(
                                    "service '{}': volume '{}' is declared twice in the topology",
                                    spec.name, m.name
                                ),
                                Some("give each volume its own name".into()),
                            );
                        }
                        let singleton =
                            g.failover.as_ref().is_some_and(|f| f.policy == "singleton");
                        if m.replicate && !singleton {
                            self.at(s, format!("service '{}': volume '{}' is replicated, but group '{gname}' has no failover policy", spec.name, m.name), Some("add failover = { policy = \"singleton\", fallbacks = [\"HOST\"] } to the group (its standby is the first Ready fallback), or drop replicate".into()));
                        }
                    }
                }
            }
            if let Some(h) = &spec.health {
                if h.probe_count() != 1 {
                    self.at(s, format!("service '{}': a health check needs exactly one of tcp, http, exec, zmq", spec.name), None);
                }
            }
            // Any one service's VRAM must fit on one GPU of some declared host.
            let biggest_gpu = t
                .hosts
                .iter()
                .flat_map(|h| h.gpus.iter().map(|g| g.vram_mib))
                .max();
            if let Some(biggest) = biggest_gpu {
                if spec.vram_mib > biggest {
                    self.at(s, format!("service '{}' needs {} MiB VRAM on one GPU; the largest declared GPU has {} MiB", spec.name, spec.vram_mib, biggest), None);
                }
            }
            memory += spec.memory_mib;
        }
        let declared_memory: Vec<u64> = t.hosts.iter().filter_map(|h| h.memory_mib).collect();
        if declared_memory.len() == t.hosts.len() && !declared_memory.is_empty() {
            let most = declared_memory.iter().copied().max().unwrap_or(0);
            if memory > most {
                self.at(&g.name, format!("group '{gname}' needs {memory} MiB of memory on one host; the largest host has {most} MiB"), Some("split the group, or lower memory_mib".into()));
            }
        }
    }

    fn check_cycles(&mut self, t: &Topology) {
        let mut edges: BTreeMap<&str, Vec<&Spanned<String>>> = BTreeMap::new();
        let mut spans: BTreeMap<&str, &Spanned<crate::service::ServiceSpec>> = BTreeMap::new();
        for g in &t.groups {
            for s in &g.services {
                edges.insert(
                    s.get_ref().name.as_str(),
                    s.get_ref().depends_on.iter().collect(),
                );
                spans.insert(s.get_ref().name.as_str(), s);
            }
        }
        // Iterative DFS with colours; each cycle reported once, from its smallest name.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        for start in edges.keys().copied() {
            if state.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
            let mut path: Vec<&str> = vec![start];
            state.insert(start, 1);
            while let Some((node, i)) = stack.pop() {
                let deps = edges.get(node).map(Vec::as_slice).unwrap_or_default();
                if i < deps.len() {
                    stack.push((node, i + 1));
                    let next = deps[i].get_ref().as_str();
                    match state.get(next).copied().unwrap_or(0) {
                        0 if edges.contains_key(next) => {
                            state.insert(next, 1);
                            stack.push((next, 0));
                            path.push(next);
                        }
                        1 => {
                            let from = path.iter().position(|p| *p == next).unwrap_or(0);
                            let mut cycle: Vec<&str> = path[from..].to_vec();
                            let key: BTreeSet<&str> = cycle.iter().copied().collect();
                            if reported.insert(key.into_iter().collect::<Vec<_>>()) {
                                cycle.push(next);
                                if let Some(s) = spans.get(next) {
                                    let s = *s;
                                    self.at(
                                        s,
                                        format!("dependency cycle: {}", cycle.join(" -> ")),
                                        Some("remove one depends_on of the cycle".into()),
                                    );
                                }
                            }
                        }
                        _ => {}
                    }
                } else {
                    state.insert(node, 2);
                    path.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
