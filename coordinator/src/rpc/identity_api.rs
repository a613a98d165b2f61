//! Joining, renewal and revocation: the Join service on the join port, the
//! agents' and admins' RenewCertificate, and the admin calls for tokens,
//! identities and removal.

use std::sync::Arc;

use mesh_certs::{Identity, JoinToken, Role};
use mesh_proto::v1::join_service_server::JoinService;
use mesh_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, IdentityInfo, JoinRequest, JoinResponse,
    JoinTokenInfo, ListIdentitiesResponse, ListTokensResponse, RemoveNodeResponse,
    RenewCertificateResponse, RevokeCertificateResponse,
};
use tonic::{Request, Response, Status};

use crate::state::identities::JoinError;
use crate::state::registry::Now;
use crate::state::signer::Signer;
use crate::state::Shared;

/// Tokens live at most this long.
const MAX_TOKEN_TTL_S: u64 = 7 * 24 * 3600;
const DEFAULT_TOKEN_TTL_S: u64 = 3600;
const MAX_TOKEN_USES: u32 = 1000;

fn now_unix() -> i64 {
    Now::system().unix_ms / 1000
}

fn signer(shared: &Shared) -> Result<Arc<Signer>, Status> {
    shared.signer.get().cloned().ok_or_else(|| {
        Status::failed_precondition(
            "this coordinator holds no signing CA, so it cannot issue certificates: put \
             intermediate.crt and intermediate.key (from `meshctl certs init --intermediate`) \
             or ca.key in its certificate directory and restart it",
        )
    })
}

/// The Join service: the caller has no certificate; the token is its
/// credential. Refusals change nothing.
pub struct JoinApi {
    shared: Arc<Shared>,
}

impl JoinApi {
    pub fn new(shared: Arc<Shared>) -> JoinApi {
        JoinApi { shared }
    }
}

#[tonic::async_trait]
impl JoinService for JoinApi {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let shared = &self.shared;
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let req = request.into_inner();
        let refuse = |status: Status| {
            shared.metrics.count_call_refused("join");
            shared.events.record(
                "admin",
                &req.name,
                "",
                format!("join from {peer} refused: {}", status.message()),
            );
            tracing::warn!(%peer, name = %req.name, reason = status.message(), "join refused");
            status
        };
        let token: JoinToken = req
            .token
            .parse()
            .map_err(|e: mesh_certs::Error| refuse(Status::invalid_argument(e.to_string())))?;
        let role = if req.role.is_empty() {
            Role::Agent
        } else {
            req.role
                .parse::<Role>()
                .map_err(|e| refuse(Status::invalid_argument(e.to_string())))?
        };
        if role == Role::Coordinator {
            return Err(refuse(Status::permission_denied(
                "coordinators do not join with tokens",
            )));
        }
        let signer = signer(shared).map_err(refuse)?;
        let mesh = shared.mesh.clone();
        // A name is held by a live certificate or an open stream; a node
        // that went away with an expired certificate can rejoin.
        let registered = |name: &str| shared.sessions.connected().iter().any(|n| n == name);
        let result = shared.identities.join(
            crate::state::identities::JoinAsk {
                ca_fingerprint: signer.fingerprint(),
                token: &token,
                role,
                name: &req.name,
                now_unix: now_unix(),
            },
            registered,
            |admitted| {
                let identity = Identity::new(&mesh, admitted.role, &admitted.name)
                    .map_err(|e| e.to_string())?;
                let signed = signer.sign(&identity, &req.csr_pem)?;
                let record = signed.record.clone();
                Ok(((signed, admitted.name.clone()), record))
            },
        );
        let (signed, name) = match result {
            Ok(ok) => ok,
            Err(JoinError::Refused(r)) => {
                return Err(refuse(Status::permission_denied(r.to_string())))
            }
            Err(JoinError::Failed(e)) => return Err(refuse(Status::invalid_argument(e))),
        };
        shared.events.record(
            "admin",
            &name,
            "",
            format!(
                "{} joined from {peer} with token {} (certificate {} until {})",
                signed.record.identity,
                token.id,
                signed.record.serial,
                signed.record.not_after_unix
            ),
        );
        tracing::info!(identity = %signed.record.identity, %peer, "joined");
        Ok(Response::new(JoinResponse {
            cert_chain_pem: signed.chain_pem,
            ca_pem: signer.root_pem().to_string(),
            mesh,
            name,
            not_after_unix: signed.record.not_after_unix,
        }))
    }
}

/// A new certificate for `caller` over `csr_pem` (agent or admin renewal).
pub fn renew(
    shared: &Shared,
    caller: &Identity,
    csr_pem: &str,
) -> Result<RenewCertificateResponse, Status> {
    let signer = signer(shared)?;
    let signed = signer
        .sign(caller, csr_pem)
        .map_err(Status::invalid_argument)?;
    shared
        .identities
        .record_issued(signed.record.clone())
        .map_err(|e| Status::unavailable(format!("cannot record the certificate: {e}")))?;
    tracing::info!(identity = %caller, serial = %signed.record.serial, "certificate renewed");
    Ok(RenewCertificateResponse {
        cert_chain_pem: signed.chain_pem,
        not_after_unix: signed.record.not_after_unix,
    })
}

pub fn create_token(
    shared: &Shared,
    caller: &Identity,
    req: CreateTokenRequest,
) -> Result<CreateTokenResponse, Status> {
    let signer = signer(shared)?;
    let role = match req.role.as_str() {
        "" | "agent" => Role::Agent,
        "admin" => Role::Admin,
        other => {
            return Err(Status::invalid_argument(format!(
                "tokens are for role agent or admin, not '{other}'"
            )))
        }
    };
    let name = if req.name.is_empty() {
        None
    } else {
        mesh_certs::validate_name("name", &req.name)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Some(req.name.clone())
    };
    let ttl = if req.ttl_seconds == 0 {
        DEFAULT_TOKEN_TTL_S
    } else {
        req.ttl_seconds
    };
    if ttl > MAX_TOKEN_TTL_S {
        return Err(Status::invalid_argument(format!(
            "a token lives at most {MAX_TOKEN_TTL_S} s (7 days), not {ttl} s"
        )));
    }
    let uses = if req.uses == 0 { 1 } else { req.uses };
    if uses > MAX_TOKEN_USES {
        return Err(Status::invalid_argument(format!(
            "a token admits at most {MAX_TOKEN_USES} hosts, not {uses}"
        )));
    }
    let (token, record) = shared
        .identities
        .create_token(
            signer.fingerprint(),
            crate::state::identities::TokenSpec {
                role,
                name,
                ttl_s: ttl,
                uses,
                by: caller.uri(),
            },
            now_unix(),
        )
        .map_err(|e| Status::unavailable(format!("cannot record the token: {e}")))?;
    shared.events.record(
        "admin",
        "",
        "",
        format!(
            "CreateToken by {caller}: token {} for role {role}, {uses} use(s), {ttl} s",
            record.id
        ),
    );
    Ok(CreateTokenResponse {
        token: token.to_string(),
        id: record.id,
        expires_unix: record.expires_unix,
    })
}

pub fn list_tokens(shared: &Shared) -> ListTokensResponse {
    ListTokensResponse {
        tokens: shared
            .identities
            .tokens()
            .into_iter()
            .map(|t| JoinTokenInfo {
                id: t.id,
                role: t.role,
                name: t.name.unwrap_or_default(),
                expires_unix: t.expires_unix,
                uses_left: t.uses_left,
                created_by: t.created_by,
                created_unix: t.created_unix,
            })
            .collect(),
    }
}

pub fn list_identities(shared: &Shared) -> ListIdentitiesResponse {
    let mut identities: Vec<IdentityInfo> = shared
        .identities
        .certs()
        .into_iter()
        .map(|c| IdentityInfo {
            identity: c.identity,
            serial: c.serial,
            not_after_unix: c.not_after_unix,
            issued_unix: c.issued_unix,
            revoked: c.revoked,
        })
        .collect();
    identities
        .sort_by(|a, b| (&a.identity, a.not_after_unix).cmp(&(&b.identity, b.not_after_unix)));
    ListIdentitiesResponse { identities }
}

/// After a revocation: handshakes refuse it at once, the agent's stream
/// ends, and the directory (which carries the list) goes to every agent.
pub fn apply_revocations(shared: &Shared) {
    refuse_revoked_handshakes(shared);
    shared.refresh_directory(Now::system().unix_ms.max(0) as u64);
}

/// The coordinator's own verifiers refuse the revoked serials from now on.
fn refuse_revoked_handshakes(shared: &Shared) {
    if let Some(r) = shared.revocations.get() {
        r.replace(
            shared
                .identities
                .revoked_serials(Now::system().unix_ms / 1000),
        );
    }
}

pub fn remove_node(
    shared: &Shared,
    caller: &Identity,
    name: &str,
) -> Result<RemoveNodeResponse, Status> {
    let revoked = shared
        .identities
        .revoke_identity(Role::Agent, name)
        .map_err(|e| Status::unavailable(format!("cannot record the revocation: {e}")))?;
    let known = shared.registry().is_known(name);
    if revoked.is_empty() && !known {
        return Err(Status::not_found(format!(
            "no node '{name}' is known here (see `meshctl nodes`)"
        )));
    }
    // Refused before its stream closes, so its reconnect is; the
    // directory (with the list) goes out once, after it left the registry.
    refuse_revoked_handshakes(shared);
    shared.sessions.close(
        name,
        Status::permission_denied(format!(
            "node {name} was removed from the mesh by {caller}; its certificate is revoked"
        )),
    );
    shared.registry().remove(name);
    shared.refresh_directory(Now::system().unix_ms.max(0) as u64);
    shared.events.record(
        "admin",
        name,
        "",
        format!(
            "RemoveNode by {caller}: node {name} removed, certificate(s) {} revoked",
            revoked.join(", ")
        ),
    );
    Ok(RemoveNodeResponse {
        revoked_serials: revoked,
    })
}

pub fn revoke_certificate(
    shared: &Shared,
    caller: &Identity,
    serial: &str,
) -> Result<RevokeCertificateResponse, Status> {
    let identity = shared
        .identities
        .revoke_serial(serial)
        .map_err(Status::invalid_argument)?;
    apply_revocations(shared);
    if let Some(id) = identity
        .as_deref()
        .and_then(|u| Identity::parse_uri(u).ok())
    {
        if id.role == Role::Agent {
            shared.sessions.close(
                &id.name,
                Status::permission_denied(format!("certificate {serial} was revoked by {caller}")),
            );
        }
    }
    shared.events.record(
        "admin",
        "",
        "",
        format!(
            "RevokeCertificate by {caller}: serial {serial} ({})",
            identity.as_deref().unwrap_or("not seen here")
        ),
    );
    Ok(RevokeCertificateResponse {
        identity: identity.unwrap_or_default(),
    })
}
