//! Hostile agent.toml (issue #14's fuzzing, bounded in CI): random bytes
//! and a valid file mutated give a configuration or an error that says
//! what is wrong, never a panic. `PROPTEST_CASES=N` runs longer.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mesh_node_agent::config::{parse_file, resolve, Overrides};
use proptest::prelude::*;

const AGENT_TOML: &str = r#"
node = "pc2"
coordinator = "192.168.1.10:7443"
heartbeat_ms = 500
storage_path = "/var/lib/containers"
metrics_listen = "127.0.0.1:9465"
[labels]
role = "pc2"
[tls]
certs_dir = "/etc/mesh/certs"
[podman]
own_service = true
[bridge]
listen = "0.0.0.0:7444"
[volumes]
fsync_bound_ms = 5000
[[gpus]]
name = "RTX 3060"
vram_mib = 12288
"#;

fn mutated() -> impl Strategy<Value = String> {
    let bytes = AGENT_TOML.as_bytes().to_vec();
    let len = bytes.len();
    prop_oneof![
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
        (0..len).prop_map(move |n| String::from_utf8_lossy(&bytes[..n]).into_owned()),
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #[test]
    fn agent_config_never_panics(text in mutated()) {
        match parse_file(Path::new("agent.toml"), &text) {
            Ok(file) => {
                if let Err(e) = resolve(file, Overrides::default()) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn the_unmutated_file_resolves() {
    let file = parse_file(Path::new("agent.toml"), AGENT_TOML).expect("parse");
    let c = resolve(file, Overrides::default()).expect("resolve");
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9465")
    );
}
