//! The coordinator renews its own certificate from its signing CA at
//! about two thirds of its lifetime: a new key and CSR, the new chain
//! swapped into the TLS configurations it already serves with (no
//! restart, no connection dropped), and written back to its files.

use std::sync::Arc;
use std::time::Duration;

use mesh_certs::{MeshTls, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::state::signer::Signer;

use mesh_certs::renew_in;

pub async fn run(
    tls: MeshTls,
    signer: Arc<Signer>,
    files: Option<TlsFiles>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match tls.leaf() {
            Ok(leaf) => renew_in(leaf.not_before_unix, leaf.not_after_unix, now_unix()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read this coordinator's certificate; not renewing it");
                return;
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait.max(Duration::from_secs(1))) => {}
        }
        match renew_once(&tls, &signer, files.as_ref()) {
            Ok(not_after) => tracing::info!(not_after, "coordinator certificate renewed"),
            Err(e) => {
                tracing::error!(error = %e, "cannot renew this coordinator's certificate; retrying in 10 s");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn renew_once(tls: &MeshTls, signer: &Signer, files: Option<&TlsFiles>) -> Result<i64, String> {
    let request = mesh_certs::new_key_and_csr(tls.identity()).map_err(|e| e.to_string())?;
    let signed = signer.sign(tls.identity(), &request.csr_pem)?;
    tls.renew(&signed.chain_pem, &request.key_pem)
        .map_err(|e| e.to_string())?;
    if let Some(f) = files {
        write_pair(f, &signed.chain_pem, &request.key_pem)?;
    }
    Ok(signed.record.not_after_unix)
}

/// Writes a renewed pair over the old files (key first; both atomic).
pub fn write_pair(files: &TlsFiles, chain_pem: &str, key_pem: &str) -> Result<(), String> {
    mesh_certs::write_file_atomic(&files.key, key_pem, true)
        .and_then(|()| mesh_certs::write_file_atomic(&files.cert, chain_pem, false))
        .map_err(|e| e.to_string())
}
