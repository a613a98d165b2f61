//! Writes the imported groups as topology TOML: a header that says where
//! it came from and what to add, then `[[groups]]` with their services,
//! each preceded by the warnings about it as comments.

use std::fmt::Write;

use super::{ComposeFile, Group, Health, Service, Warning};

const WIDTH: usize = 78;

pub(super) fn topology(files: &[ComposeFile], groups: &[Group], warnings: &[Warning]) -> String {
    let mut out = String::new();
    header(&mut out, files, groups);
    let top: Vec<&Warning> = warnings.iter().filter(|w| w.service.is_none()).collect();
    if !top.is_empty() {
        out.push('\n');
        for w in top {
            comment(&mut out, &format!("import: {w}"));
        }
    }
    for g in groups {
        let _ = write!(out, "\n[[groups]]\nname = {}\n", q(&g.name));
        for (file, s) in &g.services {
            out.push('\n');
            for w in warnings
                .iter()
                .filter(|w| w.file == *file && w.service.as_deref() == Some(&s.compose_name))
            {
                comment(&mut out, &format!("import: {}: {}", w.key, w.message));
            }
            service(&mut out, s);
        }
    }
    out
}

fn header(out: &mut String, files: &[ComposeFile], groups: &[Group]) {
    out.push_str("# Topology imported from compose files by `meshctl import compose`:\n");
    for f in files {
        let made: Vec<String> = groups
            .iter()
            .filter(|g| g.services.iter().any(|(file, _)| *file == f.path))
            .map(|g| format!("'{}'", g.name))
            .collect();
        let noun = if made.len() == 1 { "group" } else { "groups" };
        comment(
            out,
            &format!("  {} -> {noun} {}", f.path.display(), made.join(", ")),
        );
    }
    for line in [
        "",
        "Review it before use. What the topology could not carry over is in the",
        "\"import:\" comments above each service (also printed as warnings).",
        "- A service without restart gets the mesh's default, always (compose's",
        "  default is no).",
        "- Named volumes keep their names (compose prefixes them with the project",
        "  name, e.g. myproject_data).",
        "- Services with gpus need vram_mib set by hand for VRAM-aware placement.",
        "",
        "Hosts: placement needs the machines to place the groups on. Add one",
        "[[hosts]] table per machine, for example:",
        "",
        "[[hosts]]",
        "name = \"mainpc\"",
        "labels = { role = \"mainpc\", gpu = \"true\" }",
        "cpus = 16.0",
        "memory_mib = 65536",
        "gpus = [{ name = \"RTX 4090\", vram_mib = 24576 }]",
        "",
        "and pin a group to a host with prefer = [\"mainpc\"] or",
        "constraints = { role = \"mainpc\" } in its [[groups]] table.",
    ] {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

fn service(out: &mut String, s: &Service) {
    out.push_str("[[groups.services]]\n");
    let _ = writeln!(out, "name = {}", q(&s.name));
    let _ = writeln!(out, "image = {}", q(&s.image));
    list(out, "command", &s.command);
    list(out, "ports", &s.ports);
    list(out, "volumes", &s.volumes);
    if let Some(c) = s.cpus {
        let _ = writeln!(out, "cpus = {c:?}");
    }
    if let Some(m) = s.memory_mib {
        let _ = writeln!(out, "memory_mib = {m}");
    }
    list(out, "gpus", &s.gpus);
    if let Some(r) = &s.restart {
        let _ = writeln!(out, "restart = {}", q(r));
    }
    list(out, "depends_on", &s.depends_on);
    table(out, "env", &s.env);
    table(out, "labels", &s.labels);
    if let Some(h) = &s.health {
        health(out, h);
    }
}

fn health(out: &mut String, h: &Health) {
    out.push_str("[groups.services.health]\n");
    list(out, "exec", &h.exec);
    for (key, value) in [
        ("interval_ms", h.interval_ms),
        ("timeout_ms", h.timeout_ms),
        ("retries", h.retries),
        ("start_period_ms", h.start_period_ms),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "{key} = {v}");
        }
    }
}

fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
    let _ = writeln!(out, "{key} = [{}]", quoted.join(", "));
}

fn table(out: &mut String, key: &str, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "[groups.services.{key}]");
    for (k, v) in pairs {
        let _ = writeln!(out, "{} = {}", bare_or_quoted(k), q(v));
    }
}

/// A TOML basic string: one line, whatever the text holds, so that
/// commands with quotes stay readable.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        q(key)
    }
}

/// `text` as "# " comment lines wrapped at WIDTH; a continuation is
/// indented. A newline in `text` never ends the comment early.
fn comment(out: &mut String, text: &str) {
    let indent = text.len() - text.trim_start().len();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let limit = WIDTH.saturating_sub(2);
        if !line.is_empty() && line.len() + 1 + word.len() > limit {
            let _ = writeln!(out, "# {line}");
            line = " ".repeat(indent + 2);
        } else if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        } else if line.is_empty() {
            line = " ".repeat(indent);
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "# {}", line.trim_end());
}
