//! Isolated hosts on one machine: a network namespace per host, all joined
//! by veth pairs to a bridge that lives in a namespace of its own (the
//! "LAN"). A host reaches the others and nothing else. Everything is
//! removed on drop, also when the test panics.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Addresses live only inside this test's own namespaces.
const SUBNET: &str = "10.77.0";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// Namespace name, under /run/netns.
    pub ns: String,
    pub address: String,
}

impl Host {
    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }
}

pub struct Lan {
    prefix: String,
    lan_ns: String,
    hosts: Vec<Host>,
}

impl Lan {
    /// A new, empty LAN with a name unique to this process and call.
    pub fn new() -> Lan {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("mt{}x{}", std::process::id(), n);
        let lan_ns = format!("{prefix}-lan");
        let lan = Lan {
            prefix,
            lan_ns,
            hosts: Vec::new(),
        };
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &lan.lan_ns])?;
            ip(&["-n", &lan.lan_ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &lan.lan_ns, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &lan.lan_ns, "link", "set", "br0", "up"])
        };
        if let Err(e) = setup() {
            panic!("cannot create test LAN: {e}");
        }
        lan
    }

    /// Adds a host with the next address on the LAN.
    pub fn add_host(&mut self, name: &str) -> Host {
        let index = self.hosts.len() + 1;
        let host = Host {
            name: name.to_string(),
            ns: format!("{}-{}", self.prefix, name),
            address: format!("{SUBNET}.{index}"),
        };
        // Registered before setup so drop removes a half-made host too.
        self.hosts.push(host.clone());
        let port = format!("h{index}");
        let cidr = format!("{}/24", host.address);
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &host.ns])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &host.ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.lan_ns,
            ])?;
            ip(&["-n", &self.lan_ns, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &self.lan_ns, "link", "set", &port, "up"])?;
            ip(&["-n", &host.ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &host.ns, "link", "set", "eth0", "up"])
        };
        if let Err(e) = setup() {
            panic!("cannot create test host {name}: {e}");
        }
        host
    }

    /// Cuts a host off the LAN: its link goes down, its processes live on.
    pub fn cut(&self, host: &Host) {
        if let Err(e) = ip(&["-n", &host.ns, "link", "set", "eth0", "down"]) {
            panic!("cannot cut {}: {e}", host.name);
        }
    }

    /// Cuts the link between two hosts only (a blackhole route each way);
    /// both still reach every other host.
    pub fn cut_between(&self, a: &Host, b: &Host) {
        for (from, to) in [(a, b), (b, a)] {
            let dst = format!("{}/32", to.address);
            if let Err(e) = ip(&["-n", &from.ns, "route", "add", "blackhole", &dst]) {
                panic!("cannot cut {} from {}: {e}", from.name, to.name);
            }
        }
    }

    /// Undoes [`Lan::cut_between`].
    pub fn restore_between(&self, a: &Host, b: &Host) {
        for (from, to) in [(a, b), (b, a)] {
            let dst = format!("{}/32", to.address);
            if let Err(e) = ip(&["-n", &from.ns, "route", "del", "blackhole", &dst]) {
                panic!("cannot reconnect {} to {}: {e}", from.name, to.name);
            }
        }
    }

    /// Reconnects a host cut off with [`Lan::cut`].
    pub fn restore(&self, host: &Host) {
        let result = ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
        if let Err(e) = result {
            panic!("cannot restore {}: {e}", host.name);
        }
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.ns]);
        }
        let _ = ip(&["netns", "del", &self.lan_ns]);
    }
}
