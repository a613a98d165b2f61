//! `ports:` in compose's short ("IP:HOST:CONTAINER/proto") and long
//! (`target`, `published`, ...) forms -> the topology's
//! "HOST:CONTAINER[/udp]".

use yaml_serde::Value;

use super::{kind, scalar, Ctx};
use crate::service::parse_port;

/// Ranges "8000-8003:8000-8003" are expanded up to this many ports.
const MAX_RANGE: u16 = 64;

pub(super) fn ports(ctx: &mut Ctx, value: &Value) -> Vec<String> {
    let Value::Sequence(items) = value else {
        if !value.is_null() {
            ctx.warn(
                "ports",
                format!("is {}, not a list; not carried over", kind(value)),
            );
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let mapped = match item {
            Value::Mapping(_) => long(ctx, item),
            _ => match ctx.text("ports", item) {
                Some(text) => short(ctx, &text),
                None => Vec::new(),
            },
        };
        for p in mapped {
            match parse_port(&p) {
                Ok(_) if !out.contains(&p) => out.push(p),
                Ok(_) => {}
                Err(e) => ctx.warn("ports", format!("{e}; not carried over")),
            }
        }
    }
    out
}

/// "8080", "8080:80", "127.0.0.1:8080:80", "[::1]:8080:80/udp",
/// "8000-8001:8000-8001".
fn short(ctx: &mut Ctx, text: &str) -> Vec<String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s, p),
        None => (text, "tcp"),
    };
    if !protocol_ok(ctx, text, protocol) {
        return Vec::new();
    }
    // The container port is after the last ':'; a bind address (which
    // may be IPv6 in brackets) comes before the host port.
    let (front, container) = match spec.rsplit_once(':') {
        Some((f, c)) => (Some(f), c),
        None => (None, spec),
    };
    let (ip, host) = match front {
        None => (None, ""),
        Some(f) => match f.rsplit_once(':') {
            Some((ip, h)) => (Some(ip), h),
            None => (None, f),
        },
    };
    if let Some(ip) = ip {
        bind_ip(ctx, text, ip.trim_matches(['[', ']']));
    }
    if front.is_some() && host.is_empty() {
        ctx.warn("ports", format!("'{text}': compose picks a random host port; the topology publishes fixed ports, so only the container port is carried over"));
    }
    map(ctx, text, host, container, protocol)
}

/// The long form: target, published, host_ip, protocol, mode, name.
fn long(ctx: &mut Ctx, item: &Value) -> Vec<String> {
    let Value::Mapping(m) = item else {
        return Vec::new();
    };
    let field = |k: &str| m.get(k).and_then(scalar);
    let Some(target) = field("target") else {
        ctx.warn(
            "ports",
            "a long-form port has no target (the container port); not carried over",
        );
        return Vec::new();
    };
    let published = field("published").unwrap_or_default();
    let protocol = field("protocol").unwrap_or_else(|| "tcp".into());
    let text = format!("{published}:{target}/{protocol}");
    if !protocol_ok(ctx, &text, &protocol) {
        return Vec::new();
    }
    if let Some(ip) = field("host_ip") {
        bind_ip(ctx, &text, &ip);
    }
    for (k, _) in m {
        match k.as_str() {
            Some("target" | "published" | "protocol" | "host_ip" | "mode" | "name") => {}
            Some(other) => ctx.warn(
                &format!("ports.{other}"),
                format!("'{text}': not carried over"),
            ),
            None => {}
        }
    }
    if published.contains('-') {
        ctx.warn("ports", format!("'{text}': published range {published} means any free port of the range; the topology publishes fixed ports, so it is not carried over: pick one"));
        return Vec::new();
    }
    map(ctx, &text, &published, &target, &protocol)
}

fn protocol_ok(ctx: &mut Ctx, text: &str, protocol: &str) -> bool {
    if protocol == "tcp" || protocol == "udp" {
        return true;
    }
    ctx.warn(
        "ports",
        format!("'{text}': protocol {protocol} is not carried over (tcp and udp only)"),
    );
    false
}

fn bind_ip(ctx: &mut Ctx, text: &str, ip: &str) {
    if ip != "0.0.0.0" && ip != "::" && !ip.is_empty() {
        ctx.warn("ports", format!("'{text}': the bind address {ip} is dropped; the port is published on all of the host's addresses"));
    }
}

/// HOST (possibly empty or a range) and CONTAINER (possibly a range).
fn map(ctx: &mut Ctx, text: &str, host: &str, container: &str, protocol: &str) -> Vec<String> {
    let suffix = if protocol == "udp" { "/udp" } else { "" };
    let (Some(c), h) = (range(container), range(host)) else {
        ctx.warn(
            "ports",
            format!("'{text}': '{container}' is not a port or a range of ports; not carried over"),
        );
        return Vec::new();
    };
    if c.1 - c.0 >= MAX_RANGE {
        ctx.warn("ports", format!("'{text}': a range of more than {MAX_RANGE} ports is not carried over; publish the ports that are used"));
        return Vec::new();
    }
    if host.is_empty() {
        return (c.0..=c.1).map(|p| format!("{p}{suffix}")).collect();
    }
    let Some(h) = h else {
        ctx.warn(
            "ports",
            format!("'{text}': '{host}' is not a port or a range of ports; not carried over"),
        );
        return Vec::new();
    };
    let count = c.1 - c.0;
    if h.1 - h.0 != count {
        ctx.warn("ports", format!("'{text}': a host range for fewer or more container ports means any free port of it; the topology publishes fixed ports, so it is not carried over: map one port to one port"));
        return Vec::new();
    }
    (0..=count)
        .map(|i| format!("{}:{}{suffix}", h.0 + i, c.0 + i))
        .collect()
}

/// "80" -> (80, 80); "8000-8010" -> (8000, 8010); None if not that.
fn range(text: &str) -> Option<(u16, u16)> {
    let text = text.trim();
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a <= b).then_some((a, b))
}
