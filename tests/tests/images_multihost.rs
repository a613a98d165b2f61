//! Images copied between hosts (`meshctl images copy`) in network namespaces, each agent with
//! a Podman of its own (own image store): an image only mainpc holds is copied to pc2 over
//! the agents' mutual-TLS tunnel and a container runs from it there; a second copy sends
//! nothing; bad requests change nothing. Faults: a corrupted stream is refused by its
//! checksum, and a copy cut by a link failure leaves no image behind and succeeds when run
//! again. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_system_busybox_image, import_rootfs_image, require_podman};
use mesh_tests::wait;

fn mesh() -> MeshFixture {
    ensure_system_busybox_image();
    MeshFixture::start_with_containers(&["mainpc", "pc2"])
}

/// Imports image `name` (busybox, a marker file and `pad` bytes of noise) into `node`'s own
/// Podman, and waits until its agent reports it.
fn image_on(mesh: &MeshFixture, node: &str, name: &str, pad: usize) {
    let work = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..pad as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    import_rootfs_image(
        &work.path().join("rootfs"),
        mesh.podman(node),
        name,
        &[("/marker", b"copied-image-marker\n"), ("/noise", &noise)],
    );
    wait_reported(mesh, node, name);
}

/// Waits until `node`'s agent reports image `name` (its Podman answers and holds it).
fn wait_reported(mesh: &MeshFixture, node: &str, name: &str) {
    wait::until(
        &format!("{node} reporting image {name}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let out = mesh.meshctl("mainpc", &["images", node, "-o", "json"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(text.contains(name).then_some(()))
        },
    );
}

/// Who holds `image`, as `meshctl images -o json` says.
fn held_by(mesh: &MeshFixture, image: &str) -> Vec<String> {
    let out = mesh.meshctl("mainpc", &["images", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["by_image"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["image"] == image)
        .map(|r| {
            r["held_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Restarts mainpc's agent with `env` and waits until it serves images again: its own
/// Podman answers (the coordinator may still hold the previous agent's report, so that
/// alone says nothing) and it reports `image`.
fn restart_source(mesh: &mut MeshFixture, image: &str, env: &[(&str, &str)]) {
    mesh.restart_agent_with_env("mainpc", env);
    wait::until(
        "mainpc's restarted agent to have its Podman",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            Ok(mesh.agents["mainpc"]
                .logs()
                .contains("own Podman service running")
                .then_some(()))
        },
    );
    wait_reported(mesh, "mainpc", image);
}

fn exists(mesh: &MeshFixture, node: &str, image: &str) -> bool {
    mesh.podman(node)
        .args(["image", "exists", image])
        .status()
        .unwrap()
        .success()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The MiB a progress line of `meshctl images copy` says were received ("12.0 / 48.0 MiB ...").
fn progress_mib(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}

fn copy(mesh: &MeshFixture, image: &str, extra: &[&str]) -> Output {
    let mut args = vec!["images", "copy", image, "--from", "mainpc", "--to", "pc2"];
    args.extend_from_slice(extra);
    mesh.meshctl("mainpc", &args)
}

#[test]
fn an_image_only_on_mainpc_is_copied_to_pc2_and_a_container_runs_from_it() {
    if !require_podman("an_image_only_on_mainpc_is_copied_to_pc2_and_a_container_runs_from_it") {
        return;
    }
    let mesh = mesh();
    let image = format!("localhost/copytest-{}:latest", std::process::id());
    image_on(&mesh, "mainpc", &image, 4 << 20);
    assert!(!exists(&mesh, "pc2", &image), "pc2 must not hold it yet");
    assert_eq!(held_by(&mesh, &image), ["mainpc"]);

    // Bad requests: named, and nothing changes.
    let out = copy(&mesh, "localhost/no-such-image:latest", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("holds no image 'localhost/no-such-image:latest'"),
        "{}",
        text(&out)
    );
    let out = mesh.meshctl(
        "mainpc",
        &[
            "images", "copy", &image, "--from", "mainpc", "--to", "mainpc",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("two different hosts"),
        "{}",
        text(&out)
    );
    let out = mesh.meshctl(
        "mainpc",
        &["images", "copy", &image, "--from", "mainpc", "--to", "pc9"],
    );
    assert!(
        !out.status.success() && text(&out).contains("no node named 'pc9'"),
        "{}",
        text(&out)
    );
    assert!(!exists(&mesh, "pc2", &image));

    let out = copy(&mesh, &image, &["-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "meshctl.image-copy.v1");
    assert!(v["bytes"].as_u64().unwrap() > 4 << 20, "{v}");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64, "{v}");
    assert_eq!(v["already_present"], false);
    assert!(exists(&mesh, "pc2", &image), "pc2 holds it after the copy");

    wait::until(
        "meshctl images to list pc2 as a holder",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let h = held_by(&mesh, &image);
            Ok((h == ["mainpc", "pc2"]).then_some(()))
        },
    );

    // A container runs from it on pc2, and sees the image's own file.
    let out = mesh.set_containers(
        "pc2",
        &format!(
            r#"
[[containers]]
name = "copied"
group = "copied"
image = "{image}"
command = ["/bin/sh", "-c", "cat /marker && exec sleep 3600"]
memory_mib = 32
"#
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    mesh.wait_container("pc2", "copied", "running", Duration::from_secs(60), |r| {
        r["state"] == "running"
    });
    let logs = wait::until(
        "the copied container's output",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let out = mesh.meshctl("mainpc", &["logs", "pc2", "copied"]);
            let t = text(&out);
            Ok(t.contains("copied-image-marker").then_some(t))
        },
    );
    assert!(logs.contains("copied-image-marker"));

    // Copying again sends nothing.
    let out = copy(&mesh, &image, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already holds"), "{}", text(&out));
}

#[test]
fn a_corrupted_or_cut_copy_leaves_nothing_and_a_retry_succeeds() {
    if !require_podman("a_corrupted_or_cut_copy_leaves_nothing_and_a_retry_succeeds") {
        return;
    }
    let mut mesh = mesh();
    let image = format!("localhost/cuttest-{}:latest", std::process::id());
    image_on(&mesh, "mainpc", &image, 12 << 20);

    // The source flips one byte after hashing it: pc2 refuses the archive.
    restart_source(&mut mesh, &image, &[("MESH_FAULT_IMAGE_CORRUPT", "1")]);
    let out = copy(&mesh, &image, &[]);
    assert!(
        !out.status.success(),
        "a corrupted copy must fail: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("does not match its checksum"),
        "{}",
        text(&out)
    );
    assert!(
        !exists(&mesh, "pc2", &image),
        "nothing loaded from a corrupted stream"
    );

    // The source sends 1 MiB/s; the link between the hosts is cut mid-copy.
    restart_source(&mut mesh, &image, &[("MESH_FAULT_IMAGE_RATE_KIB", "1024")]);
    let mut child = mesh
        .meshctl_command(
            "mainpc",
            &[
                "images",
                "copy",
                &image,
                "--from",
                "mainpc",
                "--to",
                "pc2",
                "--stall-timeout-s",
                "2",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its progress lines (stderr, one per report) say when data is flowing.
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    wait::until(
        "the copy to pass 1 MiB",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            Ok(lines
                .try_iter()
                .any(|l| progress_mib(&l).is_some_and(|m| m >= 1.0))
                .then_some(()))
        },
    );
    mesh.lan.cut_between(mesh.host("mainpc"), mesh.host("pc2"));
    wait::until(
        "the cut copy to end",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok(child.try_wait().unwrap().map(|_| ())),
    );
    let out = child.wait_with_output().unwrap();
    mesh.lan
        .restore_between(mesh.host("mainpc"), mesh.host("pc2"));
    let t = reader.join().unwrap() + &text(&out);
    assert!(!out.status.success(), "a cut copy must fail: {t}");
    eprintln!("the cut copy ended with: {t}");
    assert!(
        t.contains("no data from agent 'mainpc'")
            || t.contains("broke off")
            || t.contains("disconnected"),
        "{t}"
    );
    assert!(!exists(&mesh, "pc2", &image), "no half image after a cut");

    // Run again (the link is back): it completes.
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let out = wait::until(
        "the retried copy",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let out = copy(&mesh, &image, &[]);
            if out.status.success() {
                Ok(Some(out))
            } else {
                Err(text(&out))
            }
        },
    );
    assert!(text(&out).contains("copied"), "{}", text(&out));
    assert!(exists(&mesh, "pc2", &image));
}

#[test]
fn with_copy_images_a_rollout_copies_the_missing_image_first() {
    if !require_podman("with_copy_images_a_rollout_copies_the_missing_image_first") {
        return;
    }
    let mesh = mesh();
    let image = format!("localhost/autocopy-{}:latest", std::process::id());
    image_on(&mesh, "mainpc", &image, 2 << 20);
    let topology = format!(
        r#"
[placement]
copy_images = true

[[hosts]]
name = "mainpc"
[[hosts]]
name = "pc2"

[[groups]]
name = "needs-copy"
prefer = ["pc2"]
[[groups.services]]
name = "auto"
image = "{image}"
command = ["/bin/sh", "-c", "cat /marker && exec sleep 3600"]
"#
    );
    let file = mesh.state.path().join("autocopy.toml");
    std::fs::write(&file, topology).unwrap();
    let file = file.to_string_lossy().into_owned();

    // The plan names what pc2 lacks, with the command that copies it (once pc2's agent has
    // reported its Podman's images: a host whose images are unknown lacks nothing).
    let missing = format!("needs-copy on pc2 (host): missing {image}");
    let command = format!("meshctl images copy {image} --from mainpc --to pc2");
    wait::until(
        "the plan to name pc2's missing image",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let out = mesh.meshctl("mainpc", &["place", &file]);
            let t = text(&out);
            if !out.status.success() {
                return Err(t);
            }
            Ok((t.contains(&missing) && t.contains(&command)).then_some(()))
        },
    );

    // Applied: the coordinator copies it, the rollout waits for it and completes.
    let out = mesh.meshctl("mainpc", &["place", &file, "--apply", "--timeout", "120"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(exists(&mesh, "pc2", &image));
    mesh.wait_container("pc2", "auto", "running", Duration::from_secs(60), |r| {
        r["state"] == "running"
    });
    let events = text(&mesh.meshctl("mainpc", &["events"]));
    assert!(
        events.contains(&format!("copied {image} from mainpc to pc2")),
        "{events}"
    );
}
