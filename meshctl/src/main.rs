//! `meshctl`: the mesh's command-line interface.
//!
//! The commands that act on the mesh go to the coordinator's
//! `AdminService` over mutual TLS with an admin certificate (`admin`:
//! address and certificate from flags, environment or a config file):
//! nodes and status, containers with their lifecycle and logs, `place`
//! (plan, explain, apply a topology), `check` (tunnels and bridges from
//! every host). `certs` manages the mesh CA and certificates in a local
//! directory; `import compose` and `containers check` work on local files
//! alone. Tables for people, `-o json` for scripts.
//!
//! What it must not do: reach agents, hosts or Podman itself, or decide
//! anything the coordinator decides (it asks and reports); overwrite a
//! file (certificates, imported topologies) without `--force`.

mod admin;
mod certs_cmd;
mod check;
mod containers_cmd;
mod docs_cmd;
mod events_cmd;
mod failover_cmd;
mod identity_cmd;
mod images_cmd;
mod import;
mod nodes;
mod place;
mod table;
mod top_cmd;
mod volumes;

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

#[derive(Subcommand, Debug)]
enum NodesCommand {
    /// Remove a node: revoke its certificates, close its stream, drop it
    /// from the directory; every agent refuses its tunnels.
    Remove {
        #[arg(id = "node_name", value_name = "NAME")]
        name: String,
    },
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
    /// List nodes with state, heartbeat age, CPU, memory, GPUs and
    /// certificate expiry; `nodes remove NAME` removes one.
    Nodes {
        #[command(subcommand)]
        command: Option<NodesCommand>,
    },
    /// Join tokens for new hosts (`mesh-agent join`).
    Token {
        #[command(subcommand)]
        command: identity_cmd::TokenCommand,
    },
    /// Coordinator version, uptime, node counts, and the applied
    /// topology's groups with their hosts and health.
    Status,
    /// Managed volumes: size, use, primary and standby with their disk
    /// states (resync progress), replication lag, epoch, last fsync.
    Volumes,
    /// Planned switchover of a replicated group to its standby: stop,
    /// hand every write over, promote, start; prints each phase and the
    /// downtime.
    Failover(failover_cmd::FailoverArgs),
    /// The event history (node states, failovers, switchovers, volumes,
    /// refused certificates, topology applies); -f follows it.
    Events(events_cmd::EventsArgs),
    /// Each container's CPU, memory, block and network I/O and GPU memory
    /// (Podman's stats, NVML per process), on every node or one; -w
    /// redraws it live.
    Top(top_cmd::TopArgs),
    /// Plan a topology against the live mesh (a diff per host, with
    /// reasons); --apply rolls it out in dependency order.
    Place(place::PlaceArgs),
    /// From every host: the tunnel to every other host and a real probe
    /// through every bridge; non-zero exit when anything fails.
    Check {
        /// Per probe, milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u32,
    },
    /// Convert other formats into a topology (compose files today).
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish,
    /// elvish, powershell), e.g. `meshctl completions bash >
    /// /usr/share/bash-completion/completions/meshctl`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page, or with --dir write one page per subcommand
    /// there (meshctl.1, meshctl-place.1, ...).
    Man {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Set the containers a node should run.
    Containers {
        #[command(subcommand)]
        command: ContainersCommand,
    },
    /// Containers on every node (or one): state, health, restarts, problems.
    Ps { node: Option<String> },
    /// Images each host holds and their sizes; `images copy` copies one
    /// from host to host.
    #[command(args_conflicts_with_subcommands = true)]
    Images {
        node: Option<String>,
        #[command(subcommand)]
        command: Option<images_cmd::ImagesCommand>,
    },
    /// Stop a container (it stays stopped until started).
    Stop { node: String, container: String },
    /// Start a stopped container.
    Start { node: String, container: String },
    /// Stop and start a container.
    Restart { node: String, container: String },
    /// Pause a container's processes.
    Pause { node: String, container: String },
    /// Resume a paused container.
    Resume { node: String, container: String },
    /// Kill a container (SIGKILL); it stays stopped until started.
    Kill { node: String, container: String },
    /// A container's log lines.
    Logs {
        node: String,
        container: String,
        #[arg(long, default_value_t = 100)]
        tail: u32,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ContainersCommand {
    /// Replace the containers NODE should run with those in FILE (TOML, [[containers]]).
    Set {
        node: String,
        file: std::path::PathBuf,
    },
    /// Check FILE without contacting the coordinator.
    Check { file: std::path::PathBuf },
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
        Command::Certs {
            command: certs_cmd::CertsCommand::Renew,
        } => identity_cmd::renew(&cli.admin).await,
        Command::Certs {
            command: certs_cmd::CertsCommand::Revoke { serial },
        } => identity_cmd::revoke(&cli.admin, &serial).await,
        Command::Certs {
            command: certs_cmd::CertsCommand::Issued,
        } => identity_cmd::issued(&cli.admin, cli.output).await,
        Command::Certs {
            command:
                certs_cmd::CertsCommand::Join {
                    coordinator,
                    token,
                    name,
                    dir,
                    join_port,
                },
        } => {
            let addr = mesh_proto::join::join_address(&coordinator, join_port)
                .map_err(anyhow::Error::msg)?;
            let joined =
                mesh_proto::join::join(&addr, &token, mesh_certs::Role::Admin, &name, &dir)
                    .await
                    .map_err(anyhow::Error::msg)?;
            println!(
                "joined mesh '{}' as admin '{}': {} (key {}, mode 0600); use --certs-dir {} --admin-name {}",
                joined.mesh,
                joined.name,
                joined.cert.display(),
                joined.key.display(),
                dir.display(),
                joined.name
            );
            Ok(())
        }
        Command::Certs { command } => certs_cmd::run(command, cli.output),
        Command::Token { command } => identity_cmd::token(&cli.admin, command, cli.output).await,
        Command::Nodes {
            command: Some(NodesCommand::Remove { name }),
        } => identity_cmd::remove_node(&cli.admin, &name).await,
        Command::Nodes { command: None } => {
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
        Command::Containers {
            command: ContainersCommand::Check { file },
        } => {
            let n = containers_cmd::describe(&file)?;
            println!("{}: {n} container(s), valid", file.display());
            Ok(())
        }
        Command::Containers {
            command: ContainersCommand::Set { node, file },
        } => {
            let mut client = admin::connect(&cli.admin).await?;
            containers_cmd::set(&mut client, &node, &file).await
        }
        Command::Ps { node } => {
            let mut client = admin::connect(&cli.admin).await?;
            containers_cmd::ps(&mut client, node.as_deref(), cli.output).await
        }
        Command::Images {
            command: Some(images_cmd::ImagesCommand::Copy(args)),
            ..
        } => {
            let mut client = admin::connect(&cli.admin).await?;
            images_cmd::copy(&mut client, &args, cli.output).await
        }
        Command::Images {
            node,
            command: None,
        } => {
            let mut client = admin::connect(&cli.admin).await?;
            images_cmd::list(&mut client, node.as_deref(), cli.output).await
        }
        Command::Stop { node, container } => lifecycle(&cli.admin, &node, &container, "stop").await,
        Command::Start { node, container } => {
            lifecycle(&cli.admin, &node, &container, "start").await
        }
        Command::Restart { node, container } => {
            lifecycle(&cli.admin, &node, &container, "restart").await
        }
        Command::Pause { node, container } => {
            lifecycle(&cli.admin, &node, &container, "pause").await
        }
        Command::Resume { node, container } => {
            lifecycle(&cli.admin, &node, &container, "resume").await
        }
        Command::Kill { node, container } => lifecycle(&cli.admin, &node, &container, "kill").await,
        Command::Logs {
            node,
            container,
            tail,
            follow,
        } => {
            let mut client = admin::connect(&cli.admin).await?;
            containers_cmd::logs(&mut client, &node, &container, tail, follow).await
        }
        Command::Status => {
            let mut client = admin::connect(&cli.admin).await?;
            let response = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(admin::call_error)?
                .into_inner();
            let json = nodes::status_json(&response);
            let topology = place::topology_status(&mut client).await?;
            let volume_rows = volumes::list(&mut client).await?;
            match cli.output {
                Output::Json => {
                    let mut value = serde_json::to_value(&json)?;
                    if let Some(map) = value.as_object_mut() {
                        map.insert("topology".into(), place::topology_json(&topology));
                        map.insert("volumes".into(), volumes::to_json(&volume_rows));
                    }
                    println!("{}", serde_json::to_string_pretty(&value)?)
                }
                Output::Table => {
                    print!("{}", nodes::status_text(&json));
                    print!("{}", place::topology_text(&topology));
                    print!("{}", volumes::summary(&volume_rows));
                }
            }
            Ok(())
        }
        Command::Volumes => {
            let mut client = admin::connect(&cli.admin).await?;
            let rows = volumes::list(&mut client).await?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&volumes::to_json(&rows))?
                ),
                Output::Table => print!("{}", volumes::table(&rows)),
            }
            Ok(())
        }
        Command::Events(args) => {
            let mut client = admin::connect(&cli.admin).await?;
            events_cmd::run(&mut client, &args, cli.output).await
        }
        Command::Top(args) => {
            let mut client = admin::connect(&cli.admin).await?;
            top_cmd::run(&mut client, &args, cli.output).await
        }
        Command::Failover(args) => {
            let mut client = admin::connect(&cli.admin).await?;
            failover_cmd::run(&mut client, &args, cli.output).await
        }
        Command::Place(args) => place::run(&args, &cli.admin, cli.output).await,
        Command::Check { timeout_ms } => {
            let mut client = admin::connect(&cli.admin).await?;
            check::run(&mut client, timeout_ms, cli.output).await
        }
        Command::Import { command } => import::run(command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            docs_cmd::completions(Cli::command(), shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let written = docs_cmd::man(Cli::command(), dir.as_deref(), &mut std::io::stdout())?;
            for file in written {
                println!("{file}");
            }
            Ok(())
        }
    }
}

async fn lifecycle(
    args: &admin::AdminArgs,
    node: &str,
    container: &str,
    action: &str,
) -> Result<()> {
    let mut client = admin::connect(args).await?;
    containers_cmd::command(
        &mut client,
        node,
        container,
        containers_cmd::parse_action(action)?,
    )
    .await
}
