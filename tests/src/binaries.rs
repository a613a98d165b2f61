//! Finds the workspace's binaries next to the running test executable
//! (target/PROFILE/), or in $MESH_BIN_DIR.

use std::path::PathBuf;

pub fn path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MESH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            // target/debug/deps/test-abc -> target/debug
            let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` (or set MESH_BIN_DIR)",
        path.display()
    );
    path
}
