//! `meshctl place FILE`: where a topology's groups would go against the
//! live mesh and why (`--explain`, `--fail` what-ifs), and `--apply` to
//! roll it out in dependency order with progress and a summary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{
    rollout_event, ApplyTopologyRequest, ChangeKind, GetTopologyRequest, PlanTopologyRequest,
    RolloutSummary, ServicePhase, ServiceProgress, TopologyPlan, TopologyStatus,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{admin, table, Output};

#[derive(Debug, clap::Args)]
pub struct PlaceArgs {
    /// The topology file (TOML).
    pub file: PathBuf,
    /// Apply the plan after showing it: persist it on the coordinator and
    /// start services in dependency order.
    #[arg(long)]
    pub apply: bool,
    /// Show the reasoning for one group, host by host.
    #[arg(long, value_name = "GROUP")]
    pub explain: Option<String>,
    /// What if HOST were gone: the plan without it (repeatable). Never applied.
    #[arg(long = "fail", value_name = "HOST")]
    pub fail: Vec<String>,
    /// How long the rollout may take before it stops with a report, seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u32,
}

/// Reads and validates the file here, so a bad file never reaches the
/// coordinator and every problem is shown with its line and column.
fn read_checked(file: &Path) -> Result<(String, String)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if let Err(diags) = mesh_topology::validate::parse(file, &text) {
        for d in &diags {
            eprintln!("{d}");
        }
        bail!(
            "{} problem(s) in {}; nothing changed",
            diags.len(),
            file.display()
        );
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    Ok((name, text))
}

pub async fn run(args: &PlaceArgs, admin_args: &admin::AdminArgs, output: Output) -> Result<()> {
    if args.apply && !args.fail.is_empty() {
        bail!(
            "--fail is a what-if and cannot be applied; drop --apply to see it, or --fail to apply"
        );
    }
    let (source_name, text) = read_checked(&args.file)?;
    let mut client = admin::connect(admin_args).await?;
    let plan = client
        .plan_topology(PlanTopologyRequest {
            topology_toml: text.clone(),
            source_name: source_name.clone(),
            fail_hosts: args.fail.clone(),
            explain_group: args.explain.clone().unwrap_or_default(),
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    if !args.apply {
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&plan_json(&plan))?),
            Output::Table => {
                print!("{}", plan_text(&plan));
                println!("Nothing changed; run with --apply to apply it.");
            }
        }
        return Ok(());
    }
    apply(&mut client, &source_name, text, args.timeout, output).await
}

async fn apply(
    client: &mut AdminServiceClient<Channel>,
    source_name: &str,
    text: String,
    timeout: u32,
    output: Output,
) -> Result<()> {
    let mut stream = client
        .apply_topology(ApplyTopologyRequest {
            topology_toml: text,
            source_name: source_name.to_string(),
            timeout_seconds: timeout,
        })
        .await
        .map_err(admin::call_error)?
        .into_inner();
    let mut plan = None;
    let mut events = Vec::new();
    let mut summary: Option<RolloutSummary> = None;
    while let Some(event) = stream.message().await.map_err(admin::call_error)? {
        match event.body {
            Some(rollout_event::Body::Plan(p)) => {
                if output == Output::Table {
                    print!("{}", plan_text(&p));
                    println!("Applying (persisted on the coordinator):");
                }
                plan = Some(p);
            }
            Some(rollout_event::Body::Progress(p)) => {
                if output == Output::Table {
                    println!("{}", progress_line(&p));
                }
                events.push(progress_json(&p));
            }
            Some(rollout_event::Body::Summary(s)) => {
                summary = Some(s);
                break;
            }
            None => {}
        }
    }
    let Some(summary) = summary else {
        bail!("the coordinator closed the rollout stream without a summary; see `meshctl status` for where it stands (the rollout goes on there)");
    };
    match output {
        Output::Json => {
            let v = json!({
                "schema": "meshctl.apply.v1",
                "plan": plan.as_ref().map(plan_json),
                "events": events,
                "summary": summary_json(&summary),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => print!("{}", summary_text(&summary)),
    }
    if !summary.ok {
        bail!(
            "rollout of {source_name} did not complete: {}",
            summary.message
        );
    }
    Ok(())
}

fn gib(mib: u64) -> String {
    format!("{:.1}", mib as f64 / 1024.0)
}

fn kind(raw: i32) -> ChangeKind {
    ChangeKind::try_from(raw).unwrap_or(ChangeKind::Unspecified)
}

fn kind_word(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Start => "start",
        ChangeKind::Move => "move",
        ChangeKind::Stop => "stop",
        ChangeKind::Keep => "keep",
        ChangeKind::Update => "update",
        ChangeKind::Unspecified => "?",
    }
}

/// The plan as a diff per host: `+` start, `~` move in (and `-` move out
/// on the old host), `-` stop, `*` update in place, `=` keep.
pub fn plan_text(p: &TopologyPlan) -> String {
    let mut out = format!(
        "Plan for {} (VRAM headroom {} MiB per GPU){}\n",
        p.source_name,
        p.vram_headroom_mib,
        if p.failed_hosts.is_empty() {
            String::new()
        } else {
            format!(" — what if {} were gone", p.failed_hosts.join(", "))
        }
    );
    for h in &p.hosts {
        out.push('\n');
        if h.available {
            let cpus = if h.cpus > 0.0 {
                format!("{:.1}/{:.1} CPUs", h.planned_cpus, h.cpus)
            } else {
                format!("{:.1} CPUs", h.planned_cpus)
            };
            let mem = if h.memory_mib > 0 {
                format!(
                    "{}/{} GiB memory",
                    gib(h.planned_memory_mib),
                    gib(h.memory_mib)
                )
            } else {
                format!("{} GiB memory", gib(h.planned_memory_mib))
            };
            out.push_str(&format!("{}  ({cpus}, {mem} planned)\n", h.host));
        } else {
            out.push_str(&format!(
                "{}  UNAVAILABLE: {}\n",
                h.host, h.unavailable_reason
            ));
        }
        for g in &h.gpus {
            out.push_str(&format!(
                "    GPU{}{}: {} of {} GiB VRAM planned, {} GiB left ({})\n",
                g.index,
                if g.name.is_empty() {
                    String::new()
                } else {
                    format!(" {}", g.name)
                },
                gib(g.planned_mib),
                gib(g.usable_mib),
                gib(g.usable_mib.saturating_sub(g.planned_mib)),
                g.source
            ));
        }
        for c in &p.changes {
            let k = kind(c.kind);
            let services = c.services.join(", ");
            let line = if c.to_host == h.host {
                match k {
                    ChangeKind::Start => Some(format!("  + {}  start  [{services}]", c.group)),
                    ChangeKind::Move => Some(format!(
                        "  ~ {}  move here from {}: {}  [{services}]",
                        c.group, c.from_host, c.reason
                    )),
                    ChangeKind::Update => Some(format!("  * {}  update: {}", c.group, c.reason)),
                    ChangeKind::Keep => Some(format!("  = {}  unchanged", c.group)),
                    _ => None,
                }
            } else if c.from_host == h.host {
                match k {
                    ChangeKind::Move => Some(format!(
                        "  - {}  moves to {}: {}",
                        c.group, c.to_host, c.reason
                    )),
                    ChangeKind::Stop => Some(format!("  - {}  stop: {}", c.group, c.reason)),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(line) = line {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    if !p.unplaced.is_empty() {
        out.push_str("\nCannot be placed:\n");
        for u in &p.unplaced {
            out.push_str(&format!("  ! {}\n", u.group));
            for r in &u.reasons {
                out.push_str(&format!("      {r}\n"));
            }
        }
    }
    if !p.missing_images.is_empty() {
        out.push_str("\nImages missing where groups may run:\n");
        for line in &p.missing_images {
            out.push_str(&format!("  ! {line}\n"));
        }
    }
    if !p.failover.is_empty() {
        out.push_str("\nAutomatic failover:\n");
        for line in &p.failover {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !p.explain.is_empty() {
        out.push_str("\nExplain:\n");
        for line in &p.explain {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let count = |k: ChangeKind| p.changes.iter().filter(|c| kind(c.kind) == k).count();
    out.push_str(&format!(
        "\n{} to start, {} to move, {} to update, {} to stop, {} unchanged, {} cannot be placed.{}\n",
        count(ChangeKind::Start),
        count(ChangeKind::Move),
        count(ChangeKind::Update),
        count(ChangeKind::Stop),
        count(ChangeKind::Keep),
        p.unplaced.len(),
        if p.already_applied {
            " This topology is already applied."
        } else {
            ""
        }
    ));
    out
}

pub fn plan_json(p: &TopologyPlan) -> Value {
    json!({
        "schema": "meshctl.plan.v1",
        "source": p.source_name,
        "vram_headroom_mib": p.vram_headroom_mib,
        "failed_hosts": p.failed_hosts,
        "failover": p.failover,
        "missing_images": p.missing_images,
        "already_applied": p.already_applied,
        "placements": p.placements,
        "changes": p.changes.iter().map(|c| json!({
            "kind": kind_word(kind(c.kind)),
            "group": c.group,
            "from": c.from_host,
            "to": c.to_host,
            "reason": c.reason,
            "services": c.services,
        })).collect::<Vec<_>>(),
        "unplaced": p.unplaced.iter().map(|u| json!({
            "group": u.group,
            "reasons": u.reasons,
        })).collect::<Vec<_>>(),
        "hosts": p.hosts.iter().map(|h| json!({
            "host": h.host,
            "available": h.available,
            "unavailable_reason": h.unavailable_reason,
            "cpus": h.cpus,
            "planned_cpus": h.planned_cpus,
            "memory_mib": h.memory_mib,
            "planned_memory_mib": h.planned_memory_mib,
            "groups": h.groups,
            "gpus": h.gpus.iter().map(|g| json!({
                "index": g.index,
                "name": g.name,
                "usable_mib": g.usable_mib,
                "planned_mib": g.planned_mib,
                "free_after_plan_mib": g.usable_mib.saturating_sub(g.planned_mib),
                "source": g.source,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "explain": p.explain,
    })
}

fn phase(raw: i32) -> ServicePhase {
    ServicePhase::try_from(raw).unwrap_or(ServicePhase::Unspecified)
}

pub fn phase_word(raw: i32) -> &'static str {
    phase(raw).label()
}

fn progress_line(p: &ServiceProgress) -> String {
    let at = if p.host.is_empty() {
        p.service.clone()
    } else {
        format!("{}/{}", p.host, p.service)
    };
    let detail = if p.message.is_empty() {
        String::new()
    } else {
        format!(": {}", p.message)
    };
    format!(
        "  [{:>6.1}s] {at} {}{detail}",
        p.elapsed_ms as f64 / 1000.0,
        phase_word(p.phase)
    )
}

fn progress_json(p: &ServiceProgress) -> Value {
    json!({
        "service": p.service,
        "group": p.group,
        "host": p.host,
        "phase": phase_word(p.phase),
        "waiting_on": p.waiting_on,
        "message": p.message,
        "elapsed_ms": p.elapsed_ms,
    })
}

fn summary_json(s: &RolloutSummary) -> Value {
    json!({
        "ok": s.ok,
        "message": s.message,
        "elapsed_ms": s.elapsed_ms,
        "started": s.started,
        "unchanged": s.unchanged,
        "failed": s.failed.iter().map(progress_json).collect::<Vec<_>>(),
        "not_started": s.not_started.iter().map(progress_json).collect::<Vec<_>>(),
        "unplaced": s.unplaced.iter().map(|u| json!({"group": u.group, "reasons": u.reasons})).collect::<Vec<_>>(),
    })
}

fn summary_text(s: &RolloutSummary) -> String {
    let mut out = format!(
        "\n{} after {:.1}s: {}\n",
        if s.ok { "Done" } else { "Stopped" },
        s.elapsed_ms as f64 / 1000.0,
        s.message
    );
    if !s.started.is_empty() {
        out.push_str(&format!("  started:   {}\n", s.started.join(", ")));
    }
    if !s.unchanged.is_empty() {
        out.push_str(&format!("  unchanged: {}\n", s.unchanged.join(", ")));
    }
    for f in &s.failed {
        out.push_str(&format!(
            "  FAILED {}/{}: {}\n",
            f.host, f.service, f.message
        ));
    }
    for n in &s.not_started {
        out.push_str(&format!(
            "  not started {}: {} ({})\n",
            n.service,
            phase_word(n.phase),
            n.message
        ));
    }
    for u in &s.unplaced {
        out.push_str(&format!("  unplaced group {}\n", u.group));
    }
    out
}

/// The applied topology's groups for `meshctl status`.
pub async fn topology_status(client: &mut AdminServiceClient<Channel>) -> Result<TopologyStatus> {
    Ok(client
        .get_topology(GetTopologyRequest {})
        .await
        .map_err(admin::call_error)?
        .into_inner())
}

pub fn topology_json(t: &TopologyStatus) -> Value {
    json!({
        "applied": t.applied,
        "source": t.source_name,
        "applied_unix_ms": t.applied_unix_ms,
        "rollout": t.rollout,
        "groups": t.groups.iter().map(|g| json!({
            "group": g.group,
            "host": g.host,
            "healthy": g.healthy,
            "services": g.services.iter().map(|s| json!({
                "service": s.service,
                "host": s.host,
                "phase": phase_word(s.phase),
                "state": crate::containers_cmd::state_word(s.state),
                "health": crate::containers_cmd::health_word(s.health),
                "waiting_on": s.waiting_on,
                "message": s.message,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub fn topology_text(t: &TopologyStatus) -> String {
    if !t.applied {
        return "\nNo topology applied (meshctl place FILE --apply).\n".into();
    }
    let mut out = format!("\ntopology:      {} ({})\n\n", t.source_name, t.rollout);
    let rows: Vec<Vec<String>> = t
        .groups
        .iter()
        .flat_map(|g| {
            g.services.iter().map(move |s| {
                vec![
                    g.group.clone(),
                    if g.host.is_empty() {
                        "(unplaced)".into()
                    } else {
                        g.host.clone()
                    },
                    if g.healthy { "healthy" } else { "not healthy" }.into(),
                    s.service.clone(),
                    phase_word(s.phase).into(),
                    s.message.clone(),
                ]
            })
        })
        .collect();
    out.push_str(&table::render(
        &[
            "GROUP",
            "HOST",
            "GROUP HEALTH",
            "SERVICE",
            "PHASE",
            "DETAIL",
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{GpuBudget, HostBudget, PlacementChange, UnplacedGroup};

    #[test]
    fn plan_reads_as_a_diff_per_host() {
        let p = TopologyPlan {
            source_name: "ai-system.toml".into(),
            vram_headroom_mib: 512,
            hosts: vec![
                HostBudget {
                    host: "mainpc".into(),
                    available: true,
                    unavailable_reason: String::new(),
                    cpus: 16.0,
                    planned_cpus: 2.5,
                    memory_mib: 65536,
                    planned_memory_mib: 2048,
                    gpus: vec![GpuBudget {
                        index: 0,
                        name: "RTX 4090".into(),
                        usable_mib: 24064,
                        planned_mib: 11264,
                        source: "declared".into(),
                    }],
                    groups: vec!["gpu-services".into()],
                },
                HostBudget {
                    host: "pc2".into(),
                    available: false,
                    unavailable_reason: "pc2 is gone (what-if)".into(),
                    ..Default::default()
                },
            ],
            changes: vec![
                PlacementChange {
                    kind: ChangeKind::Move as i32,
                    group: "memory-system".into(),
                    from_host: "pc2".into(),
                    to_host: "mainpc".into(),
                    reason: "pc2 is gone (what-if)".into(),
                    services: vec!["memory-orchestrator".into()],
                },
                PlacementChange {
                    kind: ChangeKind::Keep as i32,
                    group: "gpu-services".into(),
                    from_host: "mainpc".into(),
                    to_host: "mainpc".into(),
                    reason: "unchanged".into(),
                    services: vec![],
                },
            ],
            unplaced: vec![UnplacedGroup {
                group: "big".into(),
                reasons: vec!["mainpc has 12.5 GiB free on GPU0".into()],
            }],
            failed_hosts: vec!["pc2".into()],
            failover: vec![
                "memory-system: its primary pc2 gone, failover to mainpc at epoch 2 (standby UpToDate)"
                    .into(),
            ],
            ..Default::default()
        };
        let text = plan_text(&p);
        assert!(text.contains("what if pc2 were gone"), "{text}");
        assert!(
            text.contains(
                "\nAutomatic failover:\n  memory-system: its primary pc2 gone, failover to mainpc"
            ),
            "{text}"
        );
        assert!(
            text.contains("mainpc  (2.5/16.0 CPUs, 2.0/64.0 GiB memory planned)"),
            "{text}"
        );
        assert!(
            text.contains("GPU0 RTX 4090: 11.0 of 23.5 GiB VRAM planned, 12.5 GiB left (declared)"),
            "{text}"
        );
        assert!(
            text.contains("  ~ memory-system  move here from pc2: pc2 is gone (what-if)"),
            "{text}"
        );
        assert!(
            text.contains("pc2  UNAVAILABLE: pc2 is gone (what-if)"),
            "{text}"
        );
        assert!(
            text.contains("  - memory-system  moves to mainpc"),
            "{text}"
        );
        assert!(text.contains("  = gpu-services  unchanged"), "{text}");
        assert!(
            text.contains("  ! big\n      mainpc has 12.5 GiB free on GPU0"),
            "{text}"
        );
        assert!(
            text.contains(
                "0 to start, 1 to move, 0 to update, 0 to stop, 1 unchanged, 1 cannot be placed."
            ),
            "{text}"
        );
        let j = plan_json(&p);
        assert_eq!(j["changes"][0]["kind"], "move");
        assert_eq!(
            j["hosts"][0]["gpus"][0]["free_after_plan_mib"],
            24064 - 11264
        );
    }
}
