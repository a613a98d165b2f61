//! `mesh-demo-service`: a small ZeroMQ service that the demo mesh and the
//! tests run inside real containers, standing in for users' Python agents.
//!
//! Modes (`--mode`, `DEMO_MODE`):
//! - `rep` (default): a REP socket; `health` -> `ok`, `whoami` -> the
//!   service name (`DEMO_NAME`), anything else is echoed frame for frame.
//! - `router`: the same protocol on a ROUTER socket, for many REQ and
//!   DEALER clients at once; replies keep each client's envelope.
//! - `memory`: a REP socket over a key-value store in `DEMO_DATA_DIR`
//!   (`put KEY VALUE` -> `ok` only once the write is fsynced, `get KEY` ->
//!   value or `missing`, `count`, `health`, `whoami`).
//!
//! It binds `--bind`/`DEMO_BIND` (default `tcp://0.0.0.0:5555`) and exits
//! 0 on SIGTERM or SIGINT. Logs go to stderr (`RUST_LOG`, default info).
//! Built statically into a `FROM scratch` image by
//! `scripts/build-demo-image.sh`.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};

#[path = "mesh_demo_service/memory.rs"]
mod memory;
#[path = "mesh_demo_service/serve.rs"]
mod serve;
#[path = "mesh_demo_service/store.rs"]
mod store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// REP socket: health, whoami, echo.
    Rep,
    /// ROUTER socket: the rep protocol for many clients at once.
    Router,
    /// REP socket over a durable key-value store.
    Memory,
}

#[derive(Parser, Debug)]
#[command(
    name = "mesh-demo-service",
    version,
    about = "Demo ZeroMQ service for the mesh: health, echo, router and a durable key-value store"
)]
struct Args {
    /// What the service does.
    #[arg(long, env = "DEMO_MODE", value_enum, default_value_t = Mode::Rep)]
    mode: Mode,
    /// ZeroMQ endpoint to bind (tcp://HOST:PORT or ipc://PATH).
    #[arg(long, env = "DEMO_BIND", default_value = "tcp://0.0.0.0:5555")]
    bind: String,
    /// Service name, the reply to `whoami` and a field of every log line.
    #[arg(long, env = "DEMO_NAME", default_value = "mesh-demo")]
    name: String,
    /// Where the memory mode keeps its log.
    #[arg(long, env = "DEMO_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in container logs.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-demo-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let span = tracing::info_span!("service", name = %args.name, mode = ?args.mode);
    let _entered = span.enter();
    runtime.block_on(async {
        // Signal handlers first: as PID 1 in a container, an unhandled
        // SIGTERM is ignored and `podman stop` would wait for its timeout.
        let shutdown = shutdown_signal()?;
        tokio::select! {
            served = serve(&args) => served,
            signal = shutdown => {
                tracing::info!(signal, "stopping");
                Ok(())
            }
        }
    })
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    match args.mode {
        Mode::Rep => {
            let socket = serve::bind_rep(&args.bind).await?;
            serve::serve_rep(socket, |body| serve::echo_reply(body, &args.name)).await
        }
        Mode::Router => {
            let socket = serve::bind_router(&args.bind).await?;
            serve::serve_router(socket, &args.name).await
        }
        Mode::Memory => {
            // Load before binding: no client is answered from a half-read log.
            let mut store = store::Store::open(&args.data_dir)?;
            let socket = serve::bind_rep(&args.bind).await?;
            serve::serve_rep(socket, |frames| {
                let request = memory::parse(frames);
                vec![memory::handle(&mut store, &args.name, request)]
            })
            .await
        }
    }
}

/// Resolves with the signal's name on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let args = Args::try_parse_from(["mesh-demo-service"]).unwrap();
        assert_eq!(args.mode, Mode::Rep);
        assert_eq!(args.bind, "tcp://0.0.0.0:5555");
        assert_eq!(args.data_dir, PathBuf::from("/data"));
        let args = Args::try_parse_from([
            "mesh-demo-service",
            "--mode",
            "memory",
            "--bind",
            "tcp://127.0.0.1:7000",
        ])
        .unwrap();
        assert_eq!(args.mode, Mode::Memory);
        assert_eq!(args.bind, "tcp://127.0.0.1:7000");
        assert!(Args::try_parse_from(["mesh-demo-service", "--mode", "pub"]).is_err());
    }
}
