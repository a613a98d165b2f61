//! The example topology (`topology/examples/ai-system.toml`) placed on
//! `mainpc` and `pc2` (network namespaces, each agent with a Podman of its
//! own) with real demo-service containers: `meshctl place` plans without
//! changing anything; `--apply` starts every service in dependency order
//! (checked from the rollout's events and from the agents' own reports
//! against Podman's start times) until all are healthy; applying the same
//! file again changes nothing; a bad file changes nothing; a restarted
//! coordinator resumes from its state database without touching a
//! container. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::wait;
use serde_json::Value;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology/examples/ai-system.toml")
}

struct Service {
    name: String,
    group: String,
    depends_on: Vec<String>,
}

fn services(file: &Path) -> Vec<Service> {
    let t = mesh_topology::validate::load(file).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    t.groups
        .iter()
        .flat_map(|g| {
            g.services.iter().map(|s| Service {
                name: s.get_ref().name.clone(),
                group: g.name.get_ref().clone(),
                depends_on: s
                    .get_ref()
                    .depends_on
                    .iter()
                    .map(|d| d.get_ref().clone())
                    .collect(),
            })
        })
        .collect()
}

fn json_of(mesh: &MeshFixture, args: &[&str]) -> Value {
    let out = mesh.meshctl("mainpc", args);
    assert!(
        out.status.success(),
        "meshctl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "meshctl {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// service -> (container id, started at unix ms) as Podman on its host sees it.
fn podman_view(
    mesh: &MeshFixture,
    placements: &BTreeMap<String, String>,
    svcs: &[Service],
) -> BTreeMap<String, (String, i64)> {
    svcs.iter()
        .map(|s| {
            let host = &placements[&s.group];
            let out = mesh
                .podman(host)
                .args([
                    "inspect",
                    "--format",
                    "{{.Id}} {{.State.StartedAt.UnixMilli}}",
                    &format!("mesh-{}", s.name),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "podman inspect mesh-{} on {host}: {}",
                s.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (id, started) = text.split_once(' ').expect("id and start time");
            (
                s.name.clone(),
                (id.to_string(), started.parse().expect("unix ms")),
            )
        })
        .collect()
}

fn first_event_ms(events: &[Value], service: &str, phase: &str) -> Option<u64> {
    events
        .iter()
        .filter(|e| e["service"] == service && e["phase"] == phase)
        .filter_map(|e| e["elapsed_ms"].as_u64())
        .min()
}

#[test]
fn example_topology_rolls_out_in_dependency_order_and_reapplies_as_a_no_op() {
    if !require_podman("example_topology_rolls_out_in_dependency_order_and_reapplies_as_a_no_op") {
        return;
    }
    ensure_demo_image();
    let mut mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let file = example();
    let file_arg = file.to_string_lossy().into_owned();
    let svcs = services(&file);
    assert!(svcs.len() >= 10, "the example models the users' system");

    // 1. Plan only: the users' layout, and nothing changes.
    let plan = json_of(&mesh, &["place", &file_arg, "-o", "json"]);
    assert_eq!(plan["placements"]["memory-system"], "pc2", "{plan:#}");
    assert_eq!(plan["placements"]["gpu-services"], "mainpc", "{plan:#}");
    assert_eq!(plan["unplaced"].as_array().unwrap().len(), 0, "{plan:#}");
    assert!(plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["kind"] == "start"));
    let placements: BTreeMap<String, String> =
        serde_json::from_value(plan["placements"].clone()).unwrap();
    let ps = mesh.ps_json().unwrap();
    assert_eq!(
        ps["containers"].as_array().unwrap().len(),
        0,
        "planning must not start anything: {ps:#}"
    );

    // 2. Apply: everything healthy, each service started only after what it
    //    depends on was healthy.
    let applied = json_of(
        &mesh,
        &[
            "place",
            &file_arg,
            "--apply",
            "--timeout",
            "240",
            "-o",
            "json",
        ],
    );
    let summary = &applied["summary"];
    assert_eq!(summary["ok"], true, "{summary:#}");
    assert_eq!(
        summary["started"].as_array().unwrap().len(),
        svcs.len(),
        "{summary:#}"
    );
    let events = applied["events"].as_array().unwrap();
    for s in &svcs {
        let started = first_event_ms(events, &s.name, "starting")
            .unwrap_or_else(|| panic!("{} never started: {events:#?}", s.name));
        for d in &s.depends_on {
            let healthy =
                first_event_ms(events, d, "healthy").unwrap_or_else(|| panic!("{d} never healthy"));
            assert!(
                started >= healthy,
                "{} was handed out at {started} ms, before {d} was healthy at {healthy} ms",
                s.name
            );
        }
    }
    // The same order as the agents saw it: each container started after its
    // dependencies' containers reported healthy.
    let ps = mesh.ps_json().unwrap();
    let rows = ps["containers"].as_array().unwrap();
    let healthy_since = |name: &str| -> i64 {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not reported: {ps:#}"));
        assert_eq!(row["health"], "healthy", "{row:#}");
        assert_eq!(
            row["node"],
            placements[&svcs.iter().find(|s| s.name == name).unwrap().group]
        );
        row["healthy_since_unix_ms"].as_i64().unwrap()
    };
    let before = podman_view(&mesh, &placements, &svcs);
    for s in &svcs {
        let started_at = before[&s.name].1;
        for d in &s.depends_on {
            let dep_healthy = healthy_since(d);
            assert!(
                started_at >= dep_healthy,
                "{} started at {started_at}, before {d} was healthy at {dep_healthy}",
                s.name
            );
        }
    }
    let status = json_of(&mesh, &["status", "-o", "json"]);
    let topology = &status["topology"];
    assert_eq!(topology["rollout"], "complete", "{topology:#}");
    assert!(topology["groups"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["healthy"] == true));

    // 3. The same file again changes nothing.
    let plan = json_of(&mesh, &["place", &file_arg, "-o", "json"]);
    assert_eq!(plan["already_applied"], true, "{plan:#}");
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] == "keep"),
        "{plan:#}"
    );
    let again = json_of(&mesh, &["place", &file_arg, "--apply", "-o", "json"]);
    assert_eq!(again["summary"]["ok"], true, "{again:#}");
    assert_eq!(again["summary"]["started"].as_array().unwrap().len(), 0);
    assert_eq!(
        again["summary"]["unchanged"].as_array().unwrap().len(),
        svcs.len()
    );
    assert_eq!(
        podman_view(&mesh, &placements, &svcs),
        before,
        "re-apply touched containers"
    );

    // 4. A bad file changes nothing, and says where it is wrong.
    let bad = mesh.state.path().join("bad-topology.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &bad,
        text.replacen("[[groups]]", "[[groups]]\nprefered = [\"pc2\"]", 1),
    )
    .unwrap();
    let out = mesh.meshctl("mainpc", &["place", &bad.to_string_lossy(), "--apply"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad-topology.toml:"), "{stderr}");
    assert!(stderr.contains("prefered"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");
    let status = json_of(&mesh, &["status", "-o", "json"]);
    assert_eq!(status["topology"]["source"], "ai-system.toml");
    assert_eq!(
        podman_view(&mesh, &placements, &svcs),
        before,
        "a bad file touched containers"
    );

    // 5. A restarted coordinator resumes from its state database.
    mesh.restart_coordinator();
    wait::until(
        "the restarted coordinator to resume the applied topology",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let out = mesh.meshctl("mainpc", &["status", "-o", "json"]);
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let status: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let t = &status["topology"];
            if t["applied"] == true && t["rollout"] == "complete" {
                Ok(Some(()))
            } else {
                Err(t.to_string())
            }
        },
    );
    assert_eq!(
        podman_view(&mesh, &placements, &svcs),
        before,
        "the coordinator restart touched containers"
    );
}

/// A service whose image is missing stops the rollout with a report naming
/// it and the fix; what depends on it is never started; what was already
/// healthy keeps running.
#[test]
fn a_failing_service_stops_the_rollout_and_tears_nothing_down() {
    if !require_podman("a_failing_service_stops_the_rollout_and_tears_nothing_down") {
        return;
    }
    mesh_tests::podman::ensure_system_busybox_image();
    let mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let image = mesh_tests::podman::BUSYBOX_IMAGE;
    let topology = format!(
        r#"
[[hosts]]
name = "mainpc"
[[hosts]]
name = "pc2"

[[groups]]
name = "base"
prefer = ["mainpc"]
[[groups.services]]
name = "web"
image = "{image}"
command = ["/bin/sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
[groups.services.health]
http = {{ port = 8080, path = "/index.html" }}
interval_ms = 300

[[groups]]
name = "broken"
prefer = ["pc2"]
[[groups.services]]
name = "needs-missing-image"
image = "localhost/no-such-image-anywhere:1"
depends_on = ["web"]
[[groups.services]]
name = "after-broken"
image = "{image}"
command = ["/bin/sleep", "3600"]
depends_on = ["needs-missing-image"]
"#
    );
    let file = mesh.state.path().join("broken.toml");
    std::fs::write(&file, topology).unwrap();
    let out = mesh.meshctl(
        "mainpc",
        &[
            "place",
            &file.to_string_lossy(),
            "--apply",
            "--timeout",
            "60",
            "-o",
            "json",
        ],
    );
    assert!(!out.status.success(), "a failed rollout must exit non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not complete"), "{stderr}");
    let applied: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &applied["summary"];
    assert_eq!(summary["ok"], false, "{summary:#}");
    assert_eq!(
        summary["started"],
        serde_json::json!(["web"]),
        "{summary:#}"
    );
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary:#}");
    assert_eq!(failed[0]["service"], "needs-missing-image");
    assert_eq!(failed[0]["host"], "pc2");
    let why = failed[0]["message"].as_str().unwrap();
    assert!(
        why.contains("localhost/no-such-image-anywhere:1") && why.contains("no registry"),
        "{why}"
    );
    assert!(summary["message"]
        .as_str()
        .unwrap()
        .contains("nothing healthy was torn down"));
    let not_started = summary["not_started"].as_array().unwrap();
    assert_eq!(not_started.len(), 1, "{summary:#}");
    assert_eq!(not_started[0]["service"], "after-broken");
    // web stays up and healthy; after-broken was never created (and a few
    // more reconcile passes did not change that).
    mesh.wait_heartbeats("mainpc", 5);
    let row = mesh.wait_container(
        "mainpc",
        "web",
        "still healthy",
        Duration::from_secs(5),
        |r| r["state"] == "running" && r["health"] == "healthy",
    );
    assert_eq!(row["restarts"], 0);
    let ps = mesh.ps_json().unwrap();
    assert!(
        !ps["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "after-broken"),
        "{ps:#}"
    );
    let status = json_of(&mesh, &["status", "-o", "json"]);
    let rollout = status["topology"]["rollout"].as_str().unwrap();
    assert!(
        rollout.starts_with("stopped: needs-missing-image on pc2"),
        "{rollout}"
    );
}
