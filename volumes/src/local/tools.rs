//! The external tools the stack runs (`losetup`, `mkfs.ext4`, `e2fsck`),
//! found on PATH or in the sbin directories a root shell has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::error::LocalError;

/// A tool and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub const LOSETUP: Tool = Tool {
    name: "losetup",
    package: "util-linux",
};
pub const MKFS_EXT4: Tool = Tool {
    name: "mkfs.ext4",
    package: "e2fsprogs",
};
pub const E2FSCK: Tool = Tool {
    name: "e2fsck",
    package: "e2fsprogs",
};

/// Where `tool` is, or [`LocalError::ToolMissing`].
pub fn find(tool: Tool) -> Result<PathBuf, LocalError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool.name))
        .find(|p| is_executable(p))
        .ok_or(LocalError::ToolMissing {
            tool: tool.name,
            package: tool.package,
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `tool args…` to its end and returns its output, whatever its exit
/// status.
pub fn run(tool: Tool, args: &[&std::ffi::OsStr]) -> Result<Output, LocalError> {
    let bin = find(tool)?;
    Command::new(&bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| LocalError::io("running", bin, e))
}

/// `tool args…` as a readable command line, for errors.
pub fn command_line(tool: Tool, args: &[&std::ffi::OsStr]) -> String {
    let mut s = tool.name.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// [`LocalError::CommandFailed`] for a finished command.
pub fn failed(tool: Tool, args: &[&std::ffi::OsStr], out: &Output) -> LocalError {
    LocalError::CommandFailed {
        command: command_line(tool, args),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}
