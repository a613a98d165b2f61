//! `meshctl certs init|issue|list`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use mesh_certs::{IssueRequest, Role};
use serde::Serialize;

use crate::{table, Output};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a new mesh CA (ca.crt, ca.key) in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Mesh name carried in every certificate [default: mesh].
        #[arg(long, default_value = "mesh")]
        mesh: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
        /// Also create an intermediate CA (intermediate.crt/.key) signed by
        /// the root: the coordinator signs joins and renewals with it, and
        /// ca.key can stay offline.
        #[arg(long)]
        intermediate: bool,
        /// Lifetime of the intermediate CA in days.
        #[arg(long, default_value_t = 365)]
        intermediate_days: u32,
    },
    /// Issue a certificate for a coordinator, agent or admin.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        role: Role,
        /// Node name for agents, any name for coordinators and admins.
        #[arg(long)]
        name: String,
        /// Extra subject alternative name, DNS name or IP (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[arg(long)]
        force: bool,
    },
    /// List the certificates in DIR with role, name, SANs and expiry.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Renew this admin's certificate over its own connection (new key).
    Renew,
    /// Revoke a certificate by serial (hex, as `certs issued` shows).
    Revoke { serial: String },
    /// Certificates the coordinator issued or saw in use: expiry, issue
    /// (renewal) time, revoked or not.
    Issued,
    /// Get an admin certificate with a token (`meshctl token create --role
    /// admin`): the key is made here, the coordinator is checked against
    /// the CA the token pins, ca.crt and admin-NAME.crt/.key are written
    /// into DIR.
    Join {
        /// The coordinator's address, HOST:PORT (its main port).
        coordinator: String,
        #[arg(long)]
        token: String,
        #[arg(long = "name", id = "join_name")]
        name: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 7445)]
        join_port: u16,
    },
}

#[derive(Serialize)]
struct CertJson {
    file: String,
    kind: String,
    mesh: Option<String>,
    role: Option<String>,
    name: Option<String>,
    sans: Vec<String>,
    not_after: String,
    expires_in_days: i64,
    expiring_soon: bool,
    expired: bool,
    problem: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

pub fn run(command: CertsCommand, output: Output) -> Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            mesh,
            days,
            force,
            intermediate,
            intermediate_days,
        } => {
            let ca = if intermediate {
                mesh_certs::init_dir_with_intermediate(&dir, &mesh, days, intermediate_days, force)?
            } else {
                mesh_certs::init_dir(&dir, &mesh, days, force)?
            };
            println!(
                "created CA for mesh '{}': {} (key {}, mode 0600), valid until {}",
                ca.mesh,
                ca.cert_path.display(),
                ca.key_path.display(),
                rfc3339(ca.not_after)
            );
            if intermediate {
                println!(
                    "created intermediate CA {} (key intermediate.key): give the coordinator ca.crt, intermediate.crt and intermediate.key; keep ca.key offline",
                    mesh_certs::intermediate_paths(&dir).0.display()
                );
            } else {
                println!("keep ca.key off the hosts: it is only needed to issue certificates");
            }
        }
        CertsCommand::Issue {
            dir,
            role,
            name,
            sans,
            days,
            force,
        } => {
            let issued = mesh_certs::issue_to_dir(
                &dir,
                &IssueRequest {
                    role,
                    name,
                    sans,
                    days,
                    force,
                },
            )?;
            println!(
                "issued {} -> {} (key {}, mode 0600), valid until {}",
                issued.identity,
                issued.cert_path.display(),
                issued.key_path.display(),
                rfc3339(issued.not_after)
            );
        }
        CertsCommand::Renew
        | CertsCommand::Revoke { .. }
        | CertsCommand::Issued
        | CertsCommand::Join { .. } => {
            anyhow::bail!("this certs command talks to the coordinator; run it through meshctl")
        }
        CertsCommand::List { dir } => {
            let certs = mesh_certs::list_dir(&dir, time::OffsetDateTime::now_utc())?;
            let rows: Vec<CertJson> = certs
                .iter()
                .map(|c| CertJson {
                    file: c
                        .path
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    kind: if c.is_ca { "ca".into() } else { "leaf".into() },
                    mesh: c.mesh.clone(),
                    role: c.identity.as_ref().map(|i| i.role.to_string()),
                    name: c.identity.as_ref().map(|i| i.name.clone()),
                    sans: c.sans.clone(),
                    not_after: rfc3339(c.not_after),
                    expires_in_days: c.expires_in_days,
                    expiring_soon: c.expiring_soon,
                    expired: c.expired,
                    problem: c.problem.clone(),
                })
                .collect();
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print!("{}", certs_table(&rows)),
            }
        }
    }
    Ok(())
}

fn certs_table(rows: &[CertJson]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            let expiry = if let Some(p) = &c.problem {
                format!("UNREADABLE: {p}")
            } else if c.expired {
                format!("EXPIRED {} days ago", -c.expires_in_days)
            } else if c.expiring_soon {
                format!("WARNING: expires in {} days", c.expires_in_days)
            } else {
                format!("{} days", c.expires_in_days)
            };
            let role = if c.kind == "ca" {
                "ca".to_string()
            } else {
                c.role.clone().unwrap_or_else(|| "-".into())
            };
            vec![
                c.file.clone(),
                role,
                c.name.clone().unwrap_or_else(|| "-".into()),
                c.sans.join(","),
                expiry,
            ]
        })
        .collect();
    table::render(&["FILE", "ROLE", "NAME", "SANS", "EXPIRES"], &cells)
}
