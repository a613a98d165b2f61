//! `volumes:` of a service, short ("SOURCE:TARGET:ro") and long forms ->
//! the topology's "SOURCE:TARGET[:ro]". Relative bind mounts are resolved
//! against the compose file's directory, as compose does.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use yaml_serde::Value;

use super::{kind, scalar, Ctx};
use crate::service::parse_volume;

pub(super) fn volumes(
    ctx: &mut Ctx,
    value: &Value,
    base_dir: &Path,
    names: &BTreeMap<String, String>,
) -> Vec<String> {
    let Value::Sequence(items) = value else {
        if !value.is_null() {
            ctx.warn(
                "volumes",
                format!("is {}, not a list; not carried over", kind(value)),
            );
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut resolved = Vec::new();
    for item in items {
        let mount = match item {
            Value::Mapping(_) => long(ctx, item),
            _ => ctx.text("volumes", item).and_then(|t| short(ctx, &t)),
        };
        let Some(mount) = mount else { continue };
        let Some(text) = mount.render(ctx, base_dir, names, &mut resolved) else {
            continue;
        };
        match parse_volume(&text) {
            Ok(_) if !out.contains(&text) => out.push(text),
            Ok(_) => {}
            Err(e) => ctx.warn("volumes", format!("{e}; not carried over")),
        }
    }
    if !resolved.is_empty() {
        // One warning for all of a service's relative binds: they are common.
        ctx.warn("volumes", format!("relative bind mounts resolved from the compose file's directory: {}; those paths must exist on every host that may run the group", resolved.join(", ")));
    }
    out
}

struct Mount {
    /// As written: a volume name, "/abs", "./rel", "~/x".
    source: String,
    target: String,
    read_only: bool,
    written: String,
}

impl Mount {
    /// "SOURCE:TARGET[:ro]" with relative binds resolved and named volumes
    /// under their declared names; None (after a warning) if impossible.
    fn render(
        &self,
        ctx: &mut Ctx,
        base_dir: &Path,
        names: &BTreeMap<String, String>,
        resolved: &mut Vec<String>,
    ) -> Option<String> {
        let s = self.source.as_str();
        let source = if s.starts_with('/') {
            s.to_string()
        } else if s == "." || s.starts_with("./") || s == ".." || s.starts_with("../") {
            let path = normalise(&base_dir.join(s));
            let shown = path.to_string_lossy().into_owned();
            if !path.is_absolute() {
                ctx.warn("volumes", format!("'{}': the bind mount {s} could not be made absolute ({shown}); not carried over: write the absolute path on the hosts", self.written));
                return None;
            }
            resolved.push(format!("{s} -> {shown}"));
            shown
        } else if s.starts_with('~') {
            ctx.warn("volumes", format!("'{}': a path under ~ depends on the user that runs it; not carried over: write the absolute path", self.written));
            return None;
        } else {
            names.get(s).cloned().unwrap_or_else(|| s.to_string())
        };
        let ro = if self.read_only { ":ro" } else { "" };
        Some(format!("{source}:{}{ro}", self.target))
    }
}

/// "data:/data", "./logs:/app/logs:ro", "/models:/models:ro,z", "/data".
fn short(ctx: &mut Ctx, text: &str) -> Option<Mount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => {
            ctx.warn("volumes", format!("'{text}': an anonymous volume lasts as long as its container; not carried over: name it (NAME:{t}) to keep the data"));
            return None;
        }
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => {
            ctx.warn(
                "volumes",
                format!("'{text}': not SOURCE:TARGET[:MODE]; not carried over"),
            );
            return None;
        }
    };
    let mut read_only = false;
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => {}
            other => ctx.warn(
                "volumes",
                format!("'{text}': option {other} is dropped (ro and rw only)"),
            ),
        }
    }
    Some(Mount {
        source: source.to_string(),
        target: target.to_string(),
        read_only,
        written: text.to_string(),
    })
}

/// type, source, target, read_only, bind / volume / tmpfs options.
fn long(ctx: &mut Ctx, item: &Value) -> Option<Mount> {
    let Value::Mapping(m) = item else { return None };
    let field = |k: &str| m.get(k).and_then(scalar);
    let kind = field("type").unwrap_or_else(|| "volume".into());
    let target = field("target").unwrap_or_default();
    let source = field("source").unwrap_or_default();
    let written = format!("{kind} {source}:{target}");
    if kind != "bind" && kind != "volume" {
        ctx.warn(
            "volumes",
            format!("'{written}': type {kind} is not carried over (bind and volume only)"),
        );
        return None;
    }
    if source.is_empty() {
        ctx.warn("volumes", format!("'{written}': an anonymous volume lasts as long as its container; not carried over: give it a source"));
        return None;
    }
    for (k, _) in m {
        match k.as_str() {
            Some("type" | "source" | "target" | "read_only") => {}
            Some(other) => ctx.warn(
                &format!("volumes.{other}"),
                format!("'{written}': not carried over"),
            ),
            None => {}
        }
    }
    let read_only = m.get("read_only").and_then(Value::as_bool).unwrap_or(false);
    Some(Mount {
        source,
        target,
        read_only,
        written,
    })
}

/// Removes "." and resolves ".." without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // ".." of the root is the root; of a relative start, kept.
                if !out.pop() && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
