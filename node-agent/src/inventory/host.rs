//! Host facts from /proc and statvfs. Parsers are pure; a fact that cannot
//! be read becomes a problem string in the report, never a crash.

use std::path::Path;

use mesh_proto::v1::{DiskSpace, HostInventory};

#[derive(Debug, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some(LoadAvg {
        one: fields.next()?.ok()?,
        five: fields.next()?.ok()?,
        fifteen: fields.next()?.ok()?,
    })
}

/// (total, available) in bytes from /proc/meminfo.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

pub fn disk_space(path: &Path) -> DiskSpace {
    let mut disk = DiskSpace {
        path: path.display().to_string(),
        ..Default::default()
    };
    match rustix::fs::statvfs(path) {
        Ok(s) => {
            disk.total_bytes = s.f_blocks.saturating_mul(s.f_frsize);
            disk.available_bytes = s.f_bavail.saturating_mul(s.f_frsize);
        }
        Err(e) => disk.error = format!("cannot stat {}: {e}", path.display()),
    }
    disk
}

/// Reads everything but GPUs.
pub fn collect(storage_path: &Path) -> HostInventory {
    let mut inv = HostInventory {
        cpu_count: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(0),
        disk: Some(disk_space(storage_path)),
        ..Default::default()
    };
    let mut read = |file: &str| match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) => {
            inv.problems.push(format!("{file}: {e}"));
            None
        }
    };
    let load = read("/proc/loadavg").and_then(|t| parse_loadavg(&t));
    let mem = read("/proc/meminfo").and_then(|t| parse_meminfo(&t));
    let uptime = read("/proc/uptime").and_then(|t| parse_uptime(&t));
    if let Some(l) = load {
        (inv.load_1m, inv.load_5m, inv.load_15m) = (l.one, l.five, l.fifteen);
    }
    if let Some((total, avail)) = mem {
        (inv.memory_total_bytes, inv.memory_available_bytes) = (total, avail);
    }
    inv.uptime_seconds = uptime.unwrap_or(0);
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 2/1164 12345\n"),
            Some(LoadAvg {
                one: 0.52,
                five: 0.58,
                fifteen: 0.59
            })
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let meminfo =
            "MemTotal:       24608548 kB\nMemFree:        1 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            Some((24608548 * 1024, 20000000 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_uptime("12345.67 999.0\n"), Some(12345));
    }

    #[test]
    fn real_host_is_readable() {
        let inv = collect(Path::new("/"));
        assert!(inv.cpu_count >= 1);
        assert!(inv.memory_total_bytes > 0);
        assert!(inv.disk.as_ref().unwrap().total_bytes > 0);
        let missing = disk_space(Path::new("/definitely/not/here"));
        assert!(missing.error.contains("/definitely/not/here"));
    }
}
