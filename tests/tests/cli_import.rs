//! `meshctl import compose` as a user runs it: the real binary on the
//! sample compose files, on broken input, and next to a file it must not
//! overwrite.

use std::path::{Path, PathBuf};
use std::process::Command;

use mesh_tests::binaries;
use mesh_tests::process;

fn meshctl(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(binaries::path("meshctl"));
    cmd.args(args);
    let out = process::run(cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A sample from topology/tests/compose/, copied into `dir`.
fn sample(dir: &Path, name: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topology/tests/compose")
        .join(name);
    let to = dir.join(name);
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    to
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn imports_to_stdout_or_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mainpc = sample(dir.path(), "mainpc-compose.yml");
    let pc2 = sample(dir.path(), "pc2-compose.yml");
    let (ok, out, err) = meshctl(&["import", "compose", &s(&mainpc), &s(&pc2)]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("# Topology imported from compose files by `meshctl import compose`:"),
        "{out}"
    );
    let topology = mesh_topology::validate::parse(Path::new("stdout.toml"), &out)
        .unwrap_or_else(|d| panic!("{d:?}\n{out}"));
    assert_eq!(topology.groups.len(), 2);
    // Relative binds resolve against the compose file's directory.
    let logs = format!("{}/logs:/app/logs", dir.path().display());
    assert!(out.contains(&logs), "{out}");
    // Warnings on stderr, one a line, then the count; none on stdout.
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() > 2, "{err}");
    let (count, warnings) = lines.split_last().unwrap();
    assert!(warnings.iter().all(|l| l.starts_with("warning: ")), "{err}");
    assert!(
        warnings.iter().any(|l| l.contains(
            "mainpc-compose.yml: service 'model-manager-agent': privileged: not carried over"
        )),
        "{err}"
    );
    assert!(
        count.starts_with(&format!("{} warnings", warnings.len())),
        "{count}"
    );
    assert!(!out.contains("warning: "));

    let target = dir.path().join("ai.toml");
    let (ok, written_out, err) = meshctl(&[
        "import",
        "compose",
        &s(&mainpc),
        &s(&pc2),
        "--out",
        &s(&target),
    ]);
    assert!(ok, "{err}");
    assert!(written_out.is_empty(), "{written_out}");
    assert!(
        err.contains("wrote ") && err.contains("2 group(s), 9 service(s)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), out);
}

#[test]
fn yaml_errors_name_file_and_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken-compose.yml");
    std::fs::write(
        &bad,
        "services:\n  registry:\n    image: localhost/mesh-demo:latest\n   ports: [\"7200:5555\"]\n",
    )
    .unwrap();
    let target = dir.path().join("out.toml");
    let (ok, out, err) = meshctl(&["import", "compose", &s(&bad), "--out", &s(&target)]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    let expected = format!("{}:4:", bad.display());
    assert!(
        err.contains(&expected) && err.contains("YAML syntax error"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(!target.exists());

    let missing = dir.path().join("nowhere.yml");
    let (ok, _, err) = meshctl(&["import", "compose", &s(&missing)]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot read compose file {}", missing.display())),
        "{err}"
    );

    let not_compose = dir.path().join("values.yml");
    std::fs::write(&not_compose, "replicaCount: 2\nimage: { tag: latest }\n").unwrap();
    let (ok, _, err) = meshctl(&["import", "compose", &s(&not_compose)]);
    assert!(!ok);
    assert!(
        err.contains("values.yml: not a compose file") && err.contains("services:"),
        "{err}"
    );
}

#[test]
fn an_existing_output_is_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let pc2 = sample(dir.path(), "pc2-compose.yml");
    let target = dir.path().join("topology.toml");
    std::fs::write(&target, "# my hand-written topology\n").unwrap();
    let (ok, out, err) = meshctl(&["import", "compose", &s(&pc2), "--out", &s(&target)]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "# my hand-written topology\n"
    );

    let (ok, _, err) = meshctl(&[
        "import",
        "compose",
        &s(&pc2),
        "--out",
        &s(&target),
        "--force",
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains("name = \"pc2-memory\""), "{text}");
}
