//! Listing the certificates of a certificate directory, with their expiry state.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::error::{init_hint, Error, Result};
use crate::identity::Identity;
use crate::x509;

/// Certificates expiring in fewer days than this are flagged `expiring_soon`.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// One `*.crt` file of a certificate directory.
///
/// When the file cannot be read or parsed, `problem` says why and the certificate fields
/// (`is_ca`, `identity`, `mesh`, `sans`, dates) are empty or zero.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// The certificate file.
    pub path: PathBuf,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// The mesh identity of a leaf certificate.
    pub identity: Option<Identity>,
    /// The mesh it belongs to (CA or leaf).
    pub mesh: Option<String>,
    /// All subject alternative names as text: URIs, DNS names, IP addresses.
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whole days until `not_after` (negative once expired).
    pub expires_in_days: i64,
    /// Still valid, but for fewer than [`EXPIRY_WARNING_DAYS`] days.
    pub expiring_soon: bool,
    /// `not_after` has passed.
    pub expired: bool,
    /// Why this file is not a usable mesh certificate, if it is not.
    pub problem: Option<String>,
}

impl CertInfo {
    fn problem(path: &Path, problem: String) -> CertInfo {
        CertInfo {
            path: path.to_path_buf(),
            is_ca: false,
            identity: None,
            mesh: None,
            sans: Vec::new(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            expires_in_days: 0,
            expiring_soon: false,
            expired: false,
            problem: Some(problem),
        }
    }
}

/// Every `*.crt` file in `dir`, sorted by file name, as seen at `now`.
///
/// A file that cannot be read or parsed becomes an entry with `problem` set rather than
/// failing the whole listing; only an unreadable directory is an error.
pub fn list_dir(dir: &Path, now: OffsetDateTime) -> Result<Vec<CertInfo>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::io_hint("list directory", dir, e, init_hint(dir))
        } else {
            Error::io("list directory", dir, e)
        }
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        let path = entry.path();
        let is_crt = path.extension().is_some_and(|ext| ext == "crt");
        if is_crt && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(paths.iter().map(|p| inspect(p, now)).collect())
}

fn inspect(path: &Path, now: OffsetDateTime) -> CertInfo {
    match try_inspect(path, now) {
        Ok(info) => info,
        Err(e) => CertInfo::problem(path, e.to_string()),
    }
}

fn try_inspect(path: &Path, now: OffsetDateTime) -> Result<CertInfo> {
    let what = path.display().to_string();
    let pem = super::read_text(path, "read", String::new)?;
    let der = x509::first_cert_from_pem(&pem, &what)?;
    let cert = x509::parse_der(&der, &what)?;
    let is_ca = x509::is_ca(&cert);
    let sans = x509::render_sans(&cert, &what)?;
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();

    let mut problem = None;
    let mut identity = None;
    let mesh = if is_ca {
        match x509::ca_mesh(&cert, &what) {
            Ok(mesh) => Some(mesh),
            Err(e) => {
                problem = Some(e.to_string());
                None
            }
        }
    } else {
        match Identity::from_cert_der_named(&der, &what) {
            Ok(id) => {
                let mesh = id.mesh.clone();
                identity = Some(id);
                Some(mesh)
            }
            Err(e) => {
                problem = Some(e.to_string());
                None
            }
        }
    };

    let left = not_after - now;
    let expired = left < Duration::ZERO;
    Ok(CertInfo {
        path: path.to_path_buf(),
        is_ca,
        identity,
        mesh,
        sans,
        not_before,
        not_after,
        expires_in_days: left.whole_days(),
        expiring_soon: !expired && left < Duration::days(EXPIRY_WARNING_DAYS),
        expired,
        problem,
    })
}
