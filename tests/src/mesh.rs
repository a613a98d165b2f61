//! A whole mesh on test hosts: a coordinator on one host, an agent on each,
//! real binaries, real certificates. Dropping it stops every process before
//! the namespaces go.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use mesh_certs::Role;

use crate::netns::{Host, Lan};
use crate::pki::Pki;
use crate::process::{self, Proc};
use crate::{binaries, wait};

pub const COORDINATOR_PORT: u16 = 7443;

#[derive(Clone, Debug)]
pub struct MeshOptions {
    pub heartbeat_ms: u64,
    pub suspect_after: u32,
    pub down_after: u32,
    /// Give every agent a Podman service of its own (in its namespace).
    pub containers: bool,
    /// Added to every agent's environment (fault points for controls).
    pub agent_env: Vec<(String, String)>,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            heartbeat_ms: 200,
            suspect_after: 3,
            down_after: 6,
            containers: false,
            agent_env: Vec::new(),
        }
    }
}

pub struct MeshFixture {
    // Field order is drop order: processes first, then hosts, then certs.
    pub agents: BTreeMap<String, Proc>,
    pub coordinator: Proc,
    pub lan: Lan,
    pub hosts: BTreeMap<String, Host>,
    pub pki: Pki,
    pub coordinator_host: String,
    pub options: MeshOptions,
    /// Agents' state (desired sets, their Podman roots).
    pub state: tempfile::TempDir,
}

impl MeshFixture {
    /// Hosts named `names`; the coordinator runs on the first.
    pub fn start(names: &[&str], options: MeshOptions) -> MeshFixture {
        let pki = Pki::new("testmesh");
        let mut lan = Lan::new();
        let mut hosts = BTreeMap::new();
        for name in names {
            hosts.insert(name.to_string(), lan.add_host(name));
        }
        let coordinator_host = names[0].to_string();
        pki.issue(Role::Coordinator, "coordinator", &[]);
        pki.issue(Role::Admin, "admin", &[]);
        let state = tempfile::Builder::new()
            .prefix("mesh-agents-")
            .tempdir()
            .expect("temp dir");
        let coordinator = spawn_coordinator(
            &hosts[&coordinator_host],
            &pki,
            &options,
            &state.path().join("coordinator"),
            &[],
        );
        let mut fixture = MeshFixture {
            agents: BTreeMap::new(),
            coordinator,
            lan,
            hosts,
            pki,
            coordinator_host,
            options,
            state,
        };
        for name in names {
            fixture.start_agent(name);
        }
        fixture
    }

    /// Hosts `names` whose agents each run a Podman of their own, once
    /// every one of them is Ready and has reported its inventory.
    pub fn start_with_containers(names: &[&str]) -> MeshFixture {
        let mesh = MeshFixture::start(
            names,
            MeshOptions {
                containers: true,
                ..MeshOptions::default()
            },
        );
        for name in names {
            mesh.wait_ready_with_inventory(name, Duration::from_secs(30));
        }
        mesh
    }

    /// Stops the coordinator (SIGKILL) and starts a new one with the same
    /// state directory, as after a crash.
    pub fn restart_coordinator(&mut self) {
        self.restart_coordinator_with_env(&[]);
    }

    /// [`Self::restart_coordinator`] with `env` added to its environment
    /// (e.g. a fault point, `MESH_FAULT_EXIT_AT`).
    pub fn restart_coordinator_with_env(&mut self, env: &[(&str, &str)]) {
        self.coordinator.kill();
        self.coordinator = spawn_coordinator(
            &self.hosts[&self.coordinator_host],
            &self.pki,
            &self.options,
            &self.state.path().join("coordinator"),
            env,
        );
    }

    /// Runs the demo service's client mode as a one-shot container on
    /// `node` (its own Podman, default network) with `env` added, and
    /// returns its JSON report and whether it exited 0 (every answer
    /// correct). Panics when there is no report.
    pub fn demo_client(&self, node: &str, env: &[(&str, String)]) -> (serde_json::Value, bool) {
        let mut cmd = self.podman(node);
        cmd.args(["run", "--rm", "-e", "DEMO_MODE=client"]);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(crate::podman::DEMO_IMAGE);
        let out = cmd.output().expect("run podman");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let report = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "client on {node}: no JSON report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, out.status.success())
    }

    pub fn coordinator_address(&self) -> String {
        format!(
            "{}:{COORDINATOR_PORT}",
            self.hosts[&self.coordinator_host].address
        )
    }

    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// Starts (or restarts) the agent of host `name`.
    pub fn start_agent(&mut self, name: &str) {
        self.start_agent_with_env(name, &[]);
    }

    /// Kills `name`'s agent and starts it again with `env` added.
    pub fn restart_agent_with_env(&mut self, name: &str, env: &[(&str, &str)]) {
        if let Some(a) = self.agents.get_mut(name) {
            a.kill();
        }
        self.start_agent_with_env(name, env);
    }

    /// [`Self::start_agent`] with `env` added to the agent's environment.
    pub fn start_agent_with_env(&mut self, name: &str, env: &[(&str, &str)]) {
        let cert = self.pki.dir().join(format!("agent-{name}.crt"));
        if !cert.exists() {
            self.pki.issue(Role::Agent, name, &[]);
        }
        let host = &self.hosts[name];
        let mut cmd = process::command(Some(host), &binaries::path("mesh-agent"));
        cmd.arg("--node")
            .arg(name)
            .arg("--coordinator")
            .arg(self.coordinator_address())
            .arg("--certs-dir")
            .arg(self.pki.dir())
            .arg("--heartbeat-ms")
            .arg(self.options.heartbeat_ms.to_string())
            .arg("--advertise-address")
            .arg(&host.address)
            .arg("--label")
            .arg(format!("role={name}"))
            .arg("--state-dir")
            .arg(self.state_dir(name));
        if self.options.containers {
            cmd.arg("--podman-own-service");
        }
        cmd.envs(self.options.agent_env.iter().map(|(k, v)| (k, v)));
        cmd.envs(env.iter().copied());
        self.agents
            .insert(name.to_string(), Proc::spawn(&format!("agent-{name}"), cmd));
    }

    pub fn state_dir(&self, node: &str) -> std::path::PathBuf {
        self.state.path().join(node)
    }

    /// `podman` CLI against the agent's own Podman on `node`.
    pub fn podman(&self, node: &str) -> std::process::Command {
        let dir = self.state_dir(node).join("podman");
        let mut c = process::command(Some(&self.hosts[node]), std::path::Path::new("podman"));
        c.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"));
        c
    }

    /// `meshctl containers set NODE` with a TOML body.
    pub fn set_containers(&self, node: &str, toml: &str) -> Output {
        let file = self.state.path().join(format!("{node}-containers.toml"));
        std::fs::write(&file, toml).expect("write containers file");
        let file = file.to_string_lossy().into_owned();
        self.meshctl(&self.coordinator_host, &["containers", "set", node, &file])
    }

    /// Kills container `name` (the spec name) on `node` with Podman, behind
    /// its agent's back, as a crash would.
    pub fn kill_container(&self, node: &str, name: &str) {
        let out = self
            .podman(node)
            .args(["kill", &format!("mesh-{name}")])
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman kill mesh-{name} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `meshctl ps -o json`, parsed.
    pub fn ps_json(&self) -> Result<serde_json::Value, String> {
        let out = self.meshctl(&self.coordinator_host, &["ps", "-o", "json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Waits until container `name` on `node` satisfies `ok`; returns its row.
    pub fn wait_container(
        &self,
        node: &str,
        name: &str,
        what: &str,
        limit: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait::until(
            &format!("{node}/{name}: {what}"),
            limit,
            Duration::from_millis(100),
            || {
                let ps = self.ps_json()?;
                let row = ps["containers"].as_array().and_then(|rows| {
                    rows.iter()
                        .find(|r| r["node"] == node && r["name"] == name)
                        .cloned()
                });
                match row {
                    Some(r) if ok(&r) => Ok(Some(r)),
                    Some(r) => Err(r.to_string()),
                    None => Err(ps.to_string()),
                }
            },
        )
    }

    /// Runs meshctl with the admin certificate from host `from`.
    pub fn meshctl(&self, from: &str, args: &[&str]) -> Output {
        process::run(self.meshctl_command(from, args))
    }

    /// The meshctl command line on host `from`, for a test to start itself
    /// (a long-running `logs -f`, say).
    pub fn meshctl_command(&self, from: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = process::command(Some(&self.hosts[from]), &binaries::path("meshctl"));
        cmd.arg("--coordinator")
            .arg(self.coordinator_address())
            .arg("--certs-dir")
            .arg(self.pki.dir())
            .args(args);
        cmd
    }

    /// The coordinator's `/metrics` (its default address, 127.0.0.1:9464,
    /// in its host's namespace), scraped with curl.
    pub fn scrape_metrics(&self) -> Result<String, String> {
        let mut cmd = process::command(
            Some(&self.hosts[&self.coordinator_host]),
            std::path::Path::new("curl"),
        );
        cmd.args(["-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics"]);
        let out = process::run(cmd);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `meshctl nodes -o json`, parsed.
    pub fn nodes_json(&self) -> Result<serde_json::Value, String> {
        let out = self.meshctl(&self.coordinator_host, &["nodes", "-o", "json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    pub fn node<'a>(nodes: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
        nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)
    }

    /// Waits until `node` is Ready and has sent its first inventory.
    pub fn wait_ready_with_inventory(&self, node: &str, limit: Duration) -> serde_json::Value {
        wait::until(
            &format!("{node} to be ready with inventory"),
            limit,
            Duration::from_millis(100),
            || {
                let nodes = self.nodes_json()?;
                Ok(Self::node(&nodes, node)
                    .filter(|n| n["state"] == "ready" && n["cpu"]["count"].as_u64() > Some(0))
                    .cloned())
            },
        )
    }

    /// Waits until the coordinator has received `more` heartbeats from
    /// `node`'s current session beyond those it has now. Each carries the
    /// agent's latest container report, so this is how a test lets an
    /// agent do several reconcile passes before asserting that something
    /// did not change: a slow machine makes it slower, never wrong.
    pub fn wait_heartbeats(&self, node: &str, more: u64) {
        let count = |nodes: &serde_json::Value| {
            Self::node(nodes, node).and_then(|n| n["session_heartbeats"].as_u64())
        };
        let start = count(&self.nodes_json().expect("meshctl nodes")).unwrap_or(0);
        wait::until(
            &format!("{more} more heartbeats from {node}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let now = count(&self.nodes_json()?).unwrap_or(0);
                // A new session starts counting from 0 again.
                let seen = if now >= start { now - start } else { now };
                Ok((seen >= more).then_some(()))
            },
        )
    }

    /// Waits until `node` is in `state`, returns the node's JSON.
    pub fn wait_state(&self, node: &str, state: &str, limit: Duration) -> serde_json::Value {
        wait::until(
            &format!("{node} to be {state}"),
            limit,
            Duration::from_millis(100),
            || {
                let nodes = self.nodes_json()?;
                Ok(Self::node(&nodes, node)
                    .filter(|n| n["state"] == state)
                    .cloned())
            },
        )
    }
}

fn spawn_coordinator(
    host: &Host,
    pki: &Pki,
    options: &MeshOptions,
    state_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = process::command(Some(host), &binaries::path("mesh-coordinator"));
    cmd.envs(env.iter().copied());
    cmd.arg("--listen")
        .arg(format!("0.0.0.0:{COORDINATOR_PORT}"))
        .arg("--certs-dir")
        .arg(pki.dir())
        .arg("--suspect-after")
        .arg(options.suspect_after.to_string())
        .arg("--down-after")
        .arg(options.down_after.to_string())
        .arg("--state-dir")
        .arg(state_dir);
    Proc::spawn("coordinator", cmd)
}

impl Drop for MeshFixture {
    fn drop(&mut self) {
        if !self.options.containers {
            return;
        }
        // Stop the agents first so nothing recreates what is removed.
        for agent in self.agents.values_mut() {
            agent.kill();
        }
        for node in self.hosts.keys() {
            crate::podman::release_state(&self.state_dir(node).join("podman"), self.podman(node));
            // The volumes of a killed agent: their mounts and loop devices.
            match mesh_volumes::local::cleanup_stale(&self.state_dir(node)) {
                Ok(cleaned) => {
                    for c in cleaned {
                        eprintln!("{node}: cleaned up {c}");
                    }
                }
                Err(e) => eprintln!("{node}: volume cleanup: {e}"),
            }
        }
    }
}
