use std::time::Duration;

use mesh_proto::v1::{CommandAction, CommandResult, ContainerCommand};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::manager::Input;
use crate::runtime::fake::Op;

fn command(container: &str, action: CommandAction) -> ContainerCommand {
    ContainerCommand {
        id: 9,
        container: container.into(),
        action: action as i32,
        tail: 0,
    }
}

/// Sends a command to a running manager; the reply comes later.
async fn send(
    inputs: &mpsc::Sender<Input>,
    container: &str,
    action: CommandAction,
) -> oneshot::Receiver<CommandResult> {
    let (tx, rx) = oneshot::channel();
    inputs
        .send(Input::Command(command(container, action), tx))
        .await
        .unwrap();
    rx
}

/// Runs a command against a manager driven by hand; the reply once its
/// background work has ended.
async fn run(
    m: &mut Manager<FakeRuntime>,
    container: &str,
    action: CommandAction,
) -> CommandResult {
    let (tx, mut rx) = oneshot::channel();
    m.command(command(container, action), tx).await;
    loop {
        if let Ok(result) = rx.try_recv() {
            return result;
        }
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        m.pass().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_stop_runs_in_the_background_while_other_containers_are_kept() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("slow"), spec("other")]));
    m.pass().await;
    host.rt
        .delay(Op::Stop, "mesh-slow", Duration::from_secs(10));
    let (inputs, rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(m.run(rx, shutdown.clone()));
    let t0 = Instant::now();
    let mut reply = send(&inputs, "slow", CommandAction::Stop).await;
    // Meanwhile another container crashes and is restarted after 1 s.
    host.rt.exit("mesh-other", 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        host.rt.calls_of(Op::Start),
        vec!["mesh-other", "mesh-slow", "mesh-other"]
    );
    assert_eq!(status(&report, "slow").phase, "holding");
    assert!(reply.try_recv().is_err(), "no reply before the stop ends");
    // Logs still answer at once.
    let logs = send(&inputs, "other", CommandAction::Logs)
        .await
        .await
        .unwrap();
    assert!(logs.ok, "{logs:?}");
    assert!(t0.elapsed() < Duration::from_secs(4));
    let result = reply.await.unwrap();
    assert!(result.ok, "{result:?}");
    assert_eq!((result.id, result.message.as_str()), (9, "stopped"));
    assert!(t0.elapsed() >= Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(&report, "slow").phase, "held");
    assert_eq!(host.rt.status("mesh-slow").as_deref(), Some("exited"));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stop_command_holds_until_a_newer_desired_set_and_start_lifts_it() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    let stopped = run(&mut m, "a", CommandAction::Stop).await;
    assert!(stopped.ok, "{stopped:?}");
    assert_eq!(status(&report, "a").hold, WireHold::Stopped as i32);
    // The same desired set again (a reconnect): the hold stays.
    m.set_desired(desired(1, vec![spec("a")]));
    run_for(&mut m, 120).await;
    assert_eq!(host.rt.calls_of(Op::Start).len(), 1);
    let started = run(&mut m, "a", CommandAction::Start).await;
    assert_eq!((started.ok, started.message.as_str()), (true, "started"));
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    // A kill, then a newer desired set without a hold: running again.
    assert!(run(&mut m, "a", CommandAction::Kill).await.ok);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("exited"));
    m.set_desired(desired(2, vec![spec("a")]));
    m.pass().await;
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
}

#[tokio::test(start_paused = true)]
async fn pause_resume_and_restart_commands() {
    let host = Host::new();
    let (mut m, report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    assert!(run(&mut m, "a", CommandAction::Pause).await.ok);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("paused"));
    run_for(&mut m, 30).await;
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("paused"));
    let resumed = run(&mut m, "a", CommandAction::Resume).await;
    assert_eq!(resumed.message, "resumed");
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    host.rt.delay(Op::Stop, "mesh-a", Duration::from_secs(10));
    let t0 = Instant::now();
    let restarted = run(&mut m, "a", CommandAction::Restart).await;
    assert_eq!(
        (restarted.ok, restarted.message.as_str()),
        (true, "restarted")
    );
    assert!(t0.elapsed() >= Duration::from_secs(10));
    assert_eq!(host.rt.calls_of(Op::Start).len(), 2);
    assert_eq!(host.rt.status("mesh-a").as_deref(), Some("running"));
    m.pass().await;
    assert_eq!(status(&report, "a").restart_count, 0, "not a crash");
}

#[tokio::test(start_paused = true)]
async fn failed_and_unknown_commands_say_why() {
    let host = Host::new();
    let (mut m, _report) = host.manager();
    m.set_desired(desired(1, vec![spec("a")]));
    m.pass().await;
    let unknown = run(&mut m, "nope", CommandAction::Stop).await;
    assert!(!unknown.ok);
    assert!(
        unknown.message.contains("meshctl ps"),
        "{}",
        unknown.message
    );
    host.rt.exit("mesh-a", 1);
    m.pass().await;
    host.rt.fail_next(
        Op::Start,
        "mesh-a",
        crate::runtime::RuntimeError::PortTaken { port: "80".into() },
    );
    let start = run(&mut m, "a", CommandAction::Start).await;
    assert!(!start.ok);
    assert!(start.message.contains("port 80"), "{}", start.message);
    host.rt.set_logs("mesh-a", &["one", "two", "three"]);
    let mut logs = command("a", CommandAction::Logs);
    logs.tail = 2;
    let (tx, rx) = oneshot::channel();
    m.command(logs, tx).await;
    assert_eq!(rx.await.unwrap().lines, vec!["two", "three"]);
}
