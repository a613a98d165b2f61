//! The agent renews its certificate over its coordinator connection at
//! about two thirds of the certificate's lifetime: a new key and CSR made
//! here (the key never leaves the host), the new chain swapped into every
//! TLS configuration the agent already uses (coordinator channel, bridge
//! tunnels) without a restart, and written back to its files.

use std::time::Duration;

use mesh_certs::{MeshTls, TlsFiles};
use mesh_proto::v1::agent_service_client::AgentServiceClient;
use mesh_proto::v1::RenewCertificateRequest;
use tonic::transport::Channel;

/// What renewing needs: the live TLS material and where its files are.
#[derive(Clone, Debug)]
pub struct Renewal {
    pub tls: MeshTls,
    /// None: renewed in memory only (tests).
    pub files: Option<TlsFiles>,
}

use mesh_certs::renew_in;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Renews whenever due while the session lasts (the caller aborts it
/// with the session). A failure is retried after a tenth of the time
/// left (1 s to 60 s); an expired certificate gets the message that
/// says to rejoin.
pub async fn run(mut client: AgentServiceClient<Channel>, renewal: Renewal) {
    loop {
        let leaf = match renewal.tls.leaf() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read this agent's certificate; not renewing it");
                return;
            }
        };
        let now = now_unix();
        if leaf.not_after_unix <= now {
            tracing::error!(
                "this agent's certificate expired at {}; the coordinator will refuse it: \
                 rejoin with a new token (`meshctl token create`, then `mesh-agent join`)",
                leaf.not_after_unix
            );
            return;
        }
        tokio::time::sleep(renew_in(leaf.not_before_unix, leaf.not_after_unix, now)).await;
        match renew_once(&mut client, &renewal).await {
            Ok(not_after) => tracing::info!(not_after, "certificate renewed"),
            Err(e) => {
                let left = (leaf.not_after_unix - now_unix()).max(0) as u64;
                let retry = Duration::from_secs((left / 10).clamp(1, 60));
                tracing::warn!(error = %e, ?retry, "certificate renewal failed");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

async fn renew_once(
    client: &mut AgentServiceClient<Channel>,
    renewal: &Renewal,
) -> Result<i64, String> {
    let request = mesh_certs::new_key_and_csr(renewal.tls.identity()).map_err(|e| e.to_string())?;
    let response = client
        .renew_certificate(RenewCertificateRequest {
            csr_pem: request.csr_pem.clone(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    renewal
        .tls
        .renew(&response.cert_chain_pem, &request.key_pem)
        .map_err(|e| e.to_string())?;
    if let Some(files) = &renewal.files {
        mesh_certs::write_file_atomic(&files.key, &request.key_pem, true)
            .and_then(|()| {
                mesh_certs::write_file_atomic(&files.cert, &response.cert_chain_pem, false)
            })
            .map_err(|e| format!("renewed, but cannot write the files: {e}"))?;
    }
    Ok(response.not_after_unix)
}
