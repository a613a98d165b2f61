//! The crate's error type. Every message names what is wrong and, where there is one, how to
//! fix it.

use std::io;
use std::path::{Path, PathBuf};

use crate::identity::Role;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while handling mesh certificates.
///
/// `Debug` shows the same text as `Display`: rustls renders custom verifier errors with
/// `{:?}`, and `fn main() -> Result<..>` prints errors that way too, so both stay readable.
#[derive(thiserror::Error)]
pub enum Error {
    /// A mesh, node or other name breaks the DNS-label naming rule.
    #[error(
        "invalid {what} '{name}': {reason}; a {what} must be 1 to 63 characters of a-z, 0-9 \
         and '-', and must not start or end with '-'"
    )]
    InvalidName {
        what: String,
        name: String,
        reason: String,
    },

    /// A role name that is not one of the mesh roles.
    #[error("unknown role '{0}': valid roles are coordinator, agent, admin")]
    UnknownRole(String),

    /// A string that is not a `spiffe://MESH/ROLE/NAME` identity.
    #[error("invalid mesh identity '{uri}': {reason}; expected spiffe://MESH/ROLE/NAME")]
    InvalidIdentity { uri: String, reason: String },

    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}{}", .path.display(), hint_suffix(.hint))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: Option<String>,
    },

    /// A file that would be replaced already exists and `force` was not given.
    #[error("refusing to overwrite {}: it exists; pass --force to replace it", .path.display())]
    AlreadyExists { path: PathBuf },

    /// A certificate, key or other input that cannot be used; `what` names it (usually with
    /// its file), `reason` says why and what to do.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A validity period that makes no sense.
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),

    /// Key or certificate generation failed inside rcgen.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// rustls refused to build a configuration.
    #[error("cannot build {what}: {source}")]
    Tls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },

    /// The peer presented no certificate at all.
    #[error(
        "peer presented no certificate; every mesh connection needs one issued by the mesh CA"
    )]
    NoPeerCertificate,

    /// The server's identity belongs to another mesh.
    #[error("server identity {identity} belongs to mesh '{mesh}', expected mesh '{expected}'")]
    PeerWrongMesh {
        identity: String,
        mesh: String,
        expected: String,
    },

    /// The server's identity has another role than the one the client expects.
    #[error("server identity {identity} has role {role}, expected {expected}")]
    PeerWrongRole {
        identity: String,
        role: Role,
        expected: Role,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; {h}"),
        None => String::new(),
    }
}

impl Error {
    /// An I/O error on `path` while trying to `action` it.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
            hint: None,
        }
    }

    /// Same as [`Error::io`], with a hint on how to fix it.
    pub(crate) fn io_hint(
        action: &'static str,
        path: &Path,
        source: io::Error,
        hint: impl Into<String>,
    ) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
            hint: Some(hint.into()),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn generate(what: impl Into<String>, source: rcgen::Error) -> Error {
        Error::Generate {
            what: what.into(),
            source,
        }
    }
}

/// How to create a missing CA in `dir`.
pub(crate) fn init_hint(dir: &Path) -> String {
    format!(
        "create a CA with `meshctl certs init --dir {}`",
        dir.display()
    )
}

/// How to obtain a missing leaf certificate in `dir`.
pub(crate) fn issue_hint(dir: &Path, role: Role, name: &str) -> String {
    format!(
        "issue one with `meshctl certs issue --dir {} --role {role} --name {name}`",
        dir.display()
    )
}
