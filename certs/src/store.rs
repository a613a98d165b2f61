//! The on-disk layout of a certificate directory.
//!
//! ```text
//! DIR/ca.crt             the mesh CA certificate (0644)
//! DIR/ca.key             the mesh CA private key (0600)
//! DIR/intermediate.crt   an intermediate CA signed by ca.crt (optional, 0644)
//! DIR/intermediate.key   its private key (0600): what the coordinator signs with
//! DIR/ROLE-NAME.crt      a leaf certificate, e.g. agent-pc2.crt (0644)
//! DIR/ROLE-NAME.key      its private key (0600)
//! ```
//!
//! Files are written atomically (temporary file + rename) and never replaced unless the
//! caller passes `force`. The directory itself is created with mode 0700.

mod listing;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

pub use listing::{list_dir, CertInfo, EXPIRY_WARNING_DAYS};

use crate::authority::{CertificateAuthority, Validity};
use crate::error::{init_hint, Error, Result};
use crate::identity::{Identity, Role};

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// `DIR/ca.crt`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

/// `DIR/ca.key`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// `(DIR/intermediate.crt, DIR/intermediate.key)`.
pub fn intermediate_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("intermediate.crt"), dir.join("intermediate.key"))
}

/// `(DIR/ROLE-NAME.crt, DIR/ROLE-NAME.key)`.
pub fn leaf_paths(dir: &Path, role: Role, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{role}-{name}.crt")),
        dir.join(format!("{role}-{name}.key")),
    )
}

/// What [`init_dir`] created.
#[derive(Clone, Debug)]
pub struct CaSummary {
    /// Name of the new mesh.
    pub mesh: String,
    /// Where the CA certificate was written.
    pub cert_path: PathBuf,
    /// Where the CA private key was written.
    pub key_path: PathBuf,
    /// When the CA expires.
    pub not_after: OffsetDateTime,
}

/// A leaf certificate to issue with [`issue_to_dir`].
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Role of the holder.
    pub role: Role,
    /// Name of the holder (node name for agents).
    pub name: String,
    /// Extra SANs: IP addresses or DNS names.
    pub sans: Vec<String>,
    /// Lifetime in days, at least 1.
    pub days: u32,
    /// Replace existing files.
    pub force: bool,
}

/// What [`issue_to_dir`] wrote.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The identity in the certificate.
    pub identity: Identity,
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the private key was written.
    pub key_path: PathBuf,
    /// When the certificate expires.
    pub not_after: OffsetDateTime,
}

/// Creates a new mesh CA in `dir` (created with mode 0700 if missing): `ca.crt` (0644) and
/// `ca.key` (0600), valid for `days` days.
///
/// Unless `force` is set, refuses when either file exists; both are checked before anything
/// is written, so an error leaves the directory as it was.
pub fn init_dir(dir: &Path, mesh: &str, days: u32, force: bool) -> Result<CaSummary> {
    check_days(days)?;
    let cert_path = ca_cert_path(dir);
    let key_path = ca_key_path(dir);
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let validity = Validity::days(days);
    let ca = CertificateAuthority::generate(mesh, validity)?;
    create_dir(dir)?;
    write_atomic(&key_path, ca.key_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, ca.cert_pem().as_bytes(), CERT_MODE)?;
    Ok(CaSummary {
        mesh: ca.mesh().to_string(),
        cert_path,
        key_path,
        not_after: validity.not_after,
    })
}

/// Creates a root CA (`ca.crt`, `ca.key`, valid `days`) and an
/// intermediate CA signed by it (`intermediate.crt`, `intermediate.key`,
/// valid `intermediate_days`) in `dir`. Keep `ca.key` offline: the
/// coordinator needs only `ca.crt` and the intermediate pair. Refuses,
/// writing nothing, when any of the four exists unless `force`.
pub fn init_dir_with_intermediate(
    dir: &Path,
    mesh: &str,
    days: u32,
    intermediate_days: u32,
    force: bool,
) -> Result<CaSummary> {
    check_days(days)?;
    check_days(intermediate_days)?;
    let cert_path = ca_cert_path(dir);
    let key_path = ca_key_path(dir);
    let (icert, ikey) = intermediate_paths(dir);
    if !force {
        refuse_existing(&[&cert_path, &key_path, &icert, &ikey])?;
    }
    let validity = Validity::days(days);
    let (root, inter) = CertificateAuthority::generate_root_and_intermediate(
        mesh,
        validity,
        Validity::days(intermediate_days.min(days)),
    )?;
    create_dir(dir)?;
    write_atomic(&key_path, root.key_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, root.cert_pem().as_bytes(), CERT_MODE)?;
    write_atomic(&ikey, inter.key_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&icert, inter.cert_pem().as_bytes(), CERT_MODE)?;
    Ok(CaSummary {
        mesh: root.mesh().to_string(),
        cert_path,
        key_path,
        not_after: validity.not_after,
    })
}

/// The CA that signs leaves from `dir`: the intermediate when
/// `intermediate.crt` and `intermediate.key` are there, else `ca.crt` and
/// `ca.key`. Errors name the files and how to create them.
pub fn load_signing_ca(dir: &Path) -> Result<CertificateAuthority> {
    let (icert, ikey) = intermediate_paths(dir);
    if icert.exists() && ikey.exists() {
        let cert_pem = read_text(&icert, "read intermediate CA certificate", || {
            init_hint(dir)
        })?;
        let key_pem = read_text(&ikey, "read intermediate CA key", || init_hint(dir))?;
        return CertificateAuthority::load_named(
            &cert_pem,
            &format!("intermediate CA certificate {}", icert.display()),
            &key_pem,
            &format!("intermediate CA key {}", ikey.display()),
        );
    }
    load_ca(dir)
}

/// Writes a leaf certificate (chain PEM) and its key as `ROLE-NAME.crt`
/// (0644) and `ROLE-NAME.key` (0600), atomically, key first. Existing
/// files are replaced only with `force` (renewal passes it).
pub fn write_leaf(
    dir: &Path,
    role: Role,
    name: &str,
    cert_pem: &str,
    key_pem: &str,
    force: bool,
) -> Result<(PathBuf, PathBuf)> {
    let (cert_path, key_path) = leaf_paths(dir, role, name);
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    create_dir(dir)?;
    write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, cert_pem.as_bytes(), CERT_MODE)?;
    Ok((cert_path, key_path))
}

/// Writes `contents` over `path` atomically: mode 0600 when `secret`
/// (a key), 0644 otherwise.
pub fn write_file_atomic(path: &Path, contents: &str, secret: bool) -> Result<()> {
    write_atomic(
        path,
        contents.as_bytes(),
        if secret { KEY_MODE } else { CERT_MODE },
    )
}

/// Writes the mesh's root CA certificate as `DIR/ca.crt` (0644), unless
/// one is there already and `force` is not given.
pub fn write_ca_cert(dir: &Path, ca_pem: &str, force: bool) -> Result<PathBuf> {
    let path = ca_cert_path(dir);
    if !force {
        refuse_existing(&[&path])?;
    }
    create_dir(dir)?;
    write_atomic(&path, ca_pem.as_bytes(), CERT_MODE)?;
    Ok(path)
}

/// Issues a leaf certificate from the CA in `dir` for `req.role`/`req.name` in the CA's mesh
/// and writes `ROLE-NAME.key` (0600) and `ROLE-NAME.crt` (0644), atomically. Existing files
/// are only replaced with `req.force`.
pub fn issue_to_dir(dir: &Path, req: &IssueRequest) -> Result<IssuedCert> {
    check_days(req.days)?;
    let ca = load_signing_ca(dir)?;
    let identity = Identity::new(ca.mesh(), req.role, &req.name)?;
    let (cert_path, key_path) = leaf_paths(dir, req.role, &req.name);
    if !req.force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let leaf = ca.issue(&identity, &req.sans, Validity::days(req.days))?;
    write_atomic(&key_path, leaf.key_pem.as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, leaf.cert_pem.as_bytes(), CERT_MODE)?;
    Ok(IssuedCert {
        identity,
        cert_path,
        key_path,
        not_after: leaf.not_after,
    })
}

/// Loads `DIR/ca.crt` and `DIR/ca.key`; errors name the file and how to create a CA.
fn load_ca(dir: &Path) -> Result<CertificateAuthority> {
    let cert_path = ca_cert_path(dir);
    let key_path = ca_key_path(dir);
    let cert_pem = read_text(&cert_path, "read CA certificate", || init_hint(dir))?;
    let key_pem = read_text(&key_path, "read CA key", || init_hint(dir))?;
    CertificateAuthority::load_named(
        &cert_pem,
        &format!("CA certificate {}", cert_path.display()),
        &key_pem,
        &format!("CA key {}", key_path.display()),
    )
}

/// Reads a UTF-8 file; when it does not exist the error carries `hint`.
pub(crate) fn read_text(
    path: &Path,
    action: &'static str,
    hint: impl FnOnce() -> String,
) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::io_hint(action, path, e, hint())
        } else {
            Error::io(action, path, e)
        }
    })?;
    String::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            path.display().to_string(),
            "it is not a text (PEM) file; expected a file written by `meshctl certs`",
        )
    })
}

fn check_days(days: u32) -> Result<()> {
    if days == 0 {
        return Err(Error::InvalidValidity(
            "a lifetime of 0 days would expire at once; give at least 1 day".to_string(),
        ));
    }
    Ok(())
}

/// Fails with [`Error::AlreadyExists`] for the first path that exists.
fn refuse_existing(paths: &[&Path]) -> Result<()> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(Error::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("check", path, e)),
        }
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700 when it does not exist yet.
fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    #[cfg(not(unix))]
    let _ = DIR_MODE;
    builder
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Writes `contents` to `path` through a temporary file in the same directory that gets
/// `mode` before any byte is written, then renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{nanos}", std::process::id()));
    let result = write_new_file(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io("write", path, e)));
    if result.is_err() {
        // Best effort: do not leave a half-written temporary file behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    // The umask may have removed bits; set the exact mode before writing.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", path, e))
}
