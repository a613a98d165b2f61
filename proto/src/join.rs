//! Joining with a token (`mesh-agent join`, `meshctl certs join`). The key is made
//! here and never sent; the coordinator is verified against the CA the
//! token pins before the token leaves this host; files are written only
//! after the coordinator said yes, and never over existing ones.

use std::path::{Path, PathBuf};

use crate::transport::{self, ConnectOptions, ALPN_H2};
use crate::v1::join_service_client::JoinServiceClient;
use crate::v1::JoinRequest;
use mesh_certs::{Identity, JoinToken, Role};

/// What joining wrote.
#[derive(Debug)]
pub struct Joined {
    pub mesh: String,
    pub name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub not_after_unix: i64,
}

/// The join port of a coordinator given as HOST:PORT (its main port):
/// the same host, port `join_port`.
pub fn join_address(coordinator: &str, join_port: u16) -> Result<String, String> {
    let (host, _) = coordinator.rsplit_once(':').ok_or_else(|| {
        format!("coordinator address '{coordinator}' has no port; give HOST:PORT, e.g. 192.168.1.10:7443")
    })?;
    Ok(format!("{host}:{join_port}"))
}

/// Joins as `role` (agent or admin) named `name`, writing `ca.crt` and
/// `ROLE-NAME.crt/.key` into `certs_dir` once the coordinator said yes.
pub async fn join(
    join_addr: &str,
    token_text: &str,
    role: Role,
    name: &str,
    certs_dir: &Path,
) -> Result<Joined, String> {
    let token: JoinToken = token_text
        .parse()
        .map_err(|e: mesh_certs::Error| e.to_string())?;
    let (cert_path, key_path) = mesh_certs::leaf_paths(certs_dir, role, name);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(format!(
                "{} exists: this host already has a certificate for '{name}'; start the agent \
                 with it, or move it away to join again",
                p.display()
            ));
        }
    }
    // The mesh name is not known yet; any valid one serves for the CSR,
    // whose subject the coordinator ignores.
    let placeholder = Identity::new("mesh", role, name).map_err(|e| e.to_string())?;
    let request = mesh_certs::new_key_and_csr(&placeholder).map_err(|e| e.to_string())?;
    let tls = mesh_certs::MeshTls::join_client_config(&token.ca_fingerprint, &[ALPN_H2])
        .map_err(|e| e.to_string())?;
    let channel = transport::connect(join_addr, tls, &ConnectOptions::default())
        .await
        .map_err(|e| {
            let text = e.to_string();
            match transport::explain(&text) {
                Some(hint) => format!("cannot reach the join port {join_addr}: {text} ({hint})"),
                None => format!("cannot reach the join port {join_addr}: {text}"),
            }
        })?;
    let response = JoinServiceClient::new(channel)
        .join(JoinRequest {
            token: token.to_string(),
            name: name.to_string(),
            csr_pem: request.csr_pem.clone(),
            role: role.to_string(),
        })
        .await
        .map_err(|s| format!("the coordinator refused to join this host: {}", s.message()))?
        .into_inner();
    let fingerprint = mesh_certs::ca_fingerprint(&response.ca_pem).map_err(|e| e.to_string())?;
    if fingerprint != token.ca_fingerprint {
        return Err(format!(
            "the coordinator sent a CA ({fingerprint}) other than the one the token pins ({}); \
             nothing written",
            token.ca_fingerprint
        ));
    }
    // Check that it all fits together before anything is written.
    let tls =
        mesh_certs::MeshTls::from_pem(&response.ca_pem, &response.cert_chain_pem, &request.key_pem)
            .map_err(|e| format!("the certificate the coordinator sent is unusable: {e}"))?;
    if tls.identity().name != response.name || tls.identity().role != role {
        return Err(format!(
            "the coordinator issued {} instead of a {role} certificate for '{}'",
            tls.identity(),
            response.name
        ));
    }
    let (cert_path, key_path) = mesh_certs::leaf_paths(certs_dir, role, &response.name);
    let ca = mesh_certs::ca_cert_path(certs_dir);
    match std::fs::read_to_string(&ca) {
        Ok(existing) if existing == response.ca_pem => {}
        Ok(_) => {
            return Err(format!(
                "{} holds another CA; use an empty certificate directory to join this mesh",
                ca.display()
            ))
        }
        Err(_) => {
            mesh_certs::write_ca_cert(certs_dir, &response.ca_pem, false)
                .map_err(|e| e.to_string())?;
        }
    }
    mesh_certs::write_leaf(
        certs_dir,
        role,
        &response.name,
        &response.cert_chain_pem,
        &request.key_pem,
        false,
    )
    .map_err(|e| e.to_string())?;
    Ok(Joined {
        mesh: response.mesh,
        name: response.name,
        ca,
        cert: cert_path,
        key: key_path,
        not_after_unix: response.not_after_unix,
    })
}
