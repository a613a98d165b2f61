//! Who is calling: the mesh identity in the caller's client certificate,
//! checked against the role each RPC requires.

use mesh_certs::{Identity, Role};
use tonic::{Request, Status};

use crate::state::Shared;

/// RPCs that change the mesh: each allowed call is recorded in the event
/// history (who, what, when). Reads are not (a dashboard or a script
/// polling `meshctl nodes` would drown the history); every refused call
/// is, read or not.
/// (RunCommand records its own, with the action, and not for logs.)
const CHANGES_THE_MESH: &[&str] = &[
    "SetContainers",
    "ApplyTopology",
    "Switchover",
    "RenewCertificate",
];

/// Returns the caller's identity if it holds `role` in the coordinator's
/// mesh, else the refusal, counted in its metrics and recorded in its
/// event history. The TLS layer has already verified the chain to the
/// mesh CA; this decides what that identity may do.
pub fn require<T>(
    request: &Request<T>,
    role: Role,
    shared: &Shared,
    rpc: &str,
) -> Result<Identity, Status> {
    let mesh = shared.mesh.as_str();
    let result = identify(request)
        .map_err(|s| ("no_identity", s))
        .and_then(|id| not_revoked(request, shared, id).map_err(|s| ("revoked", s)))
        .and_then(|id| {
            let why = if id.mesh != mesh {
                "wrong_mesh"
            } else {
                "wrong_role"
            };
            check(&id, role, mesh, rpc)
                .map(|_| id)
                .map_err(|s| (why, s))
        });
    match result {
        Ok(id) => {
            if CHANGES_THE_MESH.contains(&rpc) {
                shared
                    .events
                    .record("admin", "", "", format!("{rpc} by {id}: allowed"));
            }
            Ok(id)
        }
        Err((why, status)) => {
            shared.metrics.count_call_refused(why);
            tracing::warn!(rpc, reason = status.message(), "call refused");
            shared.events.record(
                "admin",
                "",
                "",
                format!("{rpc} refused: {}", status.message()),
            );
            Err(status)
        }
    }
}

/// Refuses a certificate revoked after its connection was made (the
/// handshake refuses it on any new connection); notes the certificates it
/// sees, so `meshctl nodes remove` can revoke ones issued offline.
fn not_revoked<T>(request: &Request<T>, shared: &Shared, id: Identity) -> Result<Identity, Status> {
    let Some(certs) = request.peer_certs() else {
        return Ok(id);
    };
    let Some(facts) = certs.first().and_then(|c| mesh_certs::leaf_facts(c).ok()) else {
        return Ok(id);
    };
    if shared.identities.is_revoked(&facts.serial) {
        return Err(Status::permission_denied(format!(
            "certificate {} of {id} is revoked; this identity was removed from the mesh",
            crate::state::identities::serial_hex(&facts.serial)
        )));
    }
    shared.identities.record_seen(
        crate::state::identities::CertRecord {
            identity: id.uri(),
            role: id.role.to_string(),
            name: id.name.clone(),
            serial: crate::state::identities::serial_hex(&facts.serial),
            not_after_unix: facts.not_after_unix,
            issued_unix: 0,
            revoked: false,
        },
        facts.not_before_unix.max(0),
    );
    Ok(id)
}

fn identify<T>(request: &Request<T>) -> Result<Identity, Status> {
    let certs = request.peer_certs().ok_or_else(|| {
        Status::unauthenticated(
            "no client certificate: connect with a certificate issued by `meshctl certs issue`",
        )
    })?;
    mesh_certs::peer_identity(&certs).map_err(|e| {
        Status::unauthenticated(format!("client certificate carries no mesh identity: {e}"))
    })
}

/// The pure part: may `id` call `rpc`, which needs `role` in `mesh`?
pub fn check(id: &Identity, role: Role, mesh: &str, rpc: &str) -> Result<(), Status> {
    if id.mesh != mesh {
        return Err(Status::permission_denied(format!(
            "{id} belongs to mesh '{}', this coordinator serves mesh '{mesh}'",
            id.mesh
        )));
    }
    if id.role != role {
        return Err(Status::permission_denied(format!(
            "{rpc} needs a certificate with role {role}; {id} has role {}",
            id.role
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn role_and_mesh_are_enforced() {
        let agent = Identity::new("prod", Role::Agent, "pc2").unwrap();
        let admin = Identity::new("prod", Role::Admin, "ops").unwrap();
        let other = Identity::new("lab", Role::Admin, "ops").unwrap();
        assert!(check(&admin, Role::Admin, "prod", "ListNodes").is_ok());
        let denied = check(&agent, Role::Admin, "prod", "ListNodes").unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "ListNodes needs a certificate with role admin; spiffe://prod/agent/pc2 has role agent"
        );
        let wrong_mesh = check(&other, Role::Admin, "prod", "ListNodes").unwrap_err();
        assert!(wrong_mesh.message().contains("belongs to mesh 'lab'"));
    }
}
