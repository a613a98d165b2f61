use super::*;

fn reg(node: &str) -> Registration {
    Registration {
        node: node.into(),
        labels: BTreeMap::new(),
        agent_version: "test".into(),
        address: "10.0.0.2".into(),
        heartbeat_interval: Duration::from_millis(500),
        tunnel_port: 7444,
    }
}

fn start() -> Now {
    Now {
        mono: Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

fn state(r: &Registry, node: &str, now: Now) -> NodeState {
    let n = r
        .snapshot(now)
        .into_iter()
        .find(|n| n.name == node)
        .unwrap();
    NodeState::try_from(n.state).unwrap()
}

#[test]
fn register_makes_ready_and_silence_degrades() {
    let mut r = Registry::new(LivenessPolicy::default());
    let t0 = start();
    let (_, t) = r.register(reg("pc2"), t0);
    assert_eq!(t.unwrap().to, NodeState::Ready);
    assert!(r.tick(t0.after(Duration::from_millis(1400))).is_empty());
    let changes = r.tick(t0.after(Duration::from_millis(1500)));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].to, NodeState::Suspect);
    assert!(
        changes[0].reason.contains("3 missed"),
        "{}",
        changes[0].reason
    );
    let changes = r.tick(t0.after(Duration::from_millis(5000)));
    assert_eq!(changes[0].from, NodeState::Suspect);
    assert_eq!(changes[0].to, NodeState::Down);
    assert_eq!(r.counts(), (0, 0, 1));
}

#[test]
fn heartbeat_brings_node_back_and_history_records_times() {
    let mut r = Registry::new(LivenessPolicy::default());
    let t0 = start();
    let (s, _) = r.register(reg("pc2"), t0);
    r.tick(t0.after(Duration::from_secs(6)));
    let t1 = t0.after(Duration::from_secs(7));
    let back = r.heartbeat("pc2", s, None, None, t1).unwrap().unwrap();
    assert_eq!((back.from, back.to), (NodeState::Down, NodeState::Ready));
    let node = &r.snapshot(t1)[0];
    let history: Vec<i32> = node.history.iter().map(|c| c.to).collect();
    assert_eq!(
        history,
        vec![
            NodeState::Ready as i32,
            NodeState::Down as i32,
            NodeState::Ready as i32
        ]
    );
    assert_eq!(node.state_since_unix_ms, t1.unix_ms);
}

#[test]
fn stale_session_cannot_heartbeat_or_disconnect_new_one() {
    let mut r = Registry::new(LivenessPolicy::default());
    let t0 = start();
    let (old, _) = r.register(reg("pc2"), t0);
    let (new, _) = r.register(reg("pc2"), t0.after(Duration::from_secs(1)));
    assert_eq!(
        r.heartbeat("pc2", old, None, None, t0),
        Err(RegistryError::StaleSession("pc2".into()))
    );
    r.disconnect("pc2", old);
    assert!(r.snapshot(t0)[0].connected);
    r.disconnect("pc2", new);
    assert!(!r.snapshot(t0)[0].connected);
    assert_eq!(r.open_sessions(), 0);
}

#[test]
fn interval_is_clamped_and_counts_use_it() {
    let mut r = Registry::new(LivenessPolicy::default());
    let t0 = start();
    let mut fast = reg("fast");
    fast.heartbeat_interval = Duration::from_millis(1);
    r.register(fast, t0);
    // 3 x 50 ms floor, not 3 x 1 ms.
    assert!(r.tick(t0.after(Duration::from_millis(100))).is_empty());
    assert_eq!(
        state(&r, "fast", t0.after(Duration::from_millis(100))),
        NodeState::Ready
    );
    r.tick(t0.after(Duration::from_millis(150)));
    assert_eq!(state(&r, "fast", t0), NodeState::Suspect);
}

#[test]
fn history_is_bounded() {
    let mut r = Registry::new(LivenessPolicy::default());
    let mut now = start();
    let (s, _) = r.register(reg("pc2"), now);
    for _ in 0..40 {
        now = now.after(Duration::from_secs(10));
        r.tick(now);
        r.heartbeat("pc2", s, None, None, now).unwrap();
    }
    assert_eq!(r.snapshot(now)[0].history.len(), HISTORY_LEN);
}

#[test]
fn tunnel_peers_and_addresses_come_from_registrations() {
    let mut r = Registry::new(LivenessPolicy::default());
    let now = start();
    r.register(reg("pc2"), now);
    let mut other = reg("mainpc");
    other.address = "10.0.0.1:1234".into();
    other.tunnel_port = 0;
    r.register(other, now);
    assert_eq!(
        r.tunnel_peers(),
        vec![("pc2".to_string(), "10.0.0.2:7444".to_string())]
    );
    assert_eq!(r.addresses()["mainpc"], "10.0.0.1");
    assert_eq!(host_ip("not an address"), None);
}

#[test]
fn the_longest_heartbeat_gap_of_a_session_is_kept_and_reset_on_reconnect() {
    let mut r = Registry::new(LivenessPolicy::default());
    let t0 = start();
    let (s, _) = r.register(reg("pc2"), t0);
    // From registration to the first heartbeat is not a gap.
    let mut now = t0.after(Duration::from_millis(900));
    r.heartbeat("pc2", s, None, None, now).unwrap();
    for gap_ms in [500, 740, 510] {
        now = now.after(Duration::from_millis(gap_ms));
        r.heartbeat("pc2", s, None, None, now).unwrap();
    }
    let node = &r.snapshot(now)[0];
    assert_eq!(node.heartbeat_gap_max_us, 740_000);
    assert_eq!(node.session_heartbeats, 4);
    let (_, _) = r.register(reg("pc2"), now);
    let node = &r.snapshot(now)[0];
    assert_eq!((node.heartbeat_gap_max_us, node.session_heartbeats), (0, 0));
}
