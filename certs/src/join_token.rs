//! Join tokens: `mj1.CA.ID.SECRET`. CA pins the mesh's root CA (SHA-256
//! of its certificate, hex) so a joining host verifies the coordinator
//! before it sends anything; ID names the token in listings and
//! revocation; SECRET is 32 random bytes (hex) that the coordinator keeps
//! only as a SHA-256 digest.

use std::fmt;
use std::str::FromStr;

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::x509;

const PREFIX: &str = "mj1";
/// No token is longer than this; longer input is refused unparsed.
pub const MAX_TOKEN_LEN: usize = 3 + 1 + 64 + 1 + 16 + 1 + 64;

/// A join token as the admin hands it to a new host.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the root CA certificate (DER), lowercase hex.
    pub ca_fingerprint: String,
    /// 8 random bytes, hex: public, names the token.
    pub id: String,
    secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.ca_fingerprint, self.id, self.secret
        )
    }
}

fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::invalid("join token", "the system random source failed"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the first certificate in `ca_pem` (DER), lowercase hex.
pub fn ca_fingerprint(ca_pem: &str) -> Result<String> {
    let der = x509::first_cert_from_pem(ca_pem, "CA certificate")?;
    Ok(hex(digest(&SHA256, &der).as_ref()))
}

impl JoinToken {
    /// A new token pinning the CA with this fingerprint.
    pub fn generate(ca_fingerprint: &str) -> Result<JoinToken> {
        Ok(JoinToken {
            ca_fingerprint: ca_fingerprint.to_string(),
            id: random_hex(8)?,
            secret: random_hex(32)?,
        })
    }

    /// What the coordinator stores: SHA-256 of the secret, hex.
    pub fn secret_digest(&self) -> String {
        hex(digest(&SHA256, self.secret.as_bytes()).as_ref())
    }

    /// Whether this token's secret has the stored digest (compared in
    /// constant time).
    pub fn matches(&self, stored_digest: &str) -> bool {
        let ours = self.secret_digest();
        ours.len() == stored_digest.len()
            && ours
                .bytes()
                .zip(stored_digest.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl FromStr for JoinToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<JoinToken> {
        let bad = |reason: &str| {
            Error::invalid(
                "join token",
                format!(
                    "{reason}; a token looks like mj1.<64 hex>.<16 hex>.<64 hex>, as printed by \
                     `meshctl token create`"
                ),
            )
        };
        let s = s.trim();
        if s.len() > MAX_TOKEN_LEN {
            return Err(bad(&format!("it is {} characters long", s.len())));
        }
        let parts: Vec<&str> = s.split('.').collect();
        let [prefix, fp, id, secret] = parts[..] else {
            return Err(bad(&format!(
                "it has {} dot-separated parts, not 4",
                parts.len()
            )));
        };
        if prefix != PREFIX {
            return Err(bad(&format!("it starts with '{prefix}', not '{PREFIX}'")));
        }
        let is_hex = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !is_hex(fp, 64) {
            return Err(bad("its CA fingerprint is not 64 lowercase hex digits"));
        }
        if !is_hex(id, 16) {
            return Err(bad("its id is not 16 lowercase hex digits"));
        }
        if !is_hex(secret, 64) {
            return Err(bad("its secret is not 64 lowercase hex digits"));
        }
        Ok(JoinToken {
            ca_fingerprint: fp.to_string(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{CertificateAuthority, Validity};

    #[test]
    fn round_trip_and_digest() {
        let ca = CertificateAuthority::generate("prod", Validity::days(1)).unwrap();
        let fp = ca_fingerprint(ca.cert_pem()).unwrap();
        assert_eq!(fp.len(), 64);
        let t = JoinToken::generate(&fp).unwrap();
        let text = t.to_string();
        assert!(text.len() <= MAX_TOKEN_LEN);
        let back: JoinToken = text.parse().unwrap();
        assert_eq!(back, t);
        assert!(back.matches(&t.secret_digest()));
        let other = JoinToken::generate(&fp).unwrap();
        assert!(!other.matches(&t.secret_digest()));
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (text, why) in [
            ("", "parts"),
            ("mj2.a.b.c", "starts with"),
            ("mj1.zz.0011223344556677.00", "fingerprint"),
            (&"x".repeat(500), "characters long"),
        ] {
            let e = text.parse::<JoinToken>().unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
