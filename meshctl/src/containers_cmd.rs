//! `meshctl containers set`, `meshctl ps`, the lifecycle commands and
//! `meshctl logs`.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{
    CommandAction, ContainerSpec, ContainerState, HealthState, Hold, ListContainersRequest,
    RunCommandRequest, SetContainersRequest,
};
use mesh_topology::service::{ContainersFile, ServiceSpec};
use serde::Serialize;
use tonic::transport::Channel;

use crate::{admin, table, Output};

/// Converts the TOML form into the API's spec; errors name the service.
pub fn to_spec(s: &ServiceSpec) -> Result<ContainerSpec> {
    mesh_proto::from_topology::container_spec(s).map_err(anyhow::Error::msg)
}

pub fn load_specs(file: &Path) -> Result<Vec<ContainerSpec>> {
    let parsed: ContainersFile = mesh_topology::load_toml(file)?;
    parsed.containers.iter().map(to_spec).collect()
}

pub async fn set(client: &mut AdminServiceClient<Channel>, node: &str, file: &Path) -> Result<()> {
    let containers = load_specs(file)?;
    let count = containers.len();
    let response = client
        .set_containers(SetContainersRequest {
            node: node.to_string(),
            containers,
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    println!(
        "{node}: {count} container(s) desired, generation {}{}",
        response.generation,
        if response.delivered {
            ""
        } else {
            " (node not connected; it gets them when it connects)"
        }
    );
    Ok(())
}

#[derive(Serialize)]
struct PsRow {
    node: String,
    name: String,
    group: String,
    image: String,
    state: &'static str,
    health: &'static str,
    /// Where an operator holds it (stopped, paused, killed), as the agent
    /// applies it; "-" when not held.
    hold: &'static str,
    restarts: u32,
    last_exit_code: Option<i64>,
    crash_looping: bool,
    error: String,
    last_logs: Vec<String>,
    healthy_since_unix_ms: i64,
    /// Generation of the desired set the running container was made from.
    generation: u64,
    spec_hash: String,
}

pub fn state_word(raw: i32) -> &'static str {
    ContainerState::try_from(raw)
        .unwrap_or(ContainerState::Unspecified)
        .label()
}

pub fn hold_word(raw: i32) -> &'static str {
    match Hold::try_from(raw).unwrap_or(Hold::None) {
        Hold::None => "-",
        Hold::Stopped => "stopped",
        Hold::Paused => "paused",
        Hold::Killed => "killed",
    }
}

pub fn health_word(raw: i32) -> &'static str {
    HealthState::try_from(raw)
        .unwrap_or(HealthState::Unspecified)
        .label()
}

/// The agents' last container reports, of one node or all.
pub(crate) async fn reports(
    client: &mut AdminServiceClient<Channel>,
    node: Option<&str>,
) -> Result<mesh_proto::v1::ListContainersResponse> {
    Ok(client
        .list_containers(ListContainersRequest {
            node: node.unwrap_or_default().to_string(),
        })
        .await
        .map_err(admin::call_error)?
        .into_inner())
}

pub async fn ps(
    client: &mut AdminServiceClient<Channel>,
    node: Option<&str>,
    output: Output,
) -> Result<()> {
    let response = reports(client, node).await?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for n in &response.nodes {
        let Some(report) = &n.report else { continue };
        if !report.runtime_available {
            problems.push(format!(
                "{}: container runtime unavailable: {}",
                n.node, report.runtime_error
            ));
        }
        for c in &report.containers {
            rows.push(PsRow {
                node: n.node.clone(),
                name: c.name.clone(),
                group: c.group.clone(),
                image: c.image.clone(),
                state: state_word(c.state),
                health: health_word(c.health),
                hold: hold_word(c.hold),
                restarts: c.restart_count,
                last_exit_code: c.last_exit_code,
                crash_looping: c.crash_looping,
                error: c.error.clone(),
                last_logs: c.last_logs.clone(),
                healthy_since_unix_ms: c.healthy_since_unix_ms,
                generation: c.generation,
                spec_hash: c.spec_hash.clone(),
            });
        }
    }
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct Ps {
                schema: &'static str,
                containers: Vec<PsRow>,
                problems: Vec<String>,
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&Ps {
                    schema: "meshctl.ps.v1",
                    containers: rows,
                    problems
                })?
            );
        }
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.node.clone(),
                        r.name.clone(),
                        r.group.clone(),
                        if r.crash_looping {
                            format!("{} (crash loop)", r.state)
                        } else {
                            r.state.to_string()
                        },
                        r.health.to_string(),
                        r.hold.to_string(),
                        r.restarts.to_string(),
                        r.error.clone(),
                    ]
                })
                .collect();
            if cells.is_empty() {
                println!("no containers reported");
            } else {
                print!(
                    "{}",
                    table::render(
                        &[
                            "NODE", "NAME", "GROUP", "STATE", "HEALTH", "HOLD", "RESTARTS",
                            "PROBLEM"
                        ],
                        &cells
                    )
                );
            }
            for p in problems {
                println!("warning: {p}");
            }
        }
    }
    Ok(())
}

pub async fn command(
    client: &mut AdminServiceClient<Channel>,
    node: &str,
    container: &str,
    action: CommandAction,
) -> Result<()> {
    let result = client
        .run_command(RunCommandRequest {
            node: node.to_string(),
            container: container.to_string(),
            action: action as i32,
            tail: 0,
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    if !result.ok {
        bail!("{node}/{container}: {}", result.message);
    }
    println!("{node}/{container}: {}", result.message);
    Ok(())
}

pub async fn logs(
    client: &mut AdminServiceClient<Channel>,
    node: &str,
    container: &str,
    tail: u32,
    follow: bool,
) -> Result<()> {
    if follow {
        return follow_logs(client, node, container, tail).await;
    }
    let mut shown: VecDeque<String> = VecDeque::new();
    loop {
        let result = client
            .run_command(RunCommandRequest {
                node: node.to_string(),
                container: container.to_string(),
                action: CommandAction::Logs as i32,
                tail: if shown.is_empty() {
                    tail
                } else {
                    tail.max(200)
                },
            })
            .await
            .map_err(admin::call_error)?
            .into_inner();
        if !result.ok {
            bail!("{node}/{container}: {}", result.message);
        }
        for line in new_lines(&shown, &result.lines) {
            println!("{line}");
        }
        shown = result.lines.into_iter().collect();
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `meshctl logs -f`: the last `tail` lines, then each line as the
/// container writes it, streamed from its agent through the coordinator
/// until the log ends or Ctrl-C.
async fn follow_logs(
    client: &mut AdminServiceClient<Channel>,
    node: &str,
    container: &str,
    tail: u32,
) -> Result<()> {
    let mut stream = client
        .follow_logs(mesh_proto::v1::FollowLogsRequest {
            node: node.to_string(),
            container: container.to_string(),
            tail,
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            n = stream.message() => n,
        };
        match next.map_err(admin::call_error)? {
            None => return Ok(()),
            Some(chunk) => {
                for line in &chunk.lines {
                    println!("{line}");
                }
                if !chunk.error.is_empty() {
                    bail!("{node}/{container}: {}", chunk.error);
                }
                if chunk.end {
                    return Ok(());
                }
            }
        }
    }
}

/// The lines of `now` that come after what was already shown: the longest
/// suffix of `shown` that is a prefix of `now` marks the overlap.
fn new_lines<'a>(shown: &VecDeque<String>, now: &'a [String]) -> &'a [String] {
    let shown: Vec<&String> = shown.iter().collect();
    for start in 0..shown.len() {
        let suffix = &shown[start..];
        if suffix.len() <= now.len() && suffix.iter().zip(now).all(|(a, b)| *a == b) {
            return &now[suffix.len()..];
        }
    }
    now
}

pub fn parse_action(word: &str) -> Result<CommandAction> {
    Ok(match word {
        "stop" => CommandAction::Stop,
        "start" => CommandAction::Start,
        "restart" => CommandAction::Restart,
        "pause" => CommandAction::Pause,
        "resume" => CommandAction::Resume,
        "kill" => CommandAction::Kill,
        other => bail!("unknown action {other}"),
    })
}

pub fn describe(file: &Path) -> Result<usize> {
    load_specs(file)
        .map(|s| s.len())
        .with_context(|| format!("reading {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::health_check::Probe;

    #[test]
    fn holds_have_words_and_unknown_numbers_show_as_not_held() {
        assert_eq!(hold_word(Hold::None as i32), "-");
        assert_eq!(hold_word(Hold::Stopped as i32), "stopped");
        assert_eq!(hold_word(Hold::Paused as i32), "paused");
        assert_eq!(hold_word(Hold::Killed as i32), "killed");
        assert_eq!(hold_word(99), "-");
    }

    #[test]
    fn follow_prints_only_new_lines() {
        let shown: VecDeque<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let now: Vec<String> = ["b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(new_lines(&shown, &now), &now[2..]);
        let none: VecDeque<String> = VecDeque::new();
        assert_eq!(new_lines(&none, &now), &now[..]);
    }

    #[test]
    fn toml_specs_convert() {
        let dir = std::env::temp_dir().join(format!("meshctl-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[[containers]]\nname = \"mem\"\nimage = \"img\"\nports = [\"7140:5555\"]\n[containers.health]\nzmq = { port = 5555 }\n",
        )
        .unwrap();
        let specs = load_specs(&file).unwrap();
        assert_eq!(specs[0].ports[0].host_port, 7140);
        assert_eq!(specs[0].group, "mem");
        assert!(matches!(
            specs[0].health.as_ref().unwrap().probe,
            Some(Probe::Zmq(_))
        ));
        std::fs::write(
            &file,
            "[[containers]]\nname = \"mem\"\nimage = \"img\"\nports = [\"x\"]\n",
        )
        .unwrap();
        assert!(load_specs(&file)
            .unwrap_err()
            .to_string()
            .contains("mem: port 'x'"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
