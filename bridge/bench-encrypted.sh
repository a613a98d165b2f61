#!/usr/bin/env bash
# Encrypted ways to carry ZeroMQ between two PCs, side by side (issue #15 benchmark).
#
# Two hosts as network namespaces on a veth LAN (A 10.76.0.1 runs the client, B 10.76.0.2
# the services), one libzmq (pyzmq) client and one libzmq echo for every path (a ROUTER
# echoing in libzmq's own proxy loop; REQ clients talk to it as to a REP):
#   direct        plaintext A -> B (the reference of every ratio)
#   curve         libzmq CURVE A -> B (no proxy hop)
#   stunnel       A loopback -> stunnel4 (TLS 1.3) -> B stunnel4 -> B loopback
#   ssh           A loopback -> ssh -L (aes128-gcm) -> B sshd -> B loopback
#   wireguard     wireguard-go (userspace) on both hosts, A -> B over the WireGuard subnet
#   bridge-tls    our bridge (REQ/REP bridge, TLS-over-TCP tunnel, the default)
#   bridge-quic   our bridge with the QUIC tunnel
#   bridge-raw    our tunnel as a byte pipe (a TCP bridge carrying the ZeroMQ bytes, like
#                 stunnel: no per-message work, none of the REQ/REP bridge's semantics)
# Rounds interleave the paths; the table gives medians, ratios to direct and the spread.
#
# Run as root: bridge/bench-encrypted.sh [--rounds N] (default 3). It installs what is
# missing (stunnel4, openssh, wireguard-go, wireguard-tools, python3-zmq) and removes
# everything it made on exit. Build first: cargo build --release --bin bench-bridge --bin meshctl
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BENCH_BIN:-$ROOT/target/release}
ROUNDS=3
[ "${1:-}" = --rounds ] && ROUNDS=$2
PATHS=${BENCH_PATHS:-direct curve stunnel ssh wireguard bridge-tls bridge-quic bridge-raw}
[ -x "$BIN/bench-bridge" ] && [ -x "$BIN/meshctl" ] || {
  echo "build first: cargo build --release --bin bench-bridge --bin meshctl" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }

need=()
command -v stunnel4 >/dev/null || need+=(stunnel4)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v wg >/dev/null || need+=(wireguard-tools)
/usr/bin/python3 -c 'import zmq' 2>/dev/null || need+=(python3-zmq)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
PY="/usr/bin/python3 $ROOT/bridge/bench_zmq_peers.py"

P="mbe$$"
LAN="$P-lan" A="$P-a" B="$P-b"
A_IP=10.76.0.1 B_IP=10.76.0.2
WG_A=10.79.0.1 WG_B=10.79.0.2
WORK=$(mktemp -d -t mesh-bench-encrypted.XXXXXX)
pids=()

cleanup() {
  # Everything started in the hosts' namespaces, whoever its parent is.
  for ns in "$A" "$B"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$A" "$B" "$LAN"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_a() { ip netns exec "$A" "$@"; }
in_b() { ip netns exec "$B" "$@"; }
# Waits until a TCP port listens in a namespace.
wait_tcp() {
  local ns=$1 port=$2 what=$3
  for _ in $(seq 100); do
    ip netns exec "$ns" ss -ltnH "sport = :$port" | grep -q . && return 0
    sleep 0.1
  done
  echo "$what did not start (TCP port $port in $ns)" >&2
  exit 1
}

ip netns add "$LAN"
ip -n "$LAN" link set lo up
ip -n "$LAN" link add br0 type bridge
ip -n "$LAN" link set br0 up
i=0
for ns in "$A" "$B"; do
  i=$((i + 1))
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$LAN"
  ip -n "$LAN" link set "h$i" master br0
  ip -n "$LAN" link set "h$i" up
  ip -n "$ns" addr add "10.76.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# --- B: the echo services (plain on every address, CURVE beside them) ---
CURVE_SECRET=$(/usr/bin/python3 -c 'import zmq; print(zmq.curve_keypair()[1].decode())')
CURVE_PUBLIC=$(/usr/bin/python3 -c "import zmq; print(zmq.curve_public(b'$CURVE_SECRET').decode())")
in_b $PY serve --router tcp://0.0.0.0:7522 >/dev/null &
pids+=($!)
in_b $PY serve --router tcp://0.0.0.0:7532 --curve-secret "$CURVE_SECRET" >/dev/null &
pids+=($!)
wait_tcp "$B" 7522 "the echo service"
wait_tcp "$B" 7532 "the CURVE echo service"

# --- our bridge: mesh certificates, B's agent exports the echo, A's bridges at 76xx ---
"$BIN/meshctl" certs init --dir "$WORK/pki" --mesh bench >/dev/null
for node in mainpc pc2; do
  "$BIN/meshctl" certs issue --dir "$WORK/pki" --role agent --name "$node" >/dev/null
done
in_b "$BIN/bench-bridge" --role server --certs-dir "$WORK/pki" --node pc2 \
  --tunnel-listen "$B_IP:7500" --rep-bind "tcp://127.0.0.1:7591" --router-bind "tcp://127.0.0.1:7592" \
  --quic-echo "127.0.0.1:7593" --export-rep "tcp://$B_IP:7522" --export-router "tcp://$B_IP:7522" \
  2>"$WORK/server.log" &
pids+=($!)
for transport in tls quic; do
  if [ $transport = tls ]; then base=7601; else base=7621; fi
  in_a "$BIN/bench-bridge" --role endpoint --certs-dir "$WORK/pki" --node mainpc \
    --peer "$B_IP:7500" --peer-name pc2 --transport $transport \
    --bridge-rep "tcp://127.0.0.1:$base" --bridge-router "tcp://127.0.0.1:$((base + 1))" \
    --bridge-rep-tcp "127.0.0.1:$((base + 10))" --bridge-router-tcp "127.0.0.1:$((base + 11))" \
    2>"$WORK/endpoint-$transport.log" &
  pids+=($!)
  wait_tcp "$A" $((base + 11)) "the $transport bridge endpoint"
done

# --- stunnel4: TLS 1.3, TCP_NODELAY on both sides ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=pc2 \
  -keyout "$WORK/stunnel.key" -out "$WORK/stunnel.crt" 2>/dev/null
cat >"$WORK/stunnel-b.conf" <<EOF
foreground = yes
pid =
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
sslVersionMin = TLSv1.3
[rep]
accept = $B_IP:7541
connect = 127.0.0.1:7522
cert = $WORK/stunnel.crt
key = $WORK/stunnel.key
[router]
accept = $B_IP:7542
connect = 127.0.0.1:7522
cert = $WORK/stunnel.crt
key = $WORK/stunnel.key
EOF
cat >"$WORK/stunnel-a.conf" <<EOF
foreground = yes
pid =
client = yes
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
sslVersionMin = TLSv1.3
[rep]
accept = 127.0.0.1:7641
connect = $B_IP:7541
[router]
accept = 127.0.0.1:7642
connect = $B_IP:7542
EOF
in_b stunnel4 "$WORK/stunnel-b.conf" 2>"$WORK/stunnel-b.log" &
pids+=($!)
in_a stunnel4 "$WORK/stunnel-a.conf" 2>"$WORK/stunnel-a.log" &
pids+=($!)
wait_tcp "$A" 7642 "stunnel on A"

# --- ssh -L to an sshd of its own on B ---
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
cp "$WORK/user_key.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
ListenAddress $B_IP:7550
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
UsePAM no
StrictModes no
PidFile none
AllowTcpForwarding yes
EOF
in_b /usr/sbin/sshd -f "$WORK/sshd_config" -D -e 2>"$WORK/sshd.log" &
pids+=($!)
wait_tcp "$B" 7550 "sshd"
in_a ssh -N -p 7550 -i "$WORK/user_key" -o Ciphers=aes128-gcm@openssh.com \
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
  -L 127.0.0.1:7741:127.0.0.1:7522 -L 127.0.0.1:7742:127.0.0.1:7522 "root@$B_IP" 2>"$WORK/ssh.log" &
pids+=($!)
wait_tcp "$A" 7742 "ssh -L"

# --- wireguard-go on both hosts (interface names unique per run: its UAPI socket is global) ---
wg_ok=1
for side in a b; do
  wg genkey >"$WORK/wg-$side.key"
  wg pubkey <"$WORK/wg-$side.key" >"$WORK/wg-$side.pub"
done
wg_up() {
  local ns=$1 dev=$2 key=$3 addr=$4 peer_pub=$5 peer_ip=$6 peer_wg=$7
  WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go "$dev" >"$WORK/$dev.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do ip -n "$ns" link show "$dev" >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec "$ns" wg set "$dev" private-key "$key" listen-port 51820 \
    peer "$(cat "$peer_pub")" endpoint "$peer_ip:51820" allowed-ips "$peer_wg/32" &&
    ip -n "$ns" addr add "$addr/24" dev "$dev" && ip -n "$ns" link set "$dev" up
}
wg_up "$A" "wa$$" "$WORK/wg-a.key" $WG_A "$WORK/wg-b.pub" $B_IP $WG_B || wg_ok=0
wg_up "$B" "wb$$" "$WORK/wg-b.key" $WG_B "$WORK/wg-a.pub" $A_IP $WG_A || wg_ok=0
[ $wg_ok = 1 ] || echo "wireguard-go could not be set up (see $WORK/wa$$.log); its row fails" >&2

endpoints() {
  case $1 in
    direct) echo "tcp://$B_IP:7522 tcp://$B_IP:7522" ;;
    curve) echo "tcp://$B_IP:7532 tcp://$B_IP:7532" ;;
    stunnel) echo "tcp://127.0.0.1:7641 tcp://127.0.0.1:7642" ;;
    ssh) echo "tcp://127.0.0.1:7741 tcp://127.0.0.1:7742" ;;
    wireguard) echo "tcp://$WG_B:7522 tcp://$WG_B:7522" ;;
    bridge-tls) echo "tcp://127.0.0.1:7601 tcp://127.0.0.1:7602" ;;
    bridge-quic) echo "tcp://127.0.0.1:7621 tcp://127.0.0.1:7622" ;;
    bridge-raw) echo "tcp://127.0.0.1:7611 tcp://127.0.0.1:7612" ;;
  esac
}

echo "hosts: A $A_IP (client), B $B_IP (services) on a veth LAN; $(nproc) CPUs; kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "libzmq $(/usr/bin/python3 -c 'import zmq; print(zmq.zmq_version(), "pyzmq", zmq.pyzmq_version())'); $(stunnel4 -version 2>&1 | head -1 | cut -d' ' -f1-2); $(ssh -V 2>&1 | cut -d, -f1); wireguard-go $(wireguard-go --version 2>&1 | head -1 | awk '{print $NF}')"
RESULTS=$WORK/results.jsonl
for round in $(seq "$ROUNDS"); do
  for path in $PATHS; do
    read -r rep router <<<"$(endpoints "$path")"
    extra=()
    [ "$path" = curve ] && extra=(--curve-server "$CURVE_PUBLIC")
    in_a $PY client --path "$path" --round "$round" --rep "$rep" --router "$router" "${extra[@]}" >>"$RESULTS"
  done
  echo "round $round done; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo
$PY table "$RESULTS"

# The same paths with the Rust client of bench-bridge (the zeromq crate, no CURVE), whose
# pipelined DEALER is not held back by Python per message: 64 B throughput with pyzmq measures
# the client as much as the path.
RUST=$WORK/rust.txt
for round in $(seq "$ROUNDS"); do
  for path in $PATHS; do
    [ "$path" = curve ] && continue
    read -r rep router <<<"$(endpoints "$path")"
    ip netns exec "$A" "$BIN/bench-bridge" --role client --certs-dir "$WORK/pki" --node mainpc \
      --peer "$B_IP:7500" --peer-name pc2 --only direct-throughput \
      --direct-rep "$rep" --direct-router "$router" 2>/dev/null |
      sed -n "s/^DirectThroughput \(.*\): \([0-9]*\) msg\/s (\([0-9.]*\) MiB\/s)/$path \1 \2 \3/p" >>"$RUST" ||
      echo "$path failed" >>"$RUST"
  done
done
echo
echo "Pipelined throughput with the Rust client (bench-bridge, 256 in flight; medians of $ROUNDS rounds):"
echo
$PY rust-table "$RUST"
[ -n "${BENCH_OUT:-}" ] && cp "$RESULTS" "$BENCH_OUT"
exit 0
