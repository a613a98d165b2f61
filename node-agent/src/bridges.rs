//! This host's side of the bridges: the QUIC tunnel endpoint, the bridged
//! services this host runs (exported to other agents), and a stable local
//! endpoint for every bridged service that runs elsewhere, following the
//! coordinator's directory. Also the connectivity checks of `meshctl check`.
//!
//! On the service's own host the endpoint is the service's published port
//! itself (no tunnel); elsewhere the agent listens on that same port and
//! tunnels to the service's agent. Containers get `tcp://HOST_IP:PORT` in
//! their environment, the same port on every host.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bridge::{
    Bridge, BridgeSpec, Export, InFlightPolicy, Pattern, PeerAddr, ServiceTarget, Target,
    TunnelConfig, Tunnels,
};
use mesh_certs::MeshTls;
use mesh_proto::v1::{
    BridgeCheck, BridgeEntry, BridgePattern, CheckCause, CheckReport, CheckRequest, Directory,
    PeerCheck,
};
use tokio::sync::Mutex;

/// Where a bridged service is served from, as this host sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// It runs here: export it to other agents at `endpoint`.
    Local { endpoint: String },
    /// It runs on `peer`: listen on `local` and tunnel there.
    Remote {
        local: String,
        peer: PeerAddr,
        in_flight: InFlightPolicy,
        /// The group's failover epoch (0: none).
        epoch: u64,
    },
    /// It runs nowhere now, or its host's tunnel is unknown.
    Nowhere { local: String },
}

fn endpoint_text(pattern: Pattern, ip: IpAddr, port: u16) -> String {
    let addr = SocketAddr::new(ip, port);
    match pattern {
        Pattern::Tcp => addr.to_string(),
        _ => format!("tcp://{addr}"),
    }
}

/// The bridge library's pattern for a directory entry's; none for a
/// pattern this agent does not know (a newer coordinator's).
pub fn pattern_of(kind: BridgePattern) -> Option<Pattern> {
    match kind {
        BridgePattern::Reqrep => Some(Pattern::ReqRep),
        BridgePattern::Pubsub => Some(Pattern::PubSub),
        BridgePattern::Pushpull => Some(Pattern::PushPull),
        BridgePattern::Distribute => Some(Pattern::Distribute),
        BridgePattern::Tcp => Some(Pattern::Tcp),
        BridgePattern::Unspecified => None,
    }
}

fn in_flight_of(policy: mesh_proto::v1::InFlightPolicy) -> InFlightPolicy {
    match policy {
        mesh_proto::v1::InFlightPolicy::RetryOnce => InFlightPolicy::RetryOnce,
        mesh_proto::v1::InFlightPolicy::Error | mesh_proto::v1::InFlightPolicy::Unspecified => {
            InFlightPolicy::Error
        }
    }
}

/// The check cause of a tunnel failure.
fn cause_of(kind: mesh_bridge::FailureKind) -> CheckCause {
    match kind {
        mesh_bridge::FailureKind::Certificate => CheckCause::Certificate,
        mesh_bridge::FailureKind::Link => CheckCause::Link,
        mesh_bridge::FailureKind::Other => CheckCause::Tunnel,
    }
}

/// What this host should do for each bridge of `directory` (pure).
pub fn roles(
    directory: &Directory,
    me: &str,
    service_ip: IpAddr,
    listen_ip: IpAddr,
) -> BTreeMap<String, (Pattern, Role)> {
    let peers: BTreeMap<&str, SocketAddr> = directory
        .peers
        .iter()
        .filter_map(|p| p.address.parse().ok().map(|a| (p.node.as_str(), a)))
        .collect();
    directory
        .bridges
        .iter()
        .filter_map(|b| {
            let pattern = BridgePattern::try_from(b.kind).ok().and_then(pattern_of)?;
            let port = u16::try_from(b.port).ok()?;
            let local = endpoint_text(pattern, listen_ip, port);
            let role = if b.host == me {
                Role::Local {
                    endpoint: endpoint_text(pattern, service_ip, port),
                }
            } else if let Some(addr) = peers.get(b.host.as_str()) {
                Role::Remote {
                    local,
                    peer: PeerAddr {
                        node: b.host.clone(),
                        addr: *addr,
                    },
                    in_flight: in_flight_of(b.in_flight_policy()),
                    epoch: b.epoch,
                }
            } else {
                Role::Nowhere { local }
            };
            Some((b.service.clone(), (pattern, role)))
        })
        .collect()
}

struct Running {
    bridge: Bridge,
    target: Target,
}

#[derive(Default)]
struct State {
    directory: Directory,
    bridges: BTreeMap<String, Running>,
    /// Bridges whose endpoint could not start with the current directory
    /// (typically: the service's old container still holds the port while
    /// it moves away from this host). [`BridgeHost::retry_failed`] tries
    /// them again.
    failed: BTreeMap<String, String>,
}

/// How long a service moving onto this host may wait for the bridge
/// endpoint to give its port back.
const RELEASE_LIMIT: Duration = Duration::from_secs(3);

/// How often endpoints that could not start are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The bridges of this host. Cheap to share.
pub struct BridgeHost {
    node: String,
    tunnels: Tunnels,
    /// Where this host's published ports are reached (the advertise IP).
    service_ip: IpAddr,
    /// Where local bridge endpoints listen.
    listen_ip: IpAddr,
    state: Mutex<State>,
    /// Every peer's tunnel endpoint, from the latest directory (read
    /// without waiting for an apply under way).
    peers: std::sync::Mutex<BTreeMap<String, SocketAddr>>,
}

impl BridgeHost {
    /// Binds the tunnel endpoint on `listen` (UDP, and TCP on the same port for TLS tunnels);
    /// dials peers with `transport`.
    pub fn bind(
        tls: &MeshTls,
        node: &str,
        listen: SocketAddr,
        transport: mesh_bridge::Transport,
        endpoint_ip: IpAddr,
        advertise: &str,
    ) -> Result<Arc<BridgeHost>, mesh_bridge::Error> {
        let mut config = TunnelConfig::new(listen);
        config.transport = transport;
        let tunnels = Tunnels::bind(tls, config)?;
        let service_ip = advertise
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Ok(Arc::new(BridgeHost {
            node: node.to_string(),
            tunnels,
            service_ip,
            listen_ip: endpoint_ip,
            state: Mutex::new(State::default()),
            peers: std::sync::Mutex::default(),
        }))
    }

    /// This host's tunnel endpoint, for other users of its connections
    /// (replicated volumes open channels on them).
    pub fn tunnels(&self) -> Tunnels {
        self.tunnels.clone()
    }

    /// Where `node`'s tunnel endpoint is, as the latest directory says.
    pub fn peer_addr(&self, node: &str) -> Option<SocketAddr> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
    }

    /// The UDP port of the tunnel endpoint.
    pub fn tunnel_port(&self) -> u16 {
        self.tunnels.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Follows a new directory: exports what runs here, starts, moves or
    /// stops the local endpoints of what runs elsewhere.
    ///
    /// Returns once every endpoint of a service that now runs here has
    /// given its port back (or [`RELEASE_LIMIT`] passed), so the caller can
    /// hand the agent's container manager a desired set that publishes
    /// that port. An endpoint that cannot start is tried again by
    /// [`BridgeHost::retry_failed`].
    pub async fn apply(&self, directory: Directory) {
        let mut state = self.state.lock().await;
        if directory.generation != 0 && directory.generation < state.directory.generation {
            return;
        }
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = directory
            .peers
            .iter()
            .filter_map(|p| Some((p.node.clone(), p.address.parse().ok()?)))
            .collect();
        let failed_before = std::mem::take(&mut state.failed);
        let wanted = roles(&directory, &self.node, self.service_ip, self.listen_ip);
        // Exports: exactly the services that run here.
        let old = roles(
            &state.directory,
            &self.node,
            self.service_ip,
            self.listen_ip,
        );
        for (service, (_, role)) in &old {
            if matches!(role, Role::Local { .. })
                && !matches!(wanted.get(service), Some((_, Role::Local { .. })))
            {
                self.tunnels.exports().remove(service);
            }
        }
        for (service, (pattern, role)) in &wanted {
            let span = tracing::info_span!("bridge", node = %self.node, service = %service);
            let _e = span.enter();
            match role {
                Role::Local { endpoint } => {
                    self.tunnels.exports().set(
                        service,
                        Export {
                            pattern: *pattern,
                            endpoint: endpoint.clone(),
                        },
                    );
                    // The service runs here now: its published port is the
                    // endpoint, so a bridge listener must not hold it.
                    if let Some(running) = state.bridges.remove(service) {
                        if running.bridge.close(RELEASE_LIMIT).await {
                            tracing::info!("service runs here now; local bridge endpoint closed");
                        } else {
                            tracing::warn!(
                                "service runs here now, but the bridge endpoint's port was still \
                                 taken {RELEASE_LIMIT:?} after closing it; the container may fail \
                                 to publish it"
                            );
                        }
                    }
                }
                Role::Remote {
                    local,
                    peer,
                    in_flight,
                    epoch,
                } => {
                    let target = ServiceTarget {
                        peer: peer.clone(),
                        service: service.clone(),
                        epoch: *epoch,
                    };
                    if let Some(r) = state.bridges.get(service) {
                        r.target.set(target);
                        continue;
                    }
                    let t = Target::new(target);
                    let spec = BridgeSpec {
                        name: service.clone(),
                        pattern: *pattern,
                        local: local.clone(),
                        in_flight: *in_flight,
                    };
                    drop(_e);
                    match Bridge::start(&self.tunnels, spec, t.subscribe()).await {
                        Ok(bridge) => {
                            tracing::info!(endpoint = %bridge.endpoint(), peer = %peer.node, "bridge endpoint open");
                            state
                                .bridges
                                .insert(service.clone(), Running { bridge, target: t });
                        }
                        Err(e) => {
                            let _e = span.enter();
                            // Said once; the retries every second stay quiet.
                            if failed_before.contains_key(service) {
                                tracing::debug!(error = %e, "bridge endpoint still cannot start");
                            } else {
                                tracing::warn!(error = %e, "bridge endpoint could not start; trying again every {RETRY_EVERY:?}");
                            }
                            state.failed.insert(service.clone(), e.to_string());
                        }
                    }
                }
                Role::Nowhere { .. } => {
                    // Keep an existing endpoint (requests get error replies
                    // until the service is somewhere again).
                }
            }
        }
        let gone: Vec<String> = state
            .bridges
            .keys()
            .filter(|s| !wanted.contains_key(*s))
            .cloned()
            .collect();
        for service in gone {
            if let Some(running) = state.bridges.remove(&service) {
                running.bridge.stop();
            }
            tracing::info!(service = %service, "bridge removed from the directory; endpoint closed");
        }
        state.directory = directory;
    }

    /// Tries again the endpoints that could not start with the current
    /// directory. Returns how many still fail.
    pub async fn retry_failed(&self) -> usize {
        let directory = {
            let state = self.state.lock().await;
            if state.failed.is_empty() {
                return 0;
            }
            state.directory.clone()
        };
        self.apply(directory).await;
        self.state.lock().await.failed.len()
    }

    /// Retries failed endpoints every [`RETRY_EVERY`] until `shutdown`.
    pub fn spawn_retries(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let host = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETRY_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        host.retry_failed().await;
                    }
                }
            }
        });
    }

    /// The endpoints that could not start, with why.
    pub async fn failed(&self) -> BTreeMap<String, String> {
        self.state.lock().await.failed.clone()
    }

    /// Each local bridge endpoint's counters (messages and bytes each way,
    /// in flight, errors, round trips), by service.
    pub async fn counters(&self) -> BTreeMap<String, mesh_bridge::CounterSnapshot> {
        let state = self.state.lock().await;
        state
            .bridges
            .iter()
            .map(|(s, r)| (s.clone(), r.bridge.counters()))
            .collect()
    }

    /// What the heartbeat reports: every local bridge endpoint's counters
    /// and every tunnel this host dials.
    pub async fn stats(
        &self,
    ) -> (
        Vec<mesh_proto::v1::BridgeStat>,
        Vec<mesh_proto::v1::TunnelStat>,
    ) {
        let bridges = self
            .counters()
            .await
            .iter()
            .map(|(service, c)| mesh_proto::v1::BridgeStat {
                service: service.clone(),
                counters: Some(counters_proto(c)),
            })
            .collect();
        let tunnels = self
            .tunnels()
            .stats()
            .into_iter()
            .map(|t| mesh_proto::v1::TunnelStat {
                peer: t.peer,
                rtt_us: t.rtt.map(|d| d.as_micros() as u64),
                reconnects: t.reconnects,
                failures: t.failures,
            })
            .collect();
        (bridges, tunnels)
    }

    /// `meshctl check` from this host: every other agent's tunnel, and a
    /// real probe through every bridge endpoint.
    pub async fn check(&self, request: &CheckRequest) -> CheckReport {
        let timeout = Duration::from_millis(u64::from(if request.timeout_ms == 0 {
            3000
        } else {
            request.timeout_ms
        }));
        let directory = self.state.lock().await.directory.clone();
        let mut peers = Vec::new();
        for p in directory.peers.iter().filter(|p| p.node != self.node) {
            peers.push(self.check_peer(&p.node, &p.address, timeout).await);
        }
        let mut bridges = Vec::new();
        for b in &directory.bridges {
            bridges.push(self.check_bridge(b, &peers, timeout).await);
        }
        let failed = self.failed().await;
        for b in &mut bridges {
            if let Some(reason) = failed.get(&b.service) {
                b.ok = false;
                b.failure = CheckCause::Port as i32;
                b.error = format!("the bridge endpoint could not start: {reason}");
            }
        }
        let counters = self.counters().await;
        for b in &mut bridges {
            if let Some(c) = counters.get(&b.service) {
                b.counters = Some(counters_proto(c));
            }
        }
        CheckReport {
            id: request.id,
            node: self.node.clone(),
            peers,
            bridges,
        }
    }

    async fn check_peer(&self, node: &str, address: &str, timeout: Duration) -> PeerCheck {
        let mut out = PeerCheck {
            node: node.to_string(),
            ..Default::default()
        };
        let Ok(addr) = address.parse::<SocketAddr>() else {
            out.error = format!("tunnel address '{address}' is not IP:PORT");
            out.set_failure(CheckCause::Config);
            return out;
        };
        let peer = PeerAddr {
            node: node.to_string(),
            addr,
        };
        match tokio::time::timeout(timeout, self.tunnels.check(&peer)).await {
            Ok(Ok(rtt)) => {
                out.ok = true;
                out.rtt_us = rtt.as_micros() as u64;
            }
            Ok(Err(e)) => {
                out.set_failure(cause_of(e.kind()));
                out.error = e.to_string();
            }
            Err(_) => {
                out.set_failure(CheckCause::Link);
                out.error = format!(
                    "no tunnel to {node} at {addr} within {timeout:?}: is its agent running and {} port {} open?",
                    self.tunnels.port_protocol(),
                    addr.port()
                );
            }
        }
        out
    }

    async fn check_bridge(
        &self,
        b: &BridgeEntry,
        peers: &[PeerCheck],
        timeout: Duration,
    ) -> BridgeCheck {
        let here = b.host == self.node;
        let port = u16::try_from(b.port).unwrap_or(0);
        let ip = if here {
            self.service_ip
        } else if self.listen_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.listen_ip
        };
        let addr = SocketAddr::new(ip, port);
        let mut out = BridgeCheck {
            service: b.service.clone(),
            endpoint: format!("tcp://{addr}"),
            via: if here { "direct" } else { "tunnel" }.into(),
            host: b.host.clone(),
            ..Default::default()
        };
        if b.host.is_empty() {
            out.error = "the service runs nowhere now".into();
            out.set_failure(CheckCause::NotPlaced);
            return out;
        }
        let started = Instant::now();
        let outcome = if b.kind() == BridgePattern::Reqrep && !b.probe_request.is_empty() {
            probe_reqrep(addr, b, timeout).await
        } else {
            probe_connect(addr, timeout).await
        };
        out.rtt_us = started.elapsed().as_micros() as u64;
        if let Err((cause, error)) = outcome {
            out.error = error;
            let tunnel = peers.iter().find(|p| p.node == b.host).filter(|t| !t.ok);
            let cause = match (tunnel, cause) {
                (Some(t), _) => {
                    out.tunnel_failure = t.failure;
                    CheckCause::Tunnel
                }
                (None, CheckCause::Port) => CheckCause::Port,
                (None, _) if !b.healthy => CheckCause::ServiceUnhealthy,
                (None, cause) => cause,
            };
            out.set_failure(cause);
        } else {
            out.ok = true;
        }
        out
    }
}

/// `mesh-agent tunnel-check`: opens a tunnel from an ephemeral port
/// to `peer_name` at `peer` with `tls`, and prints one line saying how it
/// went. Returns whether the tunnel opened; errors only when no local
/// endpoint can be bound.
pub async fn tunnel_check(
    tls: &MeshTls,
    peer: SocketAddr,
    peer_name: &str,
    limit: Duration,
    transport: mesh_bridge::Transport,
) -> Result<bool, mesh_bridge::Error> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    };
    let mut config = TunnelConfig::new(any);
    config.transport = transport;
    let tunnels = Tunnels::bind(tls, config)?;
    let target = PeerAddr {
        node: peer_name.to_string(),
        addr: peer,
    };
    let outcome = tokio::time::timeout(limit, tunnels.check(&target)).await;
    let ok = match outcome {
        Ok(Ok(rtt)) => {
            println!(
                "tunnel to {peer_name} at {peer}: ok (as {}, {transport}), round trip {} us",
                tls.identity(),
                rtt.as_micros()
            );
            true
        }
        Ok(Err(e)) => {
            println!(
                "tunnel to {peer_name} at {peer}: FAILED ({}): {e}",
                cause_of(e.kind()).label()
            );
            false
        }
        Err(_) => {
            println!(
                "tunnel to {peer_name} at {peer}: FAILED (link): no answer within {limit:?}; is \
                 its agent running and {} port {} open?",
                tunnels.port_protocol(),
                peer.port()
            );
            false
        }
    };
    tunnels.close();
    Ok(ok)
}

fn counters_proto(c: &mesh_bridge::CounterSnapshot) -> mesh_proto::v1::BridgeCounters {
    let us = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64);
    mesh_proto::v1::BridgeCounters {
        msgs_out: c.msgs_out,
        bytes_out: c.bytes_out,
        msgs_in: c.msgs_in,
        bytes_in: c.bytes_in,
        in_flight: c.in_flight,
        errors: c.errors,
        retries: c.retries,
        late_replies: c.late_replies,
        rtt_count: c.rtt_count,
        rtt_mean_us: us(c.rtt_mean),
        rtt_max_us: us(c.rtt_max),
        rtt_bucket_le_us: mesh_bridge::RTT_BUCKETS_US.to_vec(),
        rtt_bucket_counts: c.rtt_buckets.to_vec(),
        rtt_sum_us: c.rtt_sum_us,
    }
}

type ProbeResult = Result<(), (CheckCause, String)>;

/// A plain TCP connect to a bridge endpoint.
async fn probe_connect(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err((
            CheckCause::Port,
            format!("connect {addr}: {e} (nothing listens on the endpoint)"),
        )),
        Ok(Err(e)) => Err((CheckCause::Link, format!("connect {addr}: {e}"))),
        Err(_) => Err((
            CheckCause::Service,
            format!("connect {addr}: no answer within {timeout:?}"),
        )),
    }
}

/// The service's own ZeroMQ health request through a bridge endpoint.
async fn probe_reqrep(addr: SocketAddr, b: &BridgeEntry, timeout: Duration) -> ProbeResult {
    use zeromq::{Socket, SocketRecv, SocketSend};
    // Nothing listening is a port problem, whatever ZeroMQ would say.
    probe_connect(addr, timeout).await?;
    let exchange = async {
        // A fresh socket per probe: zeromq 0.7's REQ never reconnects.
        let mut socket = zeromq::ReqSocket::new();
        socket
            .connect(&format!("tcp://{addr}"))
            .await
            .map_err(|e| (CheckCause::Port, format!("zmq tcp://{addr}: {e}")))?;
        socket
            .send(b.probe_request.clone().into())
            .await
            .map_err(|e| (CheckCause::Service, format!("zmq send: {e}")))?;
        let reply = socket
            .recv()
            .await
            .map_err(|e| (CheckCause::Service, format!("zmq recv: {e}")))?;
        let first = reply.get(0).map(|f| f.to_vec()).unwrap_or_default();
        let text = String::from_utf8_lossy(&first).into_owned();
        if first.starts_with(mesh_bridge::ERROR_PREFIX.as_bytes()) {
            // The far end's bridge reached its host but not the service itself: the service's
            // fault, whatever the bridge's own state.
            let cause = if text.contains("cannot connect to the service")
                || text.contains("closed the connection")
            {
                CheckCause::Service
            } else {
                CheckCause::Bridge
            };
            Err((cause, format!("bridge replied {text:?}")))
        } else if b.probe_expect.is_empty() || text == b.probe_expect {
            Ok(())
        } else {
            Err((
                CheckCause::Service,
                format!("replied {text:?}, expected {:?}", b.probe_expect),
            ))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err((CheckCause::Service, format!("no reply within {timeout:?}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::TunnelPeer;

    fn directory() -> Directory {
        let entry = |service: &str, kind: BridgePattern, port: u32, host: &str| BridgeEntry {
            service: service.into(),
            kind: kind as i32,
            port,
            target_port: 5555,
            host: host.into(),
            healthy: true,
            in_flight_policy: mesh_proto::v1::InFlightPolicy::RetryOnce as i32,
            env: String::new(),
            probe_request: "health".into(),
            probe_expect: "ok".into(),
            epoch: 0,
        };
        Directory {
            generation: 3,
            bridges: vec![
                entry("memory-orchestrator", BridgePattern::Reqrep, 7140, "pc2"),
                entry("registry", BridgePattern::Reqrep, 7200, "mainpc"),
                entry("events", BridgePattern::Pubsub, 7300, ""),
                entry("raw", BridgePattern::Tcp, 7400, "pc2"),
                entry("weird", BridgePattern::Unspecified, 7500, "pc2"),
            ],
            peers: vec![TunnelPeer {
                node: "pc2".into(),
                address: "10.99.0.2:7444".into(),
            }],
            revoked_serials: vec![],
        }
    }

    #[test]
    fn each_bridge_is_local_remote_or_nowhere() {
        let ip: IpAddr = "10.99.0.1".parse().expect("ip");
        let any: IpAddr = "0.0.0.0".parse().expect("ip");
        let r = roles(&directory(), "mainpc", ip, any);
        assert_eq!(
            r["registry"].1,
            Role::Local {
                endpoint: "tcp://10.99.0.1:7200".into()
            }
        );
        assert_eq!(
            r["memory-orchestrator"].1,
            Role::Remote {
                local: "tcp://0.0.0.0:7140".into(),
                peer: PeerAddr {
                    node: "pc2".into(),
                    addr: "10.99.0.2:7444".parse().expect("addr"),
                },
                in_flight: InFlightPolicy::RetryOnce,
                epoch: 0,
            }
        );
        assert_eq!(
            r["events"].1,
            Role::Nowhere {
                local: "tcp://0.0.0.0:7300".into()
            }
        );
        assert!(matches!(&r["raw"].1, Role::Remote { local, .. } if local == "0.0.0.0:7400"));
        assert!(!r.contains_key("weird"), "an unknown pattern is skipped");
    }

    #[test]
    fn every_wire_pattern_maps_to_a_bridge_pattern() {
        for kind in [
            BridgePattern::Reqrep,
            BridgePattern::Pubsub,
            BridgePattern::Pushpull,
            BridgePattern::Distribute,
            BridgePattern::Tcp,
        ] {
            assert!(pattern_of(kind).is_some(), "{kind:?}");
        }
        assert_eq!(pattern_of(BridgePattern::Unspecified), None);
    }

    #[test]
    fn tunnel_failures_keep_their_kind() {
        assert_eq!(
            cause_of(mesh_bridge::FailureKind::Certificate),
            CheckCause::Certificate
        );
        assert_eq!(cause_of(mesh_bridge::FailureKind::Link), CheckCause::Link);
        assert_eq!(
            cause_of(mesh_bridge::FailureKind::Other),
            CheckCause::Tunnel
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_port_problem() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = probe_connect(addr, Duration::from_secs(2))
            .await
            .expect_err("nothing listens");
        assert_eq!(err.0, CheckCause::Port, "{}", err.1);
    }
}
