//! `meshctl`: the mesh's command-line interface.

mod admin;
mod certs_cmd;
mod nodes;
mod table;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use mesh_proto::v1::{GetStatusRequest, ListNodesRequest};

#[derive(Parser, Debug)]
#[command(name = "meshctl", version, about = "Control a container mesh")]
struct Cli {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(flatten)]
    admin: admin::AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the mesh certificate authority and certificates.
    Certs {
        #[command(subcommand)]
        command: certs_cmd::CertsCommand,
    },
    /// List nodes with state, heartbeat age, CPU, memory and GPUs.
    Nodes,
    /// Coordinator version, uptime, mesh name and node counts.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs { command } => certs_cmd::run(command, cli.output),
        Command::Nodes => {
            let mut client = admin::connect(&cli.admin).await?;
            let response = client
                .list_nodes(ListNodesRequest {})
                .await
                .map_err(admin::call_error)?
                .into_inner();
            let json = nodes::to_json(&response);
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&json)?),
                Output::Table => print!("{}", nodes::nodes_table(&json)),
            }
            Ok(())
        }
        Command::Status => {
            let mut client = admin::connect(&cli.admin).await?;
            let response = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(admin::call_error)?
                .into_inner();
            let json = nodes::status_json(&response);
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&json)?),
                Output::Table => print!("{}", nodes::status_text(&json)),
            }
            Ok(())
        }
    }
}
