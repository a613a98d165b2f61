//! `meshctl token create|list|revoke`, `meshctl nodes remove`, `meshctl
//! certs renew|revoke|issued`: joining, renewal and revocation through the
//! coordinator.

use anyhow::{Context, Result};
use clap::Subcommand;
use mesh_certs::MeshTls;
use mesh_proto::v1::{
    CreateTokenRequest, ListIdentitiesRequest, ListTokensRequest, RemoveNodeRequest,
    RenewCertificateRequest, RevokeCertificateRequest, RevokeTokenRequest,
};

use crate::{admin, table, Output};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// A join token (printed once; the coordinator keeps only its digest).
    Create {
        /// agent or admin.
        #[arg(long, default_value = "agent")]
        role: String,
        /// The only name it admits [default: the joining host chooses].
        #[arg(long = "name", id = "token_name")]
        name: Option<String>,
        /// How long it is valid: 90s, 30m, 1h, 2d [default: 1h].
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many hosts may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// Tokens not used up or revoked: id, role, name, expiry, uses left.
    List,
    /// Revoke a token by id; hosts can no longer join with it.
    Revoke { id: String },
}

/// "90s", "30m", "1h", "2d" or plain seconds.
pub fn parse_ttl(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("'{text}' is not a duration; write e.g. 90s, 30m, 1h or 2d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("unknown unit '{other}' in '{text}'; use s, m, h or d"),
    };
    Ok(n.saturating_mul(scale))
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub async fn token(args: &admin::AdminArgs, command: TokenCommand, output: Output) -> Result<()> {
    let mut client = admin::connect(args).await?;
    match command {
        TokenCommand::Create {
            role,
            name,
            ttl,
            uses,
        } => {
            let r = client
                .create_token(CreateTokenRequest {
                    role,
                    name: name.unwrap_or_default(),
                    ttl_seconds: parse_ttl(&ttl)?,
                    uses,
                })
                .await
                .map_err(admin::call_error)?
                .into_inner();
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"token": r.token, "id": r.id, "expires": when(r.expires_unix)})
                ),
                Output::Table => {
                    println!("{}", r.token);
                    eprintln!(
                        "token {} valid until {}; on the new host: mesh-agent join COORDINATOR:7443 --token TOKEN --name NAME --certs-dir DIR",
                        r.id,
                        when(r.expires_unix)
                    );
                }
            }
        }
        TokenCommand::List => {
            let r = client
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(admin::call_error)?
                .into_inner();
            match output {
                Output::Json => {
                    let rows: Vec<_> = r
                        .tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({"id": t.id, "role": t.role, "name": t.name,
                            "expires": when(t.expires_unix), "uses_left": t.uses_left, "created_by": t.created_by})
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => {
                    let rows: Vec<Vec<String>> = r
                        .tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.role.clone(),
                                if t.name.is_empty() {
                                    "-".into()
                                } else {
                                    t.name.clone()
                                },
                                when(t.expires_unix),
                                t.uses_left.to_string(),
                                t.created_by.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table::render(
                            &["ID", "ROLE", "NAME", "EXPIRES", "USES LEFT", "CREATED BY"],
                            &rows
                        )
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            client
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(admin::call_error)?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

pub async fn remove_node(args: &admin::AdminArgs, name: &str) -> Result<()> {
    let mut client = admin::connect(args).await?;
    let r = client
        .remove_node(RemoveNodeRequest {
            name: name.to_string(),
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    println!(
        "node {name} removed: certificate(s) {} revoked; its stream is closed and every agent refuses its tunnels",
        if r.revoked_serials.is_empty() {
            "none known".to_string()
        } else {
            r.revoked_serials.join(", ")
        }
    );
    Ok(())
}

pub async fn revoke(args: &admin::AdminArgs, serial: &str) -> Result<()> {
    let mut client = admin::connect(args).await?;
    let r = client
        .revoke_certificate(RevokeCertificateRequest {
            serial: serial.to_string(),
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    let who = if r.identity.is_empty() {
        "not seen by the coordinator".to_string()
    } else {
        r.identity
    };
    println!("certificate {serial} ({who}) revoked");
    Ok(())
}

pub async fn issued(args: &admin::AdminArgs, output: Output) -> Result<()> {
    let mut client = admin::connect(args).await?;
    let r = client
        .list_identities(ListIdentitiesRequest {})
        .await
        .map_err(admin::call_error)?
        .into_inner();
    match output {
        Output::Json => {
            let rows: Vec<_> = r
                .identities
                .iter()
                .map(|i| {
                    serde_json::json!({"identity": i.identity, "serial": i.serial,
                    "not_after": when(i.not_after_unix), "issued": (i.issued_unix != 0).then(|| when(i.issued_unix)),
                    "revoked": i.revoked})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = r
                .identities
                .iter()
                .map(|i| {
                    vec![
                        i.identity.clone(),
                        i.serial.clone(),
                        when(i.not_after_unix),
                        if i.issued_unix == 0 {
                            "offline".into()
                        } else {
                            when(i.issued_unix)
                        },
                        if i.revoked {
                            "revoked".into()
                        } else {
                            "valid".into()
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["IDENTITY", "SERIAL", "EXPIRES", "ISSUED", "STATE"], &rows)
            );
        }
    }
    Ok(())
}

/// A new certificate for this admin over its own mTLS connection: a new
/// key made here, written over the old pair (key first) once the
/// coordinator signed it.
pub async fn renew(args: &admin::AdminArgs) -> Result<()> {
    let target = admin::resolve(args)?;
    let tls = MeshTls::load(&target.tls)?;
    let mut client = admin::connect(args).await?;
    let request = mesh_certs::new_key_and_csr(tls.identity())?;
    let r = client
        .renew_certificate(RenewCertificateRequest {
            csr_pem: request.csr_pem.clone(),
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    tls.renew(&r.cert_chain_pem, &request.key_pem)
        .context("the coordinator's certificate does not fit this admin")?;
    mesh_certs::write_file_atomic(&target.tls.key, &request.key_pem, true)?;
    mesh_certs::write_file_atomic(&target.tls.cert, &r.cert_chain_pem, false)?;
    println!(
        "renewed {}: {} valid until {}",
        tls.identity(),
        target.tls.cert.display(),
        when(r.not_after_unix)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
