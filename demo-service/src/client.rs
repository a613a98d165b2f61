//! The client mode: a one-shot load generator that checks every answer
//! and prints one JSON report (see the binary's docs for the patterns).
//!
//! Every wait has a limit (`DEMO_TIMEOUT_MS`): the zeromq crate has no
//! receive timeout, so each connect, send and receive runs under
//! `tokio::time::timeout`. A REQ socket whose receive failed or timed out
//! is stuck (docs/zeromq-0.7-notes.md, findings 3 and 4) and a DEALER
//! never reconnects (finding 1), so after a failure the client counts
//! what was lost and goes on with a fresh socket; if that one cannot
//! connect, the client gives up its remaining requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use zeromq::{
    DealerSocket, PullSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket,
    ZmqMessage,
};

use super::load::{
    check_content, check_echo, check_tag, describe_frames, parse_published, percentile,
    request_payload, OrderCheck, BRIDGE_ERROR_PREFIX,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// REQ clients, one request at a time each.
    Req,
    /// DEALER clients with a window of requests in flight each.
    Dealer,
    /// One SUB socket checking the pub mode's sequence numbers.
    Sub,
    /// One PULL socket checking the push mode's sequence numbers.
    Pull,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Req => "req",
            Pattern::Dealer => "dealer",
            Pattern::Sub => "sub",
            Pattern::Pull => "pull",
        }
    }
}

pub struct Config {
    pub pattern: Pattern,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub requests: u64,
    pub size: usize,
    pub window: usize,
    pub topics: Vec<String>,
    pub count: u64,
    pub timeout: Duration,
    /// req: pause between one client's requests.
    pub interval: Duration,
}

/// The one line printed on stdout; fields that do not apply to the
/// pattern are 0 or null.
#[derive(Debug, Serialize)]
pub struct Report {
    pub pattern: &'static str,
    pub clients: usize,
    pub requests_sent: u64,
    pub replies_ok: u64,
    pub replies_wrong: u64,
    /// Error replies made by a mesh bridge (`MESH-BRIDGE-ERROR: ...`): an
    /// explicit failure, neither a wrong reply nor a lost request.
    pub bridge_errors: u64,
    pub errors: u64,
    pub messages_received: u64,
    pub in_order: Option<bool>,
    pub first_problem: Option<String>,
    pub elapsed_ms: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl Report {
    /// Everything was correct: every failure path records a problem.
    pub fn success(&self) -> bool {
        self.first_problem.is_none()
    }

    /// A run that could not start (bad settings).
    pub fn refused(pattern: Pattern, problem: String) -> Report {
        let tally = Tally {
            errors: 1,
            first_problem: Some(problem),
            ..Tally::default()
        };
        tally.into_report(pattern, 0, Duration::ZERO)
    }
}

#[derive(Debug, Default)]
struct Tally {
    requests_sent: u64,
    replies_ok: u64,
    replies_wrong: u64,
    bridge_errors: u64,
    errors: u64,
    messages_received: u64,
    in_order: Option<bool>,
    first_problem: Option<String>,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn problem(&mut self, problem: String) {
        tracing::warn!(%problem);
        if self.first_problem.is_none() {
            self.first_problem = Some(problem);
        }
    }

    fn error(&mut self, problem: String) {
        self.errors += 1;
        self.problem(problem);
    }

    fn wrong(&mut self, problem: String) {
        self.replies_wrong += 1;
        self.problem(problem);
    }

    fn into_report(mut self, pattern: Pattern, clients: usize, elapsed: Duration) -> Report {
        self.latencies_us.sort_unstable();
        Report {
            pattern: pattern.name(),
            clients,
            requests_sent: self.requests_sent,
            replies_ok: self.replies_ok,
            replies_wrong: self.replies_wrong,
            bridge_errors: self.bridge_errors,
            errors: self.errors,
            messages_received: self.messages_received,
            in_order: self.in_order,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            p50_us: percentile(&self.latencies_us, 50),
            p99_us: percentile(&self.latencies_us, 99),
            first_problem: self.first_problem,
        }
    }
}

/// Shared by the client tasks; never held across an await.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Tally>>);

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn take(&self) -> Tally {
        self.with(std::mem::take)
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Runs the pattern to its end, or until `shutdown` resolves (the
/// report then says it was interrupted).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = &'static str>,
) -> Report {
    let config = Arc::new(config);
    let tally = Shared::default();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let clients = match config.pattern {
        Pattern::Req | Pattern::Dealer => {
            for client in 0..config.clients {
                let (config, tally) = (config.clone(), tally.clone());
                match config.pattern {
                    Pattern::Dealer => tasks.spawn(dealer_client(config, client, tally)),
                    _ => tasks.spawn(req_client(config, client, tally)),
                };
            }
            config.clients
        }
        Pattern::Sub | Pattern::Pull => {
            tasks.spawn(stream_client(config.clone(), tally.clone()));
            1
        }
    };
    let all_done = async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tally.with(|t| t.error(format!("a client task failed: {e}")));
            }
        }
    };
    tokio::select! {
        () = all_done => {}
        signal = shutdown => tally.with(|t| t.problem(format!("interrupted by {signal}"))),
    }
    // Dropping the set stops whatever still runs.
    drop(tasks);
    let elapsed = started.elapsed();
    let mut tally = tally.take();
    if !matches!(config.pattern, Pattern::Sub | Pattern::Pull) {
        let expected = (config.clients as u64).saturating_mul(config.requests);
        if tally.replies_ok != expected {
            tally.problem(format!(
                "{} of {expected} requests answered correctly",
                tally.replies_ok
            ));
        }
    }
    tally.into_report(config.pattern, clients, elapsed)
}

fn options(limit: Duration) -> SocketOptions {
    let mut options = SocketOptions::default();
    options.connect_timeout(limit);
    options
}

/// A socket connected to every endpoint (the crate's `connect` waits for
/// the peer's handshake, retrying while the port is refused).
async fn connect<S: Socket>(endpoints: &[String], limit: Duration) -> Result<S, String> {
    let mut socket = S::with_options(options(limit));
    for endpoint in endpoints {
        match timeout(limit, socket.connect(endpoint)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("cannot connect to {endpoint}: {e}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to {endpoint} within {} ms",
                    limit.as_millis()
                ))
            }
        }
    }
    Ok(socket)
}

/// One REQ round trip; `Err((sent, why))`.
async fn exchange(
    socket: &mut ReqSocket,
    payload: &[u8],
    limit: Duration,
) -> Result<ZmqMessage, (bool, String)> {
    let ms = limit.as_millis();
    match timeout(limit, socket.send(ZmqMessage::from(payload.to_vec()))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err((false, format!("send failed: {e}"))),
        Err(_) => return Err((false, format!("not sent within {ms} ms"))),
    }
    match timeout(limit, socket.recv()).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err((true, format!("receive failed: {e}"))),
        Err(_) => Err((true, format!("no reply within {ms} ms"))),
    }
}

async fn req_client(config: Arc<Config>, client: usize, tally: Shared) {
    let limit = config.timeout;
    let mut socket = match connect::<ReqSocket>(&config.endpoints, limit).await {
        Ok(socket) => socket,
        Err(e) => return tally.with(|t| t.error(format!("client {client}: {e}"))),
    };
    for seq in 0..config.requests {
        let payload = request_payload(client, seq, config.size);
        let started = Instant::now();
        match exchange(&mut socket, &payload, limit).await {
            Ok(reply) => {
                let latency = micros(started.elapsed());
                let frames = reply.into_vec();
                if let [body] = frames.as_slice() {
                    if body.starts_with(BRIDGE_ERROR_PREFIX.as_bytes()) {
                        tally.with(|t| {
                            t.requests_sent += 1;
                            t.messages_received += 1;
                            t.bridge_errors += 1;
                            t.problem(format!(
                                "client {client} request {seq}: {}",
                                String::from_utf8_lossy(body)
                            ));
                        });
                        pause(config.interval).await;
                        continue;
                    }
                }
                let checked = match frames.as_slice() {
                    [body] => check_echo(body, client, config.size).and_then(|got| {
                        if got == seq {
                            Ok(())
                        } else {
                            Err(format!("the reply to request {got} came for request {seq}"))
                        }
                    }),
                    _ => Err(format!(
                        "the reply is not a one-frame echo: {}",
                        describe_frames(&frames)
                    )),
                };
                tally.with(|t| {
                    t.requests_sent += 1;
                    t.messages_received += 1;
                    match checked {
                        Ok(()) => {
                            t.replies_ok += 1;
                            t.latencies_us.push(latency);
                        }
                        Err(why) => t.wrong(format!("client {client} request {seq}: {why}")),
                    }
                });
                pause(config.interval).await;
            }
            Err((sent, why)) => {
                tally.with(|t| {
                    t.requests_sent += u64::from(sent);
                    t.error(format!("client {client} request {seq}: {why}"));
                });
                // The REQ is stuck now; a late reply goes away with it.
                socket = match connect::<ReqSocket>(&config.endpoints, limit).await {
                    Ok(socket) => socket,
                    Err(e) => {
                        return tally.with(|t| {
                            t.error(format!(
                                "client {client}: giving up after request {seq}: {e}"
                            ))
                        })
                    }
                };
            }
        }
    }
}

async fn pause(interval: Duration) {
    if !interval.is_zero() {
        tokio::time::sleep(interval).await;
    }
}

/// A DEALER request as a REQ would send it (empty delimiter, then the
/// payload), so REP services answer it too.
fn dealer_request(client: usize, seq: u64, size: usize) -> ZmqMessage {
    let mut message = ZmqMessage::from(Vec::new());
    message.push_back(request_payload(client, seq, size).into());
    message
}

async fn dealer_client(config: Arc<Config>, client: usize, tally: Shared) {
    let limit = config.timeout;
    let ms = limit.as_millis();
    let mut socket = match connect::<DealerSocket>(&config.endpoints, limit).await {
        Ok(socket) => socket,
        Err(e) => return tally.with(|t| t.error(format!("client {client}: {e}"))),
    };
    let mut next: u64 = 0;
    // Requests in flight by sequence number, with their send times; one
    // TCP stream keeps order, so the first is also the oldest.
    let mut in_flight: BTreeMap<u64, Instant> = BTreeMap::new();
    loop {
        // (what went wrong, requests lost besides those in flight)
        let mut broken: Option<(String, u64)> = None;
        while in_flight.len() < config.window && next < config.requests {
            let seq = next;
            next += 1;
            let message = dealer_request(client, seq, config.size);
            match timeout(limit, socket.send(message)).await {
                Ok(Ok(())) => {
                    in_flight.insert(seq, Instant::now());
                    tally.with(|t| t.requests_sent += 1);
                }
                Ok(Err(e)) => broken = Some((format!("request {seq}: send failed: {e}"), 1)),
                Err(_) => broken = Some((format!("request {seq}: not sent within {ms} ms"), 1)),
            }
            if broken.is_some() {
                break;
            }
        }
        if broken.is_none() {
            let Some((&oldest, &sent_at)) = in_flight.first_key_value() else {
                break; // every request sent and answered
            };
            match timeout_at(sent_at + limit, socket.recv()).await {
                Ok(Ok(reply)) => {
                    let received = Instant::now();
                    let frames = reply.into_vec();
                    // A REP answers with the delimiter, the ROUTER mode
                    // echoes it; a bare payload is accepted too.
                    let body = match frames.as_slice() {
                        [empty, body] if empty.is_empty() => Some(body),
                        [body] => Some(body),
                        _ => None,
                    };
                    // A reply whose tag names a request in flight answers
                    // it, right or wrong: each is answered at most once.
                    let checked = match body {
                        Some(body) => check_tag(body, client).and_then(|seq| {
                            let sent_at = match in_flight.remove(&seq) {
                                Some(sent_at) => sent_at,
                                None if seq < next => {
                                    return Err(format!(
                                        "a second reply to request {seq}, or one after its timeout"
                                    ))
                                }
                                None => {
                                    return Err(format!("a reply to request {seq}, never sent"))
                                }
                            };
                            check_content(body, client, seq, config.size)?;
                            Ok(micros(received - sent_at))
                        }),
                        None => Err(format!(
                            "the reply is not an echo: {}",
                            describe_frames(&frames)
                        )),
                    };
                    tally.with(|t| {
                        t.messages_received += 1;
                        match checked {
                            Ok(latency) => {
                                t.replies_ok += 1;
                                t.latencies_us.push(latency);
                            }
                            Err(why) => t.wrong(format!("client {client}: {why}")),
                        }
                    });
                    continue;
                }
                Ok(Err(e)) => broken = Some((format!("receive failed: {e}"), 0)),
                Err(_) => {
                    broken = Some((format!("no reply to request {oldest} within {ms} ms"), 0));
                }
            }
        }
        let Some((why, lost)) = broken else {
            continue;
        };
        let lost = lost + in_flight.len() as u64;
        in_flight.clear();
        tally.with(|t| {
            t.errors += lost;
            t.problem(format!(
                "client {client}: {why} ({lost} request(s) lost with the socket)"
            ));
        });
        if next >= config.requests {
            break;
        }
        socket = match connect::<DealerSocket>(&config.endpoints, limit).await {
            Ok(socket) => socket,
            Err(e) => {
                return tally.with(|t| {
                    t.error(format!(
                        "client {client}: giving up after request {}: {e}",
                        next - 1
                    ))
                })
            }
        };
    }
}

/// The sub and pull patterns: one socket receiving the pub or push
/// mode's numbered messages.
async fn stream_client(config: Arc<Config>, tally: Shared) {
    let limit = config.timeout;
    let deadline = Instant::now() + limit;
    if config.pattern == Pattern::Pull {
        match connect::<PullSocket>(&config.endpoints, limit).await {
            Ok(socket) => receive_numbered(socket, &config, deadline, &tally).await,
            Err(e) => tally.with(|t| t.error(e)),
        }
        return;
    }
    let mut socket = match connect::<SubSocket>(&config.endpoints, limit).await {
        Ok(socket) => socket,
        Err(e) => return tally.with(|t| t.error(e)),
    };
    for topic in &config.topics {
        if let Err(e) = socket.subscribe(topic).await {
            return tally.with(|t| t.error(format!("cannot subscribe to '{topic}': {e}")));
        }
    }
    receive_numbered(socket, &config, deadline, &tally).await;
}

/// Receives `[topic, "<name> <seq>"]` messages until `count` arrived on
/// every topic (or the deadline), checking the order per sender and topic.
async fn receive_numbered<S: SocketRecv>(
    mut socket: S,
    config: &Config,
    deadline: Instant,
    tally: &Shared,
) {
    let limit = config.timeout;
    let mut check = OrderCheck::default();
    // Kept current, so that a run stopped by a signal reports it too.
    tally.with(|t| t.in_order = Some(true));
    let mut per_topic: HashMap<&str, u64> = config.topics.iter().map(|t| (t.as_str(), 0)).collect();
    loop {
        if config.count > 0 && per_topic.values().all(|&n| n >= config.count) {
            break;
        }
        let message = match timeout_at(deadline, socket.recv()).await {
            Err(_) => break,
            Ok(Ok(message)) => message,
            Ok(Err(e)) => {
                tally.with(|t| t.error(format!("receive failed: {e}")));
                // The socket reconnects by itself; no busy loop meanwhile.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let frames = message.into_vec();
        tally.with(|t| {
            t.messages_received += 1;
            let published = match parse_published(&frames) {
                Ok(published) => published,
                Err(why) => return t.error(why),
            };
            // A subscription is a prefix: "events" also brings "events2".
            let Some(seen) = per_topic.get_mut(published.topic.as_str()) else {
                return;
            };
            *seen += 1;
            if let Err(why) = check.observe(&published) {
                t.in_order = Some(false);
                t.problem(why);
            }
        });
    }
    tally.with(|t| {
        t.in_order = Some(check.in_order());
        for topic in &config.topics {
            let seen = per_topic.get(topic.as_str()).copied().unwrap_or(0);
            if config.count > 0 && seen < config.count {
                t.error(format!(
                    "timed out after {} ms: topic '{topic}' got {seen} of {} messages",
                    limit.as_millis(),
                    config.count
                ));
            } else if seen == 0 {
                t.error(format!(
                    "no message on topic '{topic}' within {} ms",
                    limit.as_millis()
                ));
            }
        }
    });
}
