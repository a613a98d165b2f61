//! The service side of a REQ/REP bridge: one DEALER per remote client, connected to the
//! service (a REP or ROUTER) with a bridge-assigned identity.
//!
//! Replies are matched to requests by their envelope (the frames up to the first empty
//! frame), which REP and well-behaved ROUTER services echo; requests without distinguishing
//! envelopes are matched in order. Either way a reply only ever goes back to the client whose
//! DEALER received it.
//!
//! The DEALERs are the bridge's own ZMTP (`crate::zmtp`), one connection each and no
//! reconnection: a DEALER whose service connection drops is thrown away, its outstanding
//! requests are reported as failed, and the client's next request gets a fresh DEALER.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::SendStream;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info_span, warn, Instrument};

use super::envelope;
use crate::frame::{Kind, Record};
use crate::service::ServeStream;
use crate::stream::{self, Outgoing, Reader};
use crate::zmtp::{connect_dealer, DealerSend};

/// How long connecting to the service may take before the requests waiting for it fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A client's DEALER with nothing outstanding is closed after between one and two times this
/// long without traffic.
const IDLE: Duration = Duration::from_secs(60);

/// Makes DEALER identities unique across streams served by this process.
static STREAM_SEQ: AtomicU64 = AtomicU64::new(1);

struct Ctx {
    peer: String,
    endpoint: String,
    max_record: usize,
    seq: u64,
    wtx: mpsc::Sender<Outgoing>,
}

/// Serves one REQ/REP bridge stream until the client side finishes it.
pub(crate) async fn serve(ctx: ServeStream, send: SendStream, mut reader: Reader) {
    let (wtx, _writer) = stream::spawn_writer(send);
    let ctx = Arc::new(Ctx {
        peer: ctx.peer,
        endpoint: ctx.endpoint,
        max_record: ctx.max_record,
        seq: STREAM_SEQ.fetch_add(1, Ordering::Relaxed),
        wtx,
    });
    let mut clients: HashMap<u64, mpsc::Sender<Record>> = HashMap::new();
    loop {
        let mut rec = match stream::next(&mut reader).await {
            Ok(Some(r)) if r.kind == Kind::Request => r,
            Ok(Some(r)) => {
                debug!(kind = ?r.kind, "unexpected record on a REQ/REP stream");
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                warn!("bridge stream failed: {e}");
                break;
            }
        };
        // A client task may have just ended (idle or service gone): then start a fresh one.
        for _ in 0..2 {
            let client = rec.client;
            let tx = clients
                .entry(client)
                .or_insert_with(|| spawn_client(ctx.clone(), client));
            match tx.send(rec).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    clients.remove(&client);
                    rec = back;
                }
            }
        }
    }
    debug!("REQ/REP bridge stream ended");
}

fn spawn_client(ctx: Arc<Ctx>, client: u64) -> mpsc::Sender<Record> {
    let (tx, rx) = mpsc::channel(1024);
    let span = info_span!("client", client);
    tokio::spawn(client_task(ctx, client, rx).instrument(span));
    tx
}

async fn send_record(ctx: &Ctx, record: Record) -> bool {
    let (id, client) = (record.id, record.client);
    let out = match Outgoing::new(record, ctx.max_record) {
        Ok(out) => out,
        Err(e) => match Outgoing::new(failed(id, client, &format!("reply: {e}")), ctx.max_record) {
            Ok(out) => out,
            Err(_) => return false,
        },
    };
    ctx.wtx.send(out).await.is_ok()
}

fn failed(id: u64, client: u64, reason: &str) -> Record {
    Record {
        kind: Kind::Failed,
        id,
        client,
        frames: vec![Bytes::from(reason.to_string())],
    }
}

/// Reports every outstanding and queued request of a client as failed.
async fn fail_all(
    ctx: &Ctx,
    client: u64,
    outstanding: VecDeque<(u64, Vec<Bytes>)>,
    rx: &mut mpsc::Receiver<Record>,
    reason: &str,
) {
    warn!(
        outstanding = outstanding.len(),
        "service connection lost: {reason}"
    );
    rx.close();
    let mut ids: Vec<u64> = outstanding.into_iter().map(|(id, _)| id).collect();
    while let Some(r) = rx.recv().await {
        ids.push(r.id);
    }
    for id in ids {
        if !send_record(ctx, failed(id, client, reason)).await {
            return;
        }
    }
}

/// Most requests (or replies) a client task handles in one turn before it looks at its other
/// inputs again.
const BATCH: usize = 64;

/// Sends request `rec` to the service and records it as outstanding; `Err` says why the
/// service connection is unusable.
async fn forward(
    ctx: &Ctx,
    client: u64,
    rec: Record,
    outstanding: &mut VecDeque<(u64, Vec<Bytes>)>,
    dsend: &DealerSend,
) -> Result<(), String> {
    let id = rec.id;
    if rec.frames.is_empty() {
        send_record(ctx, failed(id, client, "empty request")).await;
        return Ok(());
    }
    outstanding.push_back((id, envelope(&rec.frames)));
    dsend
        .send(rec.frames)
        .await
        .map_err(|e| format!("sending to the service at {}: {e}", ctx.endpoint))
}

/// Matches a message from the service to an outstanding request and sends it back as that
/// request's reply; `false` when the stream is gone.
async fn answer(
    ctx: &Ctx,
    client: u64,
    frames: Vec<Bytes>,
    outstanding: &mut VecDeque<(u64, Vec<Bytes>)>,
) -> bool {
    let env = envelope(&frames);
    let Some(pos) = outstanding
        .iter()
        .position(|(_, e)| *e == env)
        .or((!outstanding.is_empty()).then_some(0))
    else {
        debug!("dropped a message from the service with no request outstanding");
        return true;
    };
    let Some((id, _)) = outstanding.remove(pos) else {
        return true;
    };
    let reply = Record {
        kind: Kind::Reply,
        id,
        client,
        frames,
    };
    send_record(ctx, reply).await
}

async fn client_task(ctx: Arc<Ctx>, client: u64, mut rx: mpsc::Receiver<Record>) {
    let identity = format!("mb-{}-{}-{}", ctx.peer, ctx.seq, client);
    let connected = connect_dealer(
        &ctx.endpoint,
        identity.as_bytes(),
        CONNECT_TIMEOUT,
        ctx.max_record,
    )
    .await;
    let (dsend, mut drecv) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            let reason = format!("cannot connect to the service at {}: {e}", ctx.endpoint);
            fail_all(&ctx, client, VecDeque::new(), &mut rx, &reason).await;
            return;
        }
    };
    // Replies are read here, in the select! below (the reader is cancel-safe: what a read
    // returned stays in its buffer), and every whole reply a read brought is handled at once.
    let mut outstanding: VecDeque<(u64, Vec<Bytes>)> = VecDeque::new();
    let mut open = true;
    let mut closing = false;
    // Traffic marks the client active; the idle timer, when it fires, closes an inactive
    // client or re-arms (cheaper than resetting a timer per message).
    let mut active = false;
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    let failure = 'serve: loop {
        if !open && outstanding.is_empty() {
            break None;
        }
        tokio::select! {
            req = rx.recv(), if open => {
                let Some(mut rec) = req else {
                    open = false;
                    continue;
                };
                active = true;
                // Whatever else is queued goes out in the same turn.
                for n in 1..=BATCH {
                    if let Err(reason) = forward(&ctx, client, rec, &mut outstanding, &dsend).await {
                        break 'serve Some(reason);
                    }
                    if n == BATCH {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(next) => rec = next,
                        Err(_) => break,
                    }
                }
            },
            rep = drecv.next() => {
                let mut rep = rep;
                for n in 1..=BATCH {
                    match rep {
                        Ok(Some(msg)) => {
                            active = true;
                            if !answer(&ctx, client, msg, &mut outstanding).await {
                                return;
                            }
                        }
                        Ok(None) => break 'serve Some(format!("the service at {} closed the connection", ctx.endpoint)),
                        Err(e) => break 'serve Some(format!("receiving from the service at {}: {e}", ctx.endpoint)),
                    }
                    if n == BATCH {
                        break;
                    }
                    match drecv.buffered() {
                        Ok(Some(next)) => rep = Ok(Some(next)),
                        Ok(None) => break,
                        Err(e) => rep = Err(e),
                    }
                }
            },
            _ = &mut idle, if outstanding.is_empty() && open && !closing => {
                if active {
                    active = false;
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                    continue;
                }
                // Refuse new requests (the stream starts a fresh task for them) and finish.
                closing = true;
                rx.close();
            }
            _ = ctx.wtx.closed() => return,
        }
    };
    if let Some(reason) = failure {
        fail_all(&ctx, client, outstanding, &mut rx, &reason).await;
    }
}
