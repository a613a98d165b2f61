//! `volume-writer`: the client of the volume kill test. Sends numbered
//! writes (`put key-N value`) to a demo service in sqlite or memory mode,
//! one at a time over REQ, and prints `sent N` before each and `acked N MS`
//! (MS: milliseconds since the writer started) after each `ok` reply, flushed at once, so whoever reads its output
//! knows every write the service acknowledged even if this process is
//! killed. Stops after COUNT writes, or when a reply does not come within
//! the timeout (the service's host was killed). With `--retry`, a write
//! that times out is sent again on a new socket (the lazy-pirate client
//! of the ZeroMQ guide; `retry N` is printed), so a switchover's downtime
//! shows as the longest gap between acknowledgements.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use zeromq::{ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

#[derive(Parser, Debug)]
struct Args {
    /// The service, e.g. tcp://10.77.0.2:7150.
    #[arg(long)]
    connect: String,
    /// How many writes; 0: until a reply does not come.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// The first key number.
    #[arg(long, default_value_t = 0)]
    first: u64,
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// The size of each value in KiB (0: the 5 bytes "value").
    #[arg(long, default_value_t = 0)]
    value_kib: usize,
    /// Send a write that timed out again, on a new socket, instead of
    /// giving up (the writer then runs until killed or COUNT is done).
    #[arg(long)]
    retry: bool,
    /// Instead of writing: read keys FIRST..FIRST+COUNT back (`get`) and
    /// print `verified N, missing M` (exit 1 when any is missing).
    #[arg(long)]
    verify: bool,
    /// With --verify: read every STRIDE-th key only.
    #[arg(long, default_value_t = 1)]
    stride: u64,
}

async fn connect(address: &str) -> Result<ReqSocket> {
    let mut options = SocketOptions::default();
    options.connect_timeout(Duration::from_secs(15));
    let mut socket = ReqSocket::with_options(options);
    socket
        .connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    Ok(socket)
}

/// One write and its reply; Err says what went wrong.
async fn put(socket: &mut ReqSocket, msg: ZmqMessage, timeout: Duration, n: u64) -> Result<()> {
    match tokio::time::timeout(timeout, socket.send(msg)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("send of key-{n}: {e}"),
        Err(_) => bail!("send of key-{n}: no progress within {timeout:?}"),
    }
    let reply = match tokio::time::timeout(timeout, socket.recv()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => bail!("reply to key-{n}: {e}"),
        Err(_) => bail!("reply to key-{n}: none within {timeout:?}"),
    };
    let first = reply.get(0).map(|f| f.to_vec()).unwrap_or_default();
    if first != b"ok" {
        bail!(
            "key-{n} refused: {}",
            String::from_utf8_lossy(&first).into_owned()
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut socket = connect(&args.connect).await?;
    let timeout = Duration::from_millis(args.timeout_ms);
    if args.verify {
        return verify(&mut socket, &args, timeout).await;
    }
    let out = std::io::stdout();
    let value = if args.value_kib == 0 {
        b"value".to_vec()
    } else {
        vec![b'v'; args.value_kib * 1024]
    };
    let started = std::time::Instant::now();
    let mut n = args.first;
    loop {
        if args.count != 0 && n >= args.first + args.count {
            return Ok(());
        }
        let key = format!("key-{n}");
        let mut msg = ZmqMessage::from(b"put".to_vec());
        msg.push_back(key.into_bytes().into());
        msg.push_back(value.clone().into());
        writeln!(out.lock(), "sent {n}")?;
        if let Err(e) = put(&mut socket, msg.clone(), timeout, n).await {
            if !args.retry {
                return Err(e);
            }
            writeln!(out.lock(), "retry {n}: {e:#}")?;
            socket = connect(&args.connect).await?;
            continue;
        }
        let mut o = out.lock();
        writeln!(o, "acked {n} {}", started.elapsed().as_millis())?;
        o.flush()?;
        n += 1;
    }
}

async fn verify(socket: &mut ReqSocket, args: &Args, timeout: Duration) -> Result<()> {
    let mut missing = Vec::new();
    let mut read = 0;
    for n in (args.first..args.first + args.count).step_by(args.stride.max(1) as usize) {
        read += 1;
        let mut msg = ZmqMessage::from(b"get".to_vec());
        msg.push_back(format!("key-{n}").into_bytes().into());
        tokio::time::timeout(timeout, socket.send(msg))
            .await
            .context("send timed out")??;
        let reply = tokio::time::timeout(timeout, socket.recv())
            .await
            .context("reply timed out")??;
        let value = reply.get(0).map(|f| f.to_vec()).unwrap_or_default();
        if value == b"missing" || value.starts_with(b"error: ") {
            missing.push(n);
        }
    }
    println!("verified {read} keys, missing {}", missing.len());
    if !missing.is_empty() {
        bail!("missing keys: {:?}", &missing[..missing.len().min(20)]);
    }
    Ok(())
}
