//! Mesh identities: `spiffe://MESH/ROLE/NAME`, and the naming rule for MESH and NAME.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// URI scheme prefix of every mesh identity.
pub(crate) const SPIFFE_PREFIX: &str = "spiffe://";

/// What a certificate holder is in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The coordinator that node agents and admins talk to.
    Coordinator,
    /// A node agent running on one machine.
    Agent,
    /// An operator using `meshctl`.
    Admin,
}

impl Role {
    /// All roles, in display order.
    pub const ALL: [Role; 3] = [Role::Coordinator, Role::Agent, Role::Admin];

    /// The lowercase name used in URIs, file names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::UnknownRole(s.to_string()))
    }
}

/// Who a certificate holder is: `spiffe://MESH/ROLE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Name of the mesh (one DNS label).
    pub mesh: String,
    /// Role in the mesh.
    pub role: Role,
    /// Name of the holder within its role (one DNS label), e.g. a node name.
    pub name: String,
}

impl Identity {
    /// Builds an identity after checking both names with [`validate_name`].
    pub fn new(mesh: &str, role: Role, name: &str) -> Result<Identity> {
        validate_name("mesh name", mesh)?;
        let what = match role {
            Role::Agent => "node name",
            Role::Coordinator => "coordinator name",
            Role::Admin => "admin name",
        };
        validate_name(what, name)?;
        Ok(Identity {
            mesh: mesh.to_string(),
            role,
            name: name.to_string(),
        })
    }

    /// The SPIFFE URI of this identity, e.g. `spiffe://mesh/agent/pc2`.
    pub fn uri(&self) -> String {
        format!("{SPIFFE_PREFIX}{}/{}/{}", self.mesh, self.role, self.name)
    }

    /// Parses `spiffe://MESH/ROLE/NAME`.
    pub fn parse_uri(uri: &str) -> Result<Identity> {
        let invalid = |reason: String| Error::InvalidIdentity {
            uri: uri.to_string(),
            reason,
        };
        let rest = uri
            .strip_prefix(SPIFFE_PREFIX)
            .ok_or_else(|| invalid(format!("it does not start with {SPIFFE_PREFIX}")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [mesh, role, name] = parts[..] else {
            return Err(invalid(format!(
                "it has {} path segment(s) after {SPIFFE_PREFIX}, expected 3",
                parts.len()
            )));
        };
        let role: Role = role.parse().map_err(|e: Error| invalid(e.to_string()))?;
        Identity::new(mesh, role, name).map_err(|e| invalid(e.to_string()))
    }

    /// The identity carried by a leaf certificate (DER): its single `spiffe://` URI SAN.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity> {
        Identity::from_cert_der_named(der, "certificate")
    }

    /// [`Identity::from_cert_der`] with the name (usually a file path) used in errors.
    pub(crate) fn from_cert_der_named(der: &[u8], what: &str) -> Result<Identity> {
        let cert = crate::x509::parse_der(der, what)?;
        crate::x509::check_leaf_usage(&cert, what)?;
        let uris = crate::x509::spiffe_uris(&cert, what)?;
        match uris.as_slice() {
            [uri] => Identity::parse_uri(uri),
            [] => Err(Error::invalid(
                what,
                "it carries no spiffe:// URI SAN, so it is not a mesh identity; issue \
                 certificates with the mesh CA (`meshctl certs issue`)",
            )),
            many => Err(Error::invalid(
                what,
                format!(
                    "it carries {} spiffe:// URI SANs ({}), a mesh certificate must carry \
                     exactly one",
                    many.len(),
                    many.join(", ")
                ),
            )),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Checks that `name` is a DNS label: 1 to 63 characters of `a-z`, `0-9` and `-`, not starting
/// or ending with `-`. `what` names the thing in the error ("mesh name", "node name").
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidName {
        what: what.to_string(),
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    let len = name.chars().count();
    if len > 63 {
        return Err(invalid(format!("it is {len} characters long")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(invalid(format!("character {c:?} is not allowed")));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("it starts or ends with '-'".to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_validation_table() {
        let long_ok = "a".repeat(63);
        let too_long = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("pc2", true),
            ("a", true),
            ("0", true),
            ("gpu-node-01", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("-pc", false),
            ("pc-", false),
            ("PC2", false),
            ("pc_2", false),
            ("pc.lan", false),
            ("pc 2", false),
            ("pc/2", false),
            ("pé", false),
        ];
        for (name, ok) in cases {
            let result = validate_name("node name", name);
            assert_eq!(result.is_ok(), *ok, "{name:?}: {result:?}");
            if let Err(e) = result {
                let msg = e.to_string();
                assert!(msg.contains("node name"), "{msg}");
                assert!(msg.contains("1 to 63 characters"), "{msg}");
            }
        }
    }

    #[test]
    fn role_display_and_parse() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("coordinator, agent, admin"), "{err}");
    }

    #[test]
    fn uri_round_trip() {
        let id = Identity::new("prod", Role::Agent, "pc2").unwrap();
        assert_eq!(id.uri(), "spiffe://prod/agent/pc2");
        assert_eq!(id.to_string(), id.uri());
        assert_eq!(Identity::parse_uri(&id.uri()).unwrap(), id);
        for role in Role::ALL {
            let id = Identity::new("m", role, "x-1").unwrap();
            assert_eq!(Identity::parse_uri(&id.uri()).unwrap(), id);
        }
    }

    #[test]
    fn bad_uris_are_rejected() {
        for uri in [
            "http://prod/agent/pc2",
            "spiffe://prod/agent",
            "spiffe://prod/agent/pc2/extra",
            "spiffe://prod/root/pc2",
            "spiffe://Prod/agent/pc2",
            "spiffe://prod/agent/",
            "spiffe://prod",
        ] {
            let err = Identity::parse_uri(uri).unwrap_err().to_string();
            assert!(err.contains(uri), "{err}");
        }
    }

    #[test]
    fn new_validates_names() {
        let err = Identity::new("Prod", Role::Agent, "pc2").unwrap_err();
        assert!(err.to_string().contains("mesh name"), "{err}");
        let err = Identity::new("prod", Role::Agent, "pc_2").unwrap_err();
        assert!(err.to_string().contains("node name"), "{err}");
    }
}
