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
    BridgeCheck, BridgeEntry, CheckReport, CheckRequest, Directory, PeerCheck, ZmqProbe,
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
            let pattern: Pattern = b.pattern.parse().ok()?;
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
                    in_flight: if b.in_flight == "retry-once" {
                        InFlightPolicy::RetryOnce
                    } else {
                        InFlightPolicy::Error
                    },
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
}

impl BridgeHost {
    /// Binds the tunnel endpoint on `listen` (UDP).
    pub fn bind(
        tls: &MeshTls,
        node: &str,
        listen: SocketAddr,
        endpoint_ip: IpAddr,
        advertise: &str,
    ) -> Result<Arc<BridgeHost>, mesh_bridge::Error> {
        let tunnels = Tunnels::bind(tls, TunnelConfig::new(listen))?;
        let service_ip = advertise
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Ok(Arc::new(BridgeHost {
            node: node.to_string(),
            tunnels,
            service_ip,
            listen_ip: endpoint_ip,
            state: Mutex::new(State::default()),
        }))
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
                } => {
                    let target = ServiceTarget {
                        peer: peer.clone(),
                        service: service.clone(),
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
                b.cause = "port (the bridge endpoint could not start)".into();
                b.error = reason.clone();
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
            out.cause = "config".into();
            return out;
        };
        let peer = PeerAddr {
            node: node.to_string(),
            addr,
        };
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.tunnels.connect(&peer)).await {
            Ok(Ok(_)) => {
                out.ok = true;
                out.rtt_us = self
                    .tunnels
                    .rtt(node)
                    .unwrap_or_else(|| started.elapsed())
                    .as_micros() as u64;
            }
            Ok(Err(e)) => {
                out.cause = cause_of(&e.to_string()).into();
                out.error = e.to_string();
            }
            Err(_) => {
                out.cause = "link".into();
                out.error = format!("no tunnel to {node} at {addr} within {timeout:?}: is its agent running and UDP port {} open?", addr.port());
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
            out.cause = "service not placed".into();
            return out;
        }
        let started = Instant::now();
        let probe = if b.pattern == "reqrep" && !b.probe_request.is_empty() {
            let z = ZmqProbe {
                port: u32::from(port),
                request: b.probe_request.clone(),
                expect: b.probe_expect.clone(),
            };
            tokio::time::timeout(timeout, crate::health::probe::zmq(addr, &z))
                .await
                .map(|o| (o.passed, o.message))
                .unwrap_or_else(|_| (false, format!("no reply within {timeout:?}")))
        } else {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => (true, "connected".to_string()),
                Ok(Err(e)) => (false, format!("connect {addr}: {e}")),
                Err(_) => (
                    false,
                    format!("connect {addr}: no answer within {timeout:?}"),
                ),
            }
        };
        out.rtt_us = started.elapsed().as_micros() as u64;
        out.ok = probe.0;
        if !out.ok {
            out.error = probe.1;
            let tunnel = peers.iter().find(|p| p.node == b.host);
            out.cause = if let Some(t) = tunnel.filter(|t| !t.ok) {
                format!("{} (tunnel to {})", t.cause, b.host)
            } else if out.error.contains("refused") {
                "port (nothing listens on the endpoint)".into()
            } else if !b.healthy {
                "service unhealthy".into()
            } else if out.error.contains(mesh_bridge::ERROR_PREFIX.trim()) {
                "bridge".into()
            } else {
                "service".into()
            };
        }
        out
    }
}

/// `mesh-agent tunnel-check`: opens a tunnel from an ephemeral UDP port
/// to `peer_name` at `peer` with `tls`, and prints one line saying how it
/// went. Returns whether the tunnel opened; errors only when no local
/// endpoint can be bound.
pub async fn tunnel_check(
    tls: &MeshTls,
    peer: SocketAddr,
    peer_name: &str,
    limit: Duration,
) -> Result<bool, mesh_bridge::Error> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    };
    let tunnels = Tunnels::bind(tls, TunnelConfig::new(any))?;
    let target = PeerAddr {
        node: peer_name.to_string(),
        addr: peer,
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, tunnels.connect(&target)).await;
    let ok = match outcome {
        Ok(Ok(_)) => {
            let rtt = tunnels.rtt(peer_name).unwrap_or_else(|| started.elapsed());
            println!(
                "tunnel to {peer_name} at {peer}: ok (as {}), round trip {} us",
                tls.identity(),
                rtt.as_micros()
            );
            true
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            println!(
                "tunnel to {peer_name} at {peer}: FAILED ({}): {text}",
                cause_of(&text)
            );
            false
        }
        Err(_) => {
            println!(
                "tunnel to {peer_name} at {peer}: FAILED (link): no answer within {limit:?}; is \
                 its agent running and UDP port {} open?",
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
    }
}

/// A short cause for a tunnel failure's text.
pub fn cause_of(error: &str) -> &'static str {
    let e = error.to_lowercase();
    if e.contains("certificate")
        || e.contains("identity")
        || e.contains("expected") && e.contains("peer is")
    {
        "certificate"
    } else if e.contains("no answer")
        || e.contains("unreachable")
        || e.contains("timed out")
        || e.contains("is down")
    {
        "link"
    } else {
        "tunnel"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::TunnelPeer;

    fn directory() -> Directory {
        let entry = |service: &str, pattern: &str, port: u32, host: &str| BridgeEntry {
            service: service.into(),
            pattern: pattern.into(),
            port,
            target_port: 5555,
            host: host.into(),
            healthy: true,
            in_flight: "retry-once".into(),
            env: String::new(),
            probe_request: "health".into(),
            probe_expect: "ok".into(),
        };
        Directory {
            generation: 3,
            bridges: vec![
                entry("memory-orchestrator", "reqrep", 7140, "pc2"),
                entry("registry", "reqrep", 7200, "mainpc"),
                entry("events", "pubsub", 7300, ""),
                entry("raw", "tcp", 7400, "pc2"),
                entry("weird", "nonsense", 7500, "pc2"),
            ],
            peers: vec![TunnelPeer {
                node: "pc2".into(),
                address: "10.99.0.2:7444".into(),
            }],
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
    fn causes_are_named() {
        assert_eq!(
            cause_of("tunnel to agent 'pc2' at 1.2.3.4:7444: the peer's certificate was rejected"),
            "certificate"
        );
        assert_eq!(
            cause_of("no answer within 5000ms: is the agent running"),
            "link"
        );
        assert_eq!(cause_of("something else"), "tunnel");
    }
}
