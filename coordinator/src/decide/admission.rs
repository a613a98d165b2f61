//! Who may join with a token: a pure decision over the stored tokens, the
//! names already taken and `now`. The caller consumes a use only when this
//! admits, and changes nothing when it refuses.

use std::collections::BTreeMap;

use mesh_certs::{JoinToken, Role};
use serde::{Deserialize, Serialize};

/// A join token as the coordinator keeps it: never the secret, only its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub digest: String,
    pub role: String,
    /// The only name it admits (None: the joining host chooses).
    pub name: Option<String>,
    pub expires_unix: i64,
    pub uses_left: u32,
    pub created_by: String,
    pub created_unix: i64,
}

/// What a successful join is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub token_id: String,
    pub role: Role,
    pub name: String,
}

/// Why a join is refused; the text is what the joining host prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token pins CA {pinned}, but this coordinator's mesh CA is {ours}: the token is for another mesh")]
    OtherCa { pinned: String, ours: String },
    #[error("token {0} is not known here (never created, revoked, or used up and removed); ask for a new one with `meshctl token create`")]
    Unknown(String),
    #[error("token {0} does not match its stored digest; copy the whole token as `meshctl token create` printed it")]
    WrongSecret(String),
    #[error("token {id} expired {ago} s ago; ask for a new one with `meshctl token create`")]
    Expired { id: String, ago: i64 },
    #[error("token {0} has no uses left; ask for a new one with `meshctl token create`")]
    UsedUp(String),
    #[error("token {id} is for role {token_role}, not {asked}; create one with `meshctl token create --role {asked}`")]
    WrongRole {
        id: String,
        token_role: String,
        asked: String,
    },
    #[error("token {id} admits only the name '{token_name}', not '{asked}'; join with --name {token_name}")]
    WrongName {
        id: String,
        token_name: String,
        asked: String,
    },
    #[error("{0}")]
    BadName(String),
    #[error("the name '{0}' is taken by a member that holds a valid certificate; pick another name, or remove it first (`meshctl nodes remove {0}`)")]
    NameTaken(String),
}

/// Whether `token` may join as `role`/`name` now.
pub fn admit(
    tokens: &BTreeMap<String, TokenRecord>,
    our_ca_fingerprint: &str,
    token: &JoinToken,
    role: Role,
    name: &str,
    now_unix: i64,
    name_taken: impl Fn(Role, &str) -> bool,
) -> Result<Admitted, Refusal> {
    if token.ca_fingerprint != our_ca_fingerprint {
        return Err(Refusal::OtherCa {
            pinned: token.ca_fingerprint.clone(),
            ours: our_ca_fingerprint.to_string(),
        });
    }
    let record = tokens
        .get(&token.id)
        .ok_or_else(|| Refusal::Unknown(token.id.clone()))?;
    if !token.matches(&record.digest) {
        return Err(Refusal::WrongSecret(token.id.clone()));
    }
    if now_unix >= record.expires_unix {
        return Err(Refusal::Expired {
            id: token.id.clone(),
            ago: now_unix - record.expires_unix,
        });
    }
    if record.uses_left == 0 {
        return Err(Refusal::UsedUp(token.id.clone()));
    }
    if record.role != role.as_str() {
        return Err(Refusal::WrongRole {
            id: token.id.clone(),
            token_role: record.role.clone(),
            asked: role.to_string(),
        });
    }
    let name = match (&record.name, name) {
        (Some(only), "") => only.clone(),
        (Some(only), asked) if only != asked => {
            return Err(Refusal::WrongName {
                id: token.id.clone(),
                token_name: only.clone(),
                asked: asked.to_string(),
            })
        }
        (_, asked) => asked.to_string(),
    };
    mesh_certs::validate_name("name", &name).map_err(|e| Refusal::BadName(e.to_string()))?;
    if name_taken(role, &name) {
        return Err(Refusal::NameTaken(name));
    }
    Ok(Admitted {
        token_id: token.id.clone(),
        role,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: Option<&str>) -> (BTreeMap<String, TokenRecord>, JoinToken, String) {
        let fp = "ab".repeat(32);
        let token = JoinToken::generate(&fp).unwrap();
        let record = TokenRecord {
            id: token.id.clone(),
            digest: token.secret_digest(),
            role: "agent".into(),
            name: name.map(str::to_string),
            expires_unix: 1000,
            uses_left: 1,
            created_by: "spiffe://m/admin/ops".into(),
            created_unix: 0,
        };
        (BTreeMap::from([(token.id.clone(), record)]), token, fp)
    }

    #[test]
    fn admits_a_fresh_token_and_refuses_each_flaw_with_its_reason() {
        let (tokens, token, fp) = setup(None);
        let free = |_: Role, _: &str| false;
        let ok = admit(&tokens, &fp, &token, Role::Agent, "pc3", 10, free).unwrap();
        assert_eq!(ok.name, "pc3");
        let e = admit(
            &tokens,
            &"cd".repeat(32),
            &token,
            Role::Agent,
            "pc3",
            10,
            free,
        );
        assert!(matches!(e, Err(Refusal::OtherCa { .. })));
        let e = admit(&tokens, &fp, &token, Role::Agent, "pc3", 1000, free);
        assert!(matches!(e, Err(Refusal::Expired { .. })));
        let e = admit(&tokens, &fp, &token, Role::Admin, "pc3", 10, free);
        assert!(e.unwrap_err().to_string().contains("--role admin"));
        let e = admit(&tokens, &fp, &token, Role::Agent, "PC3", 10, free);
        assert!(matches!(e, Err(Refusal::BadName(_))));
        let e = admit(&tokens, &fp, &token, Role::Agent, "pc3", 10, |_, n| {
            n == "pc3"
        });
        assert!(matches!(e, Err(Refusal::NameTaken(_))));
        let forged: JoinToken = format!("mj1.{fp}.{}.{}", token.id, "0".repeat(64))
            .parse()
            .unwrap();
        let e = admit(&tokens, &fp, &forged, Role::Agent, "pc3", 10, free);
        assert!(matches!(e, Err(Refusal::WrongSecret(_))));
        let mut used = tokens.clone();
        used.values_mut().for_each(|r| r.uses_left = 0);
        let e = admit(&used, &fp, &token, Role::Agent, "pc3", 10, free);
        assert!(matches!(e, Err(Refusal::UsedUp(_))));
        let e = admit(&BTreeMap::new(), &fp, &token, Role::Agent, "pc3", 10, free);
        assert!(matches!(e, Err(Refusal::Unknown(_))));
    }

    #[test]
    fn a_named_token_fixes_the_name() {
        let (tokens, token, fp) = setup(Some("pc4"));
        let free = |_: Role, _: &str| false;
        assert_eq!(
            admit(&tokens, &fp, &token, Role::Agent, "", 10, free)
                .unwrap()
                .name,
            "pc4"
        );
        let e = admit(&tokens, &fp, &token, Role::Agent, "pc5", 10, free).unwrap_err();
        assert!(e.to_string().contains("--name pc4"), "{e}");
    }
}
