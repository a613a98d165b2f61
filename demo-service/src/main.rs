//! `mesh-demo-service`: a small ZeroMQ service that the demo mesh and the
//! tests run inside real containers, standing in for users' Python agents,
//! and a one-shot client that puts load on such services and checks every
//! answer.
//!
//! Modes (`--mode`, `DEMO_MODE`):
//! - `rep` (default): a REP socket; `health` -> `ok`, `whoami` -> the
//!   service name (`DEMO_NAME`), anything else is echoed frame for frame.
//! - `router`: the same protocol on a ROUTER socket, for many REQ and
//!   DEALER clients at once; replies keep each client's envelope.
//! - `memory`: a REP socket over a key-value store in `DEMO_DATA_DIR`
//!   (`put KEY VALUE` -> `ok` only once the write is fsynced, `get KEY` ->
//!   value or `missing`, `count`, `health`, `whoami`).
//! - `sqlite`: the memory mode's protocol over a SQLite database in
//!   `DEMO_DATA_DIR` (`mesh-demo-kv.sqlite`, statically linked SQLite,
//!   `journal_mode=WAL`, `synchronous=FULL`): every `put` is one
//!   transaction, answered `ok` only after its COMMIT returned.
//! - `sqlite-check`: one-shot, reads the sqlite mode's database in
//!   `DEMO_DATA_DIR` read-only (committed transactions still in its WAL
//!   count, as after a crash; it must exist) and prints one JSON line,
//!   `{"path", "integrity_ok", "integrity_check", "records", "keys"}`
//!   (`integrity_check`: the rows of `PRAGMA integrity_check`, `["ok"]`
//!   when sound; `keys`: sorted, lossy UTF-8); exit 0 when integrity is
//!   ok, 1 otherwise, and 1 with no JSON (the reason on stderr) when the
//!   database cannot be read.
//! - `pub`: a PUB socket that publishes `[topic, "<name> <seq>"]` on every
//!   topic of `--topics`/`DEMO_TOPICS` (comma list, default `events`), seq
//!   counting from 0 per topic. `--rate-hz`/`DEMO_RATE_HZ` rounds per
//!   second, one message per topic each (default 10; fractions allowed; 0:
//!   as fast as possible), `--count`/`DEMO_COUNT` messages per topic, then
//!   it stays idle with the socket bound (default 0: forever). Like any
//!   PUB it sends only to subscribers already subscribed and drops what a
//!   slow one cannot take. The mesh's health probe (REQ `health` -> `ok`,
//!   also `whoami` and echo as in `rep`) is answered on a separate REP
//!   socket at `--health-bind`/`DEMO_HEALTH_BIND` (default
//!   `tcp://0.0.0.0:5556`).
//! - `push`: the same messages, settings and health socket as `pub`, on a
//!   PUSH socket: each message goes to exactly one connected PULL worker,
//!   and the service waits while no worker is connected.
//! - `client`: connects to `--connect`/`DEMO_CONNECT` (comma list of
//!   endpoints, e.g. `tcp://host.containers.internal:7140`), runs the load
//!   pattern `--pattern`/`DEMO_PATTERN`, prints one JSON line on stdout
//!   and exits 0 when every answer was correct, 1 otherwise:
//!   - `req` (default): `--clients`/`DEMO_CLIENTS` (default 1) REQ
//!     sockets, each sending `--requests`/`DEMO_REQUESTS` (default 100)
//!     requests one after the other, of `--size`/`DEMO_SIZE` bytes
//!     (default 64; 16 MiB works). Each payload starts with the tag
//!     `c<client> s<seq> ` and the rest derives from the tag, so the echo
//!     of the rep and router modes proves which request it answers.
//!   - `dealer`: the same with DEALER sockets keeping up to
//!     `--window`/`DEMO_WINDOW` (default 10) requests in flight each
//!     (sent as `["", payload]`, so REP services answer too); every reply
//!     must answer a request of its client that is still unanswered.
//!   - `sub`: one SUB socket subscribed to `DEMO_TOPICS`, receiving until
//!     `DEMO_COUNT` messages arrived on every topic (0: until the
//!     timeout, then at least one on each); per (publisher, topic) the
//!     seq numbers must follow each other without gaps from the first one
//!     seen (a subscriber misses what was published before it joined).
//!   - `pull`: one PULL socket taking the push mode's messages, counted
//!     and checked as for `sub` (a single worker gets every message).
//!
//!   `req` also takes `--interval-ms`/`DEMO_INTERVAL_MS` (default 0), a
//!   pause between one client's requests, and counts error replies made
//!   by a mesh bridge (`MESH-BRIDGE-ERROR: ...`) as `bridge_errors`
//!   rather than wrong replies (still a problem: exit status 1).
//!
//!   `--timeout-ms`/`DEMO_TIMEOUT_MS` (default 10000) limits every
//!   connect, send and receive (a request without a reply in time counts
//!   as an error and its socket is replaced) and, for `sub` and `pull`,
//!   the whole run. The report: `{"pattern", "clients", "requests_sent",
//!   "replies_ok", "replies_wrong", "bridge_errors", "errors", "messages_received",
//!   "in_order", "first_problem", "elapsed_ms", "p50_us", "p99_us"}`;
//!   `in_order` is null except for `sub` and `pull`, the latencies (round
//!   trips of correct replies) null for them, `first_problem` null on success.
//!
//! Services bind `--bind`/`DEMO_BIND` (default `tcp://0.0.0.0:5555`) and
//! exit 0 on SIGTERM or SIGINT (a client stopped so reports and exits 1).
//! Logs go to stderr (`RUST_LOG`, default info).
//! Built statically into a `FROM scratch` image by
//! `scripts/build-demo-image.sh`.
//!
//! What it must not do: depend on the mesh's crates (they would put QUIC,
//! gRPC and Podman into the static image's build; the bridge's error
//! prefix is a checked copy, [`load::BRIDGE_ERROR_PREFIX`]); need anything
//! in its container but its own file, its endpoints and, for `memory`
//! and `sqlite`, `DEMO_DATA_DIR`; acknowledge a `put` before it is on
//! disk (committed, for `sqlite`); let a client
//! run pass with a wrong, missing or out-of-order answer.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};

mod client;
mod load;
mod memory;
mod publish;
mod serve;
mod sqlite;
mod store;
#[cfg(test)]
mod test_dir;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// REP socket: health, whoami, echo.
    Rep,
    /// ROUTER socket: the rep protocol for many clients at once.
    Router,
    /// REP socket over a durable key-value store.
    Memory,
    /// REP socket over the same store kept in SQLite (WAL, synchronous=FULL).
    Sqlite,
    /// One-shot: integrity and keys of the sqlite mode's database, as JSON.
    SqliteCheck,
    /// PUB socket publishing numbered messages, REP socket for health.
    Pub,
    /// PUSH socket handing numbered messages to PULL workers, REP socket
    /// for health.
    Push,
    /// One-shot load client that checks every answer and prints a report.
    Client,
}

#[derive(Parser, Debug)]
#[command(
    name = "mesh-demo-service",
    version,
    about = "Demo ZeroMQ service for the mesh: health, echo, router, a durable key-value store (log or SQLite), a publisher, and a load client"
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
    /// Where the memory mode keeps its log and the sqlite mode its database.
    #[arg(long, env = "DEMO_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// pub: the REP endpoint answering the health probe.
    #[arg(long, env = "DEMO_HEALTH_BIND", default_value = "tcp://0.0.0.0:5556")]
    health_bind: String,
    /// pub and client sub: topics, a comma list.
    #[arg(long, env = "DEMO_TOPICS", default_value = "events")]
    topics: String,
    /// pub: rounds per second, one message per topic each (0: no pause).
    #[arg(long, env = "DEMO_RATE_HZ", default_value_t = 10.0)]
    rate_hz: f64,
    /// pub: messages per topic, then idle; client sub: messages per topic
    /// to wait for (0: forever / until the timeout).
    #[arg(long, env = "DEMO_COUNT", default_value_t = 0)]
    count: u64,
    /// client: endpoints to connect to, a comma list.
    #[arg(long, env = "DEMO_CONNECT")]
    connect: Option<String>,
    /// client: the load pattern.
    #[arg(long, env = "DEMO_PATTERN", value_enum, default_value_t = client::Pattern::Req)]
    pattern: client::Pattern,
    /// client req and dealer: sockets, each its own connection.
    #[arg(long, env = "DEMO_CLIENTS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// client req and dealer: requests per client.
    #[arg(long, env = "DEMO_REQUESTS", default_value_t = 100)]
    requests: u64,
    /// client req and dealer: payload bytes per request.
    #[arg(long, env = "DEMO_SIZE", default_value_t = 64)]
    size: usize,
    /// client dealer: requests in flight per client.
    #[arg(long, env = "DEMO_WINDOW", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// client: limit in milliseconds on every connect, send and receive
    /// (sub: on the whole run).
    #[arg(long, env = "DEMO_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// client req: milliseconds to wait between one client's requests.
    #[arg(long, env = "DEMO_INTERVAL_MS", default_value_t = 0)]
    interval_ms: u64,
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("mesh-demo-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.mode == Mode::Client {
        return run_client(&args);
    }
    if args.mode == Mode::SqliteCheck {
        return run_sqlite_check(&args);
    }
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
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The client mode: one JSON line on stdout whatever happens (bad
/// settings included), exit 0 only when every answer was correct.
fn run_client(args: &Args) -> anyhow::Result<ExitCode> {
    let report = match client_config(args) {
        Err(problem) => client::Report::refused(args.pattern, problem),
        Ok(config) => {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let span = tracing::info_span!("client", name = %args.name, pattern = ?args.pattern);
            let _entered = span.enter();
            tracing::info!(endpoints = ?config.endpoints, "starting");
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                anyhow::Ok(client::run(config, shutdown).await)
            })?
        }
    };
    let line = serde_json::to_string(&report).context("cannot write the report")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot print the report")?;
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The sqlite-check mode: one JSON line when the database could be read,
/// exit 0 only when its integrity check is ok.
fn run_sqlite_check(args: &Args) -> anyhow::Result<ExitCode> {
    let report = sqlite::check(&args.data_dir)?;
    let line = serde_json::to_string(&report).context("cannot write the report")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot print the report")?;
    Ok(if report.integrity_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn client_config(args: &Args) -> Result<client::Config, String> {
    let endpoints: Vec<String> = args
        .connect
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if endpoints.is_empty() {
        return Err("no endpoint to connect to: set --connect or DEMO_CONNECT".into());
    }
    let topics = load::parse_topics(&args.topics);
    if matches!(args.pattern, client::Pattern::Sub | client::Pattern::Pull) && topics.is_empty() {
        return Err("no topic to subscribe to: DEMO_TOPICS is empty".into());
    }
    Ok(client::Config {
        pattern: args.pattern,
        endpoints,
        clients: args.clients as usize,
        requests: args.requests,
        size: args.size,
        window: args.window as usize,
        topics,
        count: args.count,
        timeout: Duration::from_millis(args.timeout_ms),
        interval: Duration::from_millis(args.interval_ms),
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
        Mode::Sqlite => {
            let mut store = sqlite::SqliteStore::open(&args.data_dir)?;
            let socket = serve::bind_rep(&args.bind).await?;
            serve::serve_rep(socket, |frames| {
                let request = memory::parse(frames);
                vec![memory::handle(&mut store, &args.name, request)]
            })
            .await
        }
        Mode::Pub | Mode::Push => {
            let config = publish::Config {
                bind: args.bind.clone(),
                health_bind: args.health_bind.clone(),
                name: args.name.clone(),
                topics: load::parse_topics(&args.topics),
                rate_hz: args.rate_hz,
                count: args.count,
            };
            if args.mode == Mode::Pub {
                publish::serve_pub(&config).await
            } else {
                publish::serve_push(&config).await
            }
        }
        Mode::Client | Mode::SqliteCheck => anyhow::bail!("a one-shot mode serves nothing"),
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
        assert!(Args::try_parse_from(["mesh-demo-service", "--mode", "bogus"]).is_err());
        for (name, mode) in [
            ("sqlite", Mode::Sqlite),
            ("sqlite-check", Mode::SqliteCheck),
        ] {
            let args = Args::try_parse_from(["mesh-demo-service", "--mode", name]).unwrap();
            assert_eq!(args.mode, mode);
        }
    }

    #[test]
    fn pub_and_client_settings() {
        let args = Args::try_parse_from(["mesh-demo-service", "--mode", "pub"]).unwrap();
        assert_eq!(args.mode, Mode::Pub);
        assert_eq!(args.health_bind, "tcp://0.0.0.0:5556");
        assert_eq!(args.topics, "events");
        assert_eq!(args.rate_hz, 10.0);
        assert_eq!(args.count, 0);

        let args = Args::try_parse_from(["mesh-demo-service", "--mode", "client"]).unwrap();
        assert_eq!(args.pattern, client::Pattern::Req);
        let err = client_config(&args).err().unwrap();
        assert!(err.contains("DEMO_CONNECT"), "{err}");
        let args = Args::try_parse_from([
            "mesh-demo-service",
            "--mode",
            "client",
            "--pattern",
            "dealer",
            "--connect",
            "tcp://a:1, tcp://b:2",
            "--size",
            "16777216",
        ])
        .unwrap();
        let config = client_config(&args).unwrap();
        assert_eq!(config.pattern, client::Pattern::Dealer);
        assert_eq!(config.endpoints, ["tcp://a:1", "tcp://b:2"]);
        assert_eq!((config.clients, config.requests), (1, 100));
        assert_eq!((config.size, config.window), (16 * 1024 * 1024, 10));
        assert_eq!(config.timeout, Duration::from_millis(10_000));
        for bad in [["--clients", "0"], ["--window", "0"], ["--timeout-ms", "0"]] {
            let mut argv = vec!["mesh-demo-service", "--mode", "client"];
            argv.extend(bad);
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
