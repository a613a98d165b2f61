#!/usr/bin/env bash
# The demo mesh: two simulated PCs, `mainpc` and `pc2`, each in its own
# network namespace on a private virtual LAN (10.99.0.0/24), with the
# coordinator on mainpc and a node agent on each, all over mutual TLS.
#
# It builds the binaries and the demo service image, creates a mesh CA and
# certificates, starts the mesh, shows `meshctl nodes` and `meshctl
# status`, imports a compose file, plans the users' system
# (topology/examples/ai-system.toml) with --explain and a --fail pc2
# what-if, applies it (14 real containers started in dependency order,
# each health-checked over ZeroMQ: core and GPU services on mainpc, the
# memory services on pc2, on replicated volumes with mainpc as standby),
# then cuts pc2 off the LAN: the memory services fail over to mainpc
# within seconds (pc2 fences its own copies), the bridges follow, and pc2
# comes back as the resynced standby.
#
# Run as root (namespaces). DEMO_HOLD=1 keeps the mesh running until Ctrl-C;
# the default is to hold when run from a terminal. Everything it made is
# removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
# Only the binaries the demo runs (the benchmarks and the test harness are not needed).
cargo build --release -p mesh-coordinator -p mesh-node-agent -p meshctl --bins
# The client that writes numbered keys through a bridge and reads them back.
cargo build --release -p mesh-tests --bin volume-writer
scripts/build-demo-image.sh localhost/mesh-demo:latest
BIN="$ROOT/target/release"
DEMO="$ROOT/.demo"
CERTS="$DEMO/certs"
LAN=demo-lan
MAINPC=10.99.0.1
PC2=10.99.0.2
COORD="$MAINPC:7443"
HOLD=${DEMO_HOLD:-$([ -t 0 ] && echo 1 || echo 0)}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The agents' own Podman instances: containers, helpers, mounts.
  for host in mainpc pc2; do
    local state="$DEMO/state/$host/podman"
    [ -f "$state/storage.conf" ] || continue
    CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf" \
      nsenter --net="/run/netns/demo-$host" -- podman rm -a -f -t 0 >/dev/null 2>&1 || true
    # conmon forwards SIGTERM to its container: reap helpers with SIGKILL.
    for pid in $(pgrep -f "$state"); do pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; done
    sleep 0.5
    umount -R "$state/root/overlay" 2>/dev/null || true
    # Replicated volumes: ext4 mounts, their loop devices, the FUSE mounts.
    local vols="$DEMO/state/$host/volumes/"
    for m in $(awk '{print $2}' /proc/self/mounts | grep "^$vols.*/mnt$"); do umount -l "$m" 2>/dev/null || true; done
    for dev in $(losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v d="$vols" 'index($2, d) == 1 {print $1}'); do
      losetup -d "$dev" 2>/dev/null || true
    done
    for m in $(awk '{print $2}' /proc/self/mounts | grep "^$vols.*/fuse$"); do umount -l "$m" 2>/dev/null || true; done
  done
  for ns in demo-mainpc demo-pc2 "$LAN"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
cleanup   # leftovers of an interrupted run

echo "== mesh CA (root + intermediate) and mainpc's certificates in $CERTS; pc2 will join with a token"
rm -rf "$DEMO"; mkdir -p "$DEMO"
"$BIN/meshctl" certs init --dir "$CERTS" --mesh demo --intermediate
"$BIN/meshctl" certs issue --dir "$CERTS" --role coordinator --name coordinator --san "$MAINPC"
"$BIN/meshctl" certs issue --dir "$CERTS" --role admin --name admin
"$BIN/meshctl" certs issue --dir "$CERTS" --role agent --name mainpc
"$BIN/meshctl" certs list --dir "$CERTS"
# pc2 keeps its own directory: nothing is copied to it.
PC2_CERTS="$DEMO/pc2-certs"

echo "== hosts: mainpc ($MAINPC) and pc2 ($PC2) on a virtual LAN"
ip netns add "$LAN"
ip -n "$LAN" link set lo up
ip -n "$LAN" link add br0 type bridge
ip -n "$LAN" link set br0 up
i=0
for host in mainpc pc2; do
  i=$((i + 1))
  ns="demo-$host"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$LAN"
  ip -n "$LAN" link set "h$i" master br0
  ip -n "$LAN" link set "h$i" up
  ip -n "$ns" addr add "10.99.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

in_host() { local host=$1; shift; nsenter --net="/run/netns/demo-$host" -- "$@"; }
# Starts a long-running program inside a host and remembers its pid: the
# subshell execs nsenter, which execs the program, so $! is the program.
spawn_in_host() { # host log program args...
  local host=$1 log=$2; shift 2
  ( exec nsenter --net="/run/netns/demo-$host" -- "$@" >"$log" 2>&1 ) &
  pids+=($!)
}

cat > "$DEMO/meshctl.toml" <<TOML
coordinator = "$COORD"
certs_dir = "$CERTS"
TOML
export MESHCTL_CONFIG="$DEMO/meshctl.toml"

# These machines have no NVIDIA driver, so the demo declares the GPUs our
# users have (they are shown as declared, never as measured; on a host
# with NVML the measured GPUs are reported instead).
cat > "$DEMO/mainpc.toml" <<TOML
node = "mainpc"
coordinator = "$COORD"
advertise_address = "$MAINPC"
state_dir = "$DEMO/state/mainpc"
[podman]
own_service = true
[labels]
role = "mainpc"
gpu = "true"
[tls]
certs_dir = "$CERTS"
[[gpus]]
name = "RTX 4090"
vram_mib = 24576
TOML
cat > "$DEMO/pc2.toml" <<TOML
node = "pc2"
coordinator = "$COORD"
advertise_address = "$PC2"
state_dir = "$DEMO/state/pc2"
[podman]
own_service = true
[labels]
role = "pc2"
gpu = "true"
[tls]
certs_dir = "$PC2_CERTS"
[[gpus]]
name = "RTX 3060"
vram_mib = 12288
TOML

echo "== starting the coordinator and mainpc's agent on mainpc (logs in $DEMO)"
spawn_in_host mainpc "$DEMO/coordinator.log" "$BIN/mesh-coordinator" --listen "0.0.0.0:7443" \
  --certs-dir "$CERTS" --state-dir "$DEMO/coordinator-state" --suspect-after 3 --down-after 10
spawn_in_host mainpc "$DEMO/agent-mainpc.log" "$BIN/mesh-agent" --config "$DEMO/mainpc.toml"

meshctl() { in_host mainpc "$BIN/meshctl" "$@"; }
wait_state() { # node state seconds
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    if meshctl nodes -o json 2>/dev/null | grep -A3 "\"name\": \"$1\"" | grep -q "\"state\": \"$2\""; then
      return 0
    fi
    sleep 0.2
  done
  echo "demo: $1 did not become $2 within $3 s; see $DEMO/*.log" >&2
  return 1
}
wait_state mainpc ready 20

echo "== pc2 joins with a one-use token (its key is made on pc2 and never leaves it)"
TOKEN=$(meshctl token create --role agent --name pc2 --ttl 10m 2>/dev/null)
spawn_in_host pc2 "$DEMO/agent-pc2.log" "$BIN/mesh-agent" --config "$DEMO/pc2.toml" \
  --certs-dir "$PC2_CERTS" join "$COORD" --token "$TOKEN" --name pc2
wait_state pc2 ready 20
grep -m1 "joined mesh" "$DEMO/agent-pc2.log" || true
ls -l "$PC2_CERTS"

# The coordinator serves its dashboard and /metrics on localhost inside
# mainpc's namespace; socat brings them to this machine's localhost.
DASHBOARD_PORT=${DEMO_DASHBOARD_PORT:-9464}
socat "TCP-LISTEN:$DASHBOARD_PORT,bind=127.0.0.1,fork,reuseaddr" \
  "SYSTEM:nsenter --net=/run/netns/demo-mainpc socat STDIO TCP\:127.0.0.1\:9464" \
  2>"$DEMO/dashboard-forward.log" &
pids+=($!)
echo "== dashboard (live, read-only): open http://127.0.0.1:$DASHBOARD_PORT/ in a browser on this machine (metrics: http://127.0.0.1:$DASHBOARD_PORT/metrics; another port: DEMO_DASHBOARD_PORT)"

echo; echo "== meshctl nodes (CERT EXPIRES IN: pc2's certificate lives 24 h and renews itself)"; meshctl nodes
echo; echo "== meshctl certs issued: what the coordinator issued or saw in use"; meshctl certs issued
echo; echo "== meshctl status"; meshctl status

TOPOLOGY="$ROOT/topology/examples/ai-system.toml"
echo; echo "== meshctl import compose: a compose file of the users' kind becomes a topology"
"$BIN/meshctl" import compose "$ROOT/topology/tests/compose/pc2-compose.yml" --out "$DEMO/imported-pc2.toml" --force 2>&1 | tail -4
echo "(written to $DEMO/imported-pc2.toml)"

echo; echo "== meshctl place: where the users' system would go, and why (changes nothing)"
meshctl place "$TOPOLOGY" --explain gpu-services
echo; echo "== what if pc2 died? (meshctl place --fail pc2)"
meshctl place "$TOPOLOGY" --fail pc2

echo; echo "== meshctl place --apply: 14 services start in dependency order, each once what it needs is healthy"
meshctl place "$TOPOLOGY" --apply --timeout 180
echo; echo "== meshctl status"; meshctl status
echo; echo "== meshctl ps"; meshctl ps
echo; echo "== meshctl images: each image's size, who holds it, which groups run it, where it is missing (meshctl images copy IMAGE --from A --to B fills a gap)"; meshctl images
echo; echo "== meshctl check: tunnels between the agents, and a real ZeroMQ probe through every bridge"
deadline=$((SECONDS + 30))
until meshctl check >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then break; fi
  sleep 1
done
meshctl check
echo; echo "== mesh-agent tunnel-check: mainpc's agent certificate opens a tunnel to pc2 (no coordinator involved)"
in_host mainpc "$BIN/mesh-agent" --config "$DEMO/mainpc.toml" tunnel-check --peer "$PC2:7444" --peer-name pc2 || true
echo; echo "== applying the same file again changes nothing"
meshctl place "$TOPOLOGY" --apply | tail -3
echo; echo "== meshctl logs pc2 memory-orchestrator --tail 3"
meshctl logs pc2 memory-orchestrator --tail 3

echo; echo "== meshctl volumes: the memory services' data, replicated pc2 -> mainpc"
wait_in_sync() { # seconds
  local deadline=$((SECONDS + $1))
  until meshctl volumes -o json 2>/dev/null | grep -q '"standing": "in sync"' && \
        ! meshctl volumes -o json 2>/dev/null | grep -q '"standing": "\(resyncing\|alone\|standby silent\)"'; do
    if [ $SECONDS -ge $deadline ]; then echo "demo: the volumes did not get in sync within $1 s" >&2; return 1; fi
    sleep 0.5
  done
}
wait_in_sync 60 || true
meshctl volumes

echo; echo "== a client on mainpc writes numbered keys to the memory orchestrator through its bridge endpoint ($MAINPC:7140), retrying on a timeout"
spawn_in_host mainpc "$DEMO/writer.log" "$BIN/volume-writer" --connect "tcp://$MAINPC:7140" --first 1 --retry --timeout-ms 500
WRITER=${pids[-1]}
acked() { grep -c '^acked' "$DEMO/writer.log" || true; }
longest_pause() { # [from line]
  tail -n +"${1:-1}" "$DEMO/writer.log" | awk '/^acked/ { if (p != "" && $3 - p > m) m = $3 - p; p = $3 } END { print m + 0 }'
}
sleep 2
echo "$(acked) writes acknowledged so far"

echo; echo "== cutting pc2 off the LAN (link down): its memory services fail over to mainpc"
ip -n demo-pc2 link set eth0 down
cut_at=$SECONDS
deadline=$((SECONDS + 30))
until meshctl volumes -o json 2>/dev/null | grep -q '"primary": "mainpc"'; do
  if [ $SECONDS -ge $deadline ]; then echo "demo: no failover within 30 s; see $DEMO/*.log" >&2; break; fi
  sleep 0.2
done
echo "promoted on mainpc $((SECONDS - cut_at)) s after the cut (lease 2 s); pc2's agent fenced its own copies"
wait_state pc2 down 15 && echo "pc2 is down (10 heartbeats missed)"
meshctl volumes
meshctl ps mainpc | grep -E "NAME|memory|session|knowledge" || true
deadline=$((SECONDS + 30))
until meshctl check >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then break; fi
  sleep 1
done
echo "(the bridges now point at mainpc: the same MESH_*_ADDR endpoints answer)"
echo "the client: $(acked) writes acknowledged, longest pause $(longest_pause) ms (the failover)"

echo; echo "== restoring pc2's link: it comes back as the standby and is resynced"
ip -n demo-pc2 link set eth0 up
wait_state pc2 ready 30 && echo "pc2 is ready again"
wait_in_sync 90 || true
meshctl volumes
echo; echo "== pc2 now: its groups without failover ran on while it was cut off (static stability); the memory services stay on mainpc"
meshctl ps pc2

echo; echo "== planned switchover home: meshctl failover memory-system --to pc2 (nothing lost, downtime under a second)"
from=$(wc -l < "$DEMO/writer.log")
meshctl failover memory-system --to pc2 || echo "demo: the switchover did not finish; see meshctl volumes" >&2
sleep 1
echo "the client's longest pause around the switchover: $(longest_pause "$from") ms"
echo "metrics: curl -s http://127.0.0.1:$DASHBOARD_PORT/metrics"
curl -s "http://127.0.0.1:$DASHBOARD_PORT/metrics" | grep -E '^mesh_(failover_epoch|failovers_total|volume_standby_up_to_date)' || true
kill "$WRITER" 2>/dev/null || true
last=$(awk '/^acked/ { k = $2 } END { print k + 0 }' "$DEMO/writer.log")
echo "the client: $last writes acknowledged through the same endpoint across the failover and the switchover; longest pause $(longest_pause) ms"
stride=$(( last > 2000 ? last / 2000 : 1 ))
echo "reading them back (one key in ${stride}) from the memory orchestrator, now on pc2 again:"
in_host mainpc "$BIN/volume-writer" --connect "tcp://$MAINPC:7140" --verify --first 1 --count "$last" --stride "$stride" --timeout-ms 2000 || true
meshctl status | grep -A3 "volumes of memory-system" || true

echo
echo "Demo mesh is up. From mainpc:  nsenter --net=/run/netns/demo-mainpc $BIN/meshctl --config $DEMO/meshctl.toml nodes"
echo "Dashboard: http://127.0.0.1:$DASHBOARD_PORT/"
if [ "$HOLD" = 1 ]; then
  echo "Holding; press Ctrl-C to stop and clean up."
  wait
fi
