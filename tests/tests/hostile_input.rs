//! Hostile input to every parser the mesh reads (issue #14's fuzzing,
//! bounded time in CI): topology files, compose files for import,
//! container files, coordinator.toml, agent.toml, join tokens and CSRs.
//! Random bytes, and valid inputs mutated (bytes flipped, cut short, lines
//! duplicated or dropped), must give a value or an error with a message:
//! never a panic. The checks live in `mesh_tests::hostile`;
//! `PROPTEST_CASES=N` runs longer, and `bench-fuzz` runs them for minutes.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mesh_topology::compose::{import, ComposeFile, Options};

use mesh_tests::hostile::*;
use proptest::prelude::*;

/// A valid text changed the way a careless edit or a corrupt disk would.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let bytes = base.as_bytes().to_vec();
    let len = bytes.len();
    prop_oneof![
        // Bytes overwritten at random places.
        prop::collection::vec((0..len, any::<u8>()), 1..8).prop_map({
            let bytes = bytes.clone();
            move |edits| {
                let mut b = bytes.clone();
                for (i, v) in edits {
                    b[i] = v;
                }
                String::from_utf8_lossy(&b).into_owned()
            }
        }),
        // Cut short anywhere.
        (0..len).prop_map({
            let bytes = bytes.clone();
            move |n| String::from_utf8_lossy(&bytes[..n]).into_owned()
        }),
        // Lines dropped or repeated.
        prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..6).prop_map(
            move |ops| {
                let mut lines: Vec<&str> = base.lines().collect();
                for (at, dup) in ops {
                    if lines.is_empty() {
                        break;
                    }
                    let i = at.index(lines.len());
                    if dup {
                        let l = lines[i];
                        lines.insert(i, l);
                    } else {
                        lines.remove(i);
                    }
                }
                lines.join("\n")
            }
        ),
        // Anything at all.
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn leaked(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

proptest! {
    #[test]
    fn topology_files_never_panic(text in mutated(TOPOLOGY)) {
        prop_assert_eq!(check_topology(&text), Ok(()));
    }

    #[test]
    fn compose_files_never_panic(text in mutated(COMPOSE)) {
        prop_assert_eq!(check_compose(&text), Ok(()));
    }

    #[test]
    fn container_files_never_panic(text in mutated(CONTAINERS)) {
        prop_assert_eq!(check_containers(&text), Ok(()));
    }

    #[test]
    fn coordinator_config_never_panics(text in mutated(COORDINATOR_TOML)) {
        prop_assert_eq!(check_coordinator_config(&text), Ok(()));
    }

    #[test]
    fn agent_config_never_panics(text in mutated(AGENT_TOML)) {
        prop_assert_eq!(check_agent_config(&text), Ok(()));
    }

    #[test]
    fn join_tokens_never_panic(text in mutated(leaked(join_token_text()))) {
        prop_assert_eq!(check_join_token(&text), Ok(()));
    }

    #[test]
    fn csrs_never_panic(text in mutated(leaked(csr_text()))) {
        prop_assert_eq!(check_csr(&text), Ok(()));
    }
}

#[test]
fn the_unmutated_files_parse() {
    mesh_coordinator::decide::planning::parse("t.toml", TOPOLOGY).expect("topology");
    let file = ComposeFile {
        path: PathBuf::from("pc2-compose.yml"),
        base_dir: PathBuf::from("/srv"),
        text: COMPOSE.to_string(),
    };
    import(&[file], Options::default()).expect("compose");
    let parsed: mesh_topology::service::ContainersFile =
        mesh_topology::parse_toml(Path::new("c.toml"), CONTAINERS).expect("containers");
    for s in &parsed.containers {
        mesh_proto::from_topology::container_spec(s).expect("spec");
    }
    let file = mesh_coordinator::config::parse_file(Path::new("c.toml"), COORDINATOR_TOML)
        .expect("coordinator.toml");
    mesh_coordinator::config::resolve(file, Default::default()).expect("resolve");
}

#[test]
fn the_unmutated_file_resolves() {
    let file =
        mesh_node_agent::config::parse_file(Path::new("agent.toml"), AGENT_TOML).expect("parse");
    let c = mesh_node_agent::config::resolve(file, Default::default()).expect("resolve");
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9465")
    );
}
