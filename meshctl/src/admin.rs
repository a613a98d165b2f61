//! How meshctl reaches the coordinator: address and admin certificate from
//! flags, environment or a config file, so nobody retypes paths.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mesh_certs::{MeshTls, PeerExpectation, Role, TlsFiles};
use mesh_proto::transport::{self, ConnectOptions, ALPN_H2};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use serde::Deserialize;
use tonic::transport::Channel;

/// `meshctl.toml`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub coordinator: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub name: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, clap::Args)]
pub struct AdminArgs {
    /// meshctl config file [env MESHCTL_CONFIG; default ~/.config/meshctl/config.toml if present].
    #[arg(long, env = "MESHCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Coordinator address HOST:PORT [env MESH_COORDINATOR].
    #[arg(long, env = "MESH_COORDINATOR", global = true)]
    pub coordinator: Option<String>,
    /// Certificate directory; uses ca.crt and admin-NAME.crt/.key [env MESH_CERTS_DIR].
    #[arg(long, env = "MESH_CERTS_DIR", global = true)]
    pub certs_dir: Option<PathBuf>,
    /// NAME of the admin certificate [default: admin].
    #[arg(long = "admin-name", env = "MESHCTL_ADMIN_NAME", global = true)]
    pub name: Option<String>,
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
}

fn default_config_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".config/meshctl/config.toml");
    path.exists().then_some(path)
}

pub struct Target {
    pub address: String,
    pub tls: TlsFiles,
}

pub fn resolve(args: &AdminArgs) -> Result<Target> {
    let path = args.config.clone().or_else(default_config_path);
    let file: FileConfig = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read meshctl config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("meshctl config {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let address = args.coordinator.clone().or(file.coordinator).context(
        "no coordinator address: pass --coordinator HOST:PORT, set MESH_COORDINATOR, or put coordinator = \"HOST:PORT\" in the meshctl config",
    )?;
    let name = args
        .name
        .clone()
        .or(file.name)
        .unwrap_or_else(|| "admin".into());
    let tls = TlsFiles::resolve(
        args.certs_dir.clone().or(file.certs_dir).as_deref(),
        Role::Admin,
        &name,
        args.ca.clone().or(file.ca),
        args.cert.clone().or(file.cert),
        args.key.clone().or(file.key),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(Target { address, tls })
}

pub async fn connect(args: &AdminArgs) -> Result<AdminServiceClient<Channel>> {
    let target = resolve(args)?;
    let tls = MeshTls::load(&target.tls)?;
    let expect = PeerExpectation {
        mesh: tls.identity().mesh.clone(),
        role: Role::Coordinator,
    };
    let config = tls.client_config(expect, &[ALPN_H2])?;
    let channel = transport::connect(&target.address, config, &ConnectOptions::default())
        .await
        .map_err(|e| with_hint(e.to_string()))?;
    Ok(AdminServiceClient::new(channel))
}

/// Turns a failed call into an error that says what to fix.
pub fn call_error(status: tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(&status) {
        text.push_str(": ");
        text.push_str(&transport::error_chain(source));
    }
    with_hint(text)
}

fn with_hint(text: String) -> anyhow::Error {
    match transport::explain(&text) {
        Some(hint) => anyhow::anyhow!("{text}\nhint: {hint}"),
        None => anyhow::anyhow!(text),
    }
}
