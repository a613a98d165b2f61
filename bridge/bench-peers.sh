#!/usr/bin/env bash
# ZeroMQ REQ/REP between two "PCs" (network namespaces on a veth LAN), every encrypted way a
# user could carry it, side by side in one run, all measured with the same pyzmq client
# (bridge/bench_peers.py) against plaintext direct ZeroMQ:
#
#   direct        plaintext REQ/DEALER from A to bench-bridge's echo REP/ROUTER on B's address
#   direct-pyzmq  plaintext, to a pyzmq echo on B (the reference for curve)
#   curve         libzmq CURVE, A -> a CURVE pyzmq echo on B
#   stunnel       A loopback -> stunnel client -> TLS 1.3 -> stunnel server on B -> B's echo
#   ssh           ssh -N -L from A to an sshd in B (aes128-gcm) -> B's echo on B's loopback
#   wireguard     wireguard-go in A and B (10.79.0.0/24 over the LAN) -> B's echo
#   bridge...     bench-bridge --role endpoint in A -> mesh tunnel -> bench-bridge server in B
#                 (the echo it exports is the one "direct" measures). More variants:
#                 BRIDGE_VARIANTS="bridge quic" BRIDGE_ARGS_quic="--transport quic"
#                 (BRIDGE_ARGS: extra arguments for every variant's endpoint process).
#
# Usage: bridge/bench-peers.sh [--rounds N]     (root; BENCH_BIN: dir with bench-bridge and
# meshctl, default target/release; BENCH_OUT: file to copy the raw JSON results to; PYTHON).
# Rounds interleave the paths (round 1: every path, round 2: every path, ...); the table
# shows medians and min-max. Everything it creates is removed on exit.
set -euo pipefail

ROUNDS=3
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=${2:?--rounds N}; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (usage: $0 [--rounds N])" >&2; exit 2 ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds wants a positive number, not '$ROUNDS'" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BENCH_BIN:-$ROOT/target/release}
CLIENT_PY=$ROOT/bridge/bench_peers.py
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, sshd, TUN devices)" >&2; exit 1; }
if [ ! -x "$BIN/bench-bridge" ] || [ ! -x "$BIN/meshctl" ]; then
  echo "no bench-bridge/meshctl in $BIN: cargo build --release --bin bench-bridge --bin meshctl, or set BENCH_BIN" >&2
  exit 1
fi
[ -f "$CLIENT_PY" ] || { echo "missing $CLIENT_PY" >&2; exit 1; }

# --- what the paths need ------------------------------------------------------------------
missing=()
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=(stunnel4)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v wireguard-go >/dev/null || missing+=(wireguard-go)
command -v wg >/dev/null || missing+=(wireguard-tools)
command -v ip >/dev/null && command -v ss >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..." >&2
  # Keep the package scripts from starting a system sshd (or anything else).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    echo "warning: apt-get install ${missing[*]} failed; the paths needing them will be reported unavailable" >&2
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)

PY=${PYTHON:-python3}
if ! "$PY" -c 'import zmq' 2>/dev/null; then
  echo "installing pyzmq ..." >&2
  "$PY" -m pip install -q pyzmq 2>/dev/null || "$PY" -m pip install -q --break-system-packages pyzmq ||
    { echo "cannot install pyzmq for $PY" >&2; exit 1; }
fi
PY=$("$PY" -c 'import sys; print(sys.executable)') # no pyenv shim between us and python

# --- namespaces -----------------------------------------------------------------------------
P="mbp$$"
LAN="$P-lan" A="$P-a" B="$P-b"
A_IP=10.77.0.1 B_IP=10.77.0.2
WG_A_IP=10.79.0.1 WG_B_IP=10.79.0.2
WGA="wg$$a" WGB="wg$$b" # wireguard-go's UAPI sockets live in the shared /var/run/wireguard
WORK=$(mktemp -d -t mesh-bench-peers.XXXXXX)
LOGS=$WORK/logs
RESULTS=$WORK/results.jsonl
mkdir -p "$LOGS"
: >"$RESULTS"
pids=()
made_run_sshd=0

cleanup() {
  set +e
  local i pid ns left
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -INT "${pids[i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for ns in "$A" "$B" "$LAN"; do
    # Whatever is left in our own namespaces (e.g. an sshd session child) is ours.
    left=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$left" ] && kill -KILL $left 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -f "/var/run/wireguard/$WGA.sock" "/var/run/wireguard/$WGB.sock"
  [ "$made_run_sshd" = 1 ] && rmdir /run/sshd 2>/dev/null
  if [ -n "${BENCH_OUT:-}" ] && [ -s "$RESULTS" ]; then
    cp "$RESULTS" "$BENCH_OUT" && echo "raw results copied to $BENCH_OUT" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$LAN"
ip -n "$LAN" link set lo up
ip -n "$LAN" link add br0 type bridge
ip -n "$LAN" link set br0 up
i=0
for ns in "$A" "$B"; do
  i=$((i + 1))
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 mtu 1500 type veth peer name "h$i" mtu 1500 netns "$LAN"
  ip -n "$LAN" link set "h$i" master br0
  ip -n "$LAN" link set "h$i" up
  ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# --- helpers --------------------------------------------------------------------------------
REASON=""
LASTPID=""
# start NAME NS CMD...: run CMD in NS in the background, output to $LOGS/NAME.log.
start() {
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" >"$LOGS/$name.log" 2>&1 &
  LASTPID=$!
  pids+=("$LASTPID")
}
# wait_for WHAT SECONDS PID CMD...: poll CMD until it succeeds; fail if PID exits or time is up.
wait_for() {
  local what=$1 secs=$2 pid=$3
  shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      REASON="$what exited"
      return 1
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      REASON="$what not ready after ${secs}s"
      return 1
    fi
    sleep 0.1
  done
}
# listening NS ADDR:PORT: a TCP socket listens there.
listening() { ip netns exec "$1" ss -ltnH | awk '{print $4}' | grep -qxF "$2"; }
logged() { grep -q "$2" "$LOGS/$1.log"; }
# with_log NAME: append the last lines of NAME's log to REASON.
with_log() {
  local tail
  tail=$(tail -n 3 "$LOGS/$1.log" 2>/dev/null | tr -s '\n\t' '  ' | cut -c1-300)
  [ -n "$tail" ] && REASON="$REASON ($1.log: $tail)"
  return 1
}

# --- the services on B ----------------------------------------------------------------------
CERTS=$WORK/certs
"$BIN/meshctl" certs init --dir "$CERTS" --mesh bench >/dev/null
for node in mainpc pc2; do
  "$BIN/meshctl" certs issue --dir "$CERTS" --role agent --name "$node" >/dev/null
done

# bench-bridge's echo REP/ROUTER (on every address of B, so loopback forwards and the
# wireguard address reach them too) and the tunnel endpoint exporting them.
start bridge-server "$B" "$BIN/bench-bridge" --role server --certs-dir "$CERTS" --node pc2 \
  --tunnel-listen "$B_IP:7500" --rep-bind "tcp://0.0.0.0:7501" \
  --router-bind "tcp://0.0.0.0:7502" --quic-echo "$B_IP:7503"
wait_for "bench-bridge server in B" 30 "$LASTPID" logged bridge-server '^serving' || {
  with_log bridge-server
  echo "fatal: $REASON" >&2
  exit 1
}

declare -A UNAVAILABLE=() EP_REP=() EP_ROUTER=() REF=() CURVE_KEY=()
PATHS=()
add_path() { # NAME REP ROUTER REFERENCE
  PATHS+=("$1")
  EP_REP[$1]=$2 EP_ROUTER[$1]=$3 REF[$1]=$4
}

add_path direct "tcp://$B_IP:7501" "tcp://$B_IP:7502" direct
add_path direct-pyzmq "tcp://$B_IP:7511" "tcp://$B_IP:7512" direct-pyzmq
add_path curve "tcp://$B_IP:7521" "tcp://$B_IP:7522" direct-pyzmq
add_path stunnel "tcp://127.0.0.1:7631" "tcp://127.0.0.1:7632" direct
add_path ssh "tcp://127.0.0.1:7641" "tcp://127.0.0.1:7642" direct
add_path wireguard "tcp://$WG_B_IP:7501" "tcp://$WG_B_IP:7502" direct
read -r -a VARIANTS <<<"${BRIDGE_VARIANTS:-bridge}"
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(bridge)
k=0
for v in "${VARIANTS[@]}"; do
  [[ $v =~ ^[A-Za-z0-9_]+$ ]] || { echo "bridge variant names are [A-Za-z0-9_]+, not '$v'" >&2; exit 2; }
  add_path "$v" "tcp://127.0.0.1:$((7601 + 10 * k))" "tcp://127.0.0.1:$((7602 + 10 * k))" direct
  k=$((k + 1))
done

setup_pyzmq_plain() {
  start echo-pyzmq "$B" "$PY" "$CLIENT_PY" serve --rep "tcp://$B_IP:7511" --router "tcp://$B_IP:7512"
  wait_for "pyzmq echo in B" 20 "$LASTPID" logged echo-pyzmq '^serving' || with_log echo-pyzmq
}

setup_curve() {
  "$PY" "$CLIENT_PY" keygen "$WORK/curve-server" || { REASON="CURVE keygen failed"; return 1; }
  "$PY" -c 'import sys, zmq; sys.exit(0 if zmq.has("curve") else 1)' ||
    { REASON="this libzmq has no CURVE"; return 1; }
  CURVE_KEY[curve]=$WORK/curve-server.public
  start echo-curve "$B" "$PY" "$CLIENT_PY" serve --rep "tcp://$B_IP:7521" --router "tcp://$B_IP:7522" \
    --curve-secret-file "$WORK/curve-server.secret"
  wait_for "CURVE pyzmq echo in B" 20 "$LASTPID" logged echo-curve '^serving' || with_log echo-curve
}

setup_stunnel() {
  [ -n "$STUNNEL" ] || { REASON="stunnel4 not installed"; return 1; }
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-pc2 -keyout "$WORK/stunnel.key" -out "$WORK/stunnel.crt" >/dev/null 2>&1 ||
    { REASON="openssl could not make a certificate"; return 1; }
  cat >"$WORK/stunnel-b.conf" <<EOF
foreground = yes
pid =
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[rep]
accept = $B_IP:7531
connect = 127.0.0.1:7501
cert = $WORK/stunnel.crt
key = $WORK/stunnel.key
sslVersionMin = TLSv1.3
[router]
accept = $B_IP:7532
connect = 127.0.0.1:7502
cert = $WORK/stunnel.crt
key = $WORK/stunnel.key
sslVersionMin = TLSv1.3
EOF
  cat >"$WORK/stunnel-a.conf" <<EOF
foreground = yes
pid =
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[rep]
client = yes
accept = 127.0.0.1:7631
connect = $B_IP:7531
verifyPeer = yes
CAfile = $WORK/stunnel.crt
sslVersionMin = TLSv1.3
[router]
client = yes
accept = 127.0.0.1:7632
connect = $B_IP:7532
verifyPeer = yes
CAfile = $WORK/stunnel.crt
sslVersionMin = TLSv1.3
EOF
  start stunnel-b "$B" "$STUNNEL" "$WORK/stunnel-b.conf"
  local pb=$LASTPID
  wait_for "stunnel server in B" 20 "$pb" listening "$B" "$B_IP:7532" || { with_log stunnel-b; return 1; }
  start stunnel-a "$A" "$STUNNEL" "$WORK/stunnel-a.conf"
  wait_for "stunnel client in A" 20 "$LASTPID" listening "$A" 127.0.0.1:7632 || { with_log stunnel-a; return 1; }
}

setup_ssh() {
  [ -x /usr/sbin/sshd ] || { REASON="openssh-server not installed"; return 1; }
  command -v ssh >/dev/null || { REASON="openssh-client not installed"; return 1; }
  if [ ! -d /run/sshd ]; then mkdir -p /run/sshd && chmod 755 /run/sshd && made_run_sshd=1; fi
  {
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh_host_ed25519_key" >/dev/null &&
      ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519" >/dev/null &&
      cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
  } || { REASON="ssh-keygen failed"; return 1; }
  chmod 600 "$WORK/authorized_keys"
  cat >"$WORK/sshd_config" <<EOF
Port 2222
ListenAddress 0.0.0.0
HostKey $WORK/ssh_host_ed25519_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
Ciphers aes128-gcm@openssh.com
LogLevel ERROR
EOF
  start sshd-b "$B" /usr/sbin/sshd -f "$WORK/sshd_config" -D -e
  wait_for "sshd in B" 20 "$LASTPID" listening "$B" 0.0.0.0:2222 || { with_log sshd-b; return 1; }
  start ssh-a "$A" ssh -F /dev/null -N -T -p 2222 -i "$WORK/id_ed25519" \
    -o Ciphers=aes128-gcm@openssh.com -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ExitOnForwardFailure=yes -o LogLevel=ERROR -o ServerAliveInterval=0 \
    -L 127.0.0.1:7641:127.0.0.1:7501 -L 127.0.0.1:7642:127.0.0.1:7502 "root@$B_IP"
  wait_for "ssh -L in A" 20 "$LASTPID" listening "$A" 127.0.0.1:7642 || { with_log ssh-a; with_log sshd-b; return 1; }
}

setup_wireguard() {
  command -v wireguard-go >/dev/null || { REASON="wireguard-go not installed"; return 1; }
  command -v wg >/dev/null || { REASON="wireguard-tools (wg) not installed"; return 1; }
  if [ ! -c /dev/net/tun ]; then
    modprobe tun 2>/dev/null || true
    [ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 666 /dev/net/tun; } 2>/dev/null ||
      { REASON="no /dev/net/tun and mknod failed"; return 1; }
  fi
  (umask 077 && wg genkey >"$WORK/wg-a.key" && wg genkey >"$WORK/wg-b.key") || { REASON="wg genkey failed"; return 1; }
  wg pubkey <"$WORK/wg-a.key" >"$WORK/wg-a.pub" && wg pubkey <"$WORK/wg-b.key" >"$WORK/wg-b.pub"
  local side ns ifc ip peer_pub peer_ip peer_wg
  for side in a b; do
    if [ $side = a ]; then ns=$A ifc=$WGA ip=$WG_A_IP peer_pub=$WORK/wg-b.pub peer_ip=$B_IP peer_wg=$WG_B_IP
    else ns=$B ifc=$WGB ip=$WG_B_IP peer_pub=$WORK/wg-a.pub peer_ip=$A_IP peer_wg=$WG_A_IP; fi
    start "wg-$side" "$ns" env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
      wireguard-go "$ifc"
    wait_for "wireguard-go in $side" 20 "$LASTPID" test -S "/var/run/wireguard/$ifc.sock" ||
      { with_log "wg-$side"; return 1; }
    ip netns exec "$ns" wg set "$ifc" listen-port 51820 private-key "$WORK/wg-$side.key" \
      peer "$(cat "$peer_pub")" endpoint "$peer_ip:51820" allowed-ips "$peer_wg/32" 2>"$LOGS/wg-set-$side.log" ||
      { REASON="wg set $ifc failed"; with_log "wg-set-$side"; return 1; }
    { ip -n "$ns" addr add "$ip/24" dev "$ifc" && ip -n "$ns" link set "$ifc" up; } ||
      { REASON="cannot configure $ifc"; return 1; }
  done
  # The tunnel carries TCP: connect through it to B's sshd port (or the echo, if ssh is off).
  local probe=2222
  listening "$B" 0.0.0.0:2222 || probe=7511
  wait_for "a TCP connection over wireguard to $WG_B_IP:$probe" 15 "" \
    ip netns exec "$A" timeout 3 bash -c "exec 3<>/dev/tcp/$WG_B_IP/$probe" || { with_log wg-a; return 1; }
}

setup_bridge() { # VARIANT INDEX
  local v=$1 k=$2 extra_var="BRIDGE_ARGS_$1" common extra
  read -r -a common <<<"${BRIDGE_ARGS:-}"
  read -r -a extra <<<"${!extra_var:-}"
  start "endpoint-$v" "$A" "$BIN/bench-bridge" --role endpoint --certs-dir "$CERTS" --node mainpc \
    --peer "$B_IP:7500" --peer-name pc2 \
    --bridge-rep "tcp://127.0.0.1:$((7601 + 10 * k))" --bridge-router "tcp://127.0.0.1:$((7602 + 10 * k))" \
    ${common[@]+"${common[@]}"} ${extra[@]+"${extra[@]}"}
  wait_for "bench-bridge endpoint ($v) in A" 30 "$LASTPID" logged "endpoint-$v" '^bridging:' ||
    with_log "endpoint-$v"
}

setup() { # PATH NAME FUNCTION...
  local path=$1
  shift
  REASON=""
  if ! "$@"; then
    UNAVAILABLE[$path]="unavailable: ${REASON:-setup failed}"
    echo "  $path: ${UNAVAILABLE[$path]}" >&2
  fi
}

echo "setting up the paths ..." >&2
setup direct-pyzmq setup_pyzmq_plain
setup curve setup_curve
setup stunnel setup_stunnel
setup ssh setup_ssh
setup wireguard setup_wireguard
k=0
for v in "${VARIANTS[@]}"; do setup "$v" setup_bridge "$v" "$k"; k=$((k + 1)); done

# --- measure ----------------------------------------------------------------------------------
echo "## ZeroMQ between two hosts: plaintext vs encrypted paths (bridge/bench-peers.sh)"
echo
echo "- host: $(nproc) CPUs, kernel $(uname -r), load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- hosts: A $A_IP (pyzmq client), B $B_IP (services), network namespaces on a veth LAN (MTU 1500); $ROUNDS round(s), paths interleaved"
echo "- pyzmq $("$PY" -c 'import zmq; print(zmq.__version__, "libzmq", zmq.zmq_version())'); $(${STUNNEL:-false} -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*' || echo 'stunnel ?'); $(ssh -V 2>&1 | cut -d, -f1); wireguard-go $(wireguard-go --version 2>/dev/null | grep -o 'v[0-9.]*' | head -1 || echo '?')"
echo "- bridge variants: $(for v in "${VARIANTS[@]}"; do x="BRIDGE_ARGS_$v"; printf '%s [%s] ' "$v" "${BRIDGE_ARGS:-}${BRIDGE_ARGS:+ }${!x:-}"; done)"
echo

for ((r = 1; r <= ROUNDS; r++)); do
  for p in "${PATHS[@]}"; do
    if [ -n "${UNAVAILABLE[$p]:-}" ]; then
      "$PY" "$CLIENT_PY" fail --label "$p" --round "$r" --error "${UNAVAILABLE[$p]}" >>"$RESULTS"
      continue
    fi
    args=(client --label "$p" --round "$r" --reference "${REF[$p]}" --rep "${EP_REP[$p]}" --router "${EP_ROUTER[$p]}")
    [ -n "${CURVE_KEY[$p]:-}" ] && args+=(--curve-serverkey-file "${CURVE_KEY[$p]}")
    t0=$SECONDS
    set +e
    out=$(ip netns exec "$A" timeout 300 "$PY" "$CLIENT_PY" "${args[@]}" 2>>"$LOGS/client.log")
    rc=$?
    set -e
    line=$(printf '%s\n' "$out" | grep '^{"path"' | tail -n 1 || true)
    if [ -z "$line" ]; then
      why="client exited $rc without a result"
      [ "$rc" = 124 ] && why="client timed out after 300 s"
      line=$("$PY" "$CLIENT_PY" fail --label "$p" --round "$r" \
        --error "$why: $(tail -n 2 "$LOGS/client.log" | tr -s '\n' ' ' | cut -c1-200)")
    fi
    printf '%s\n' "$line" >>"$RESULTS"
    status=ok
    [ "$rc" = 0 ] || status="failed: $(printf '%s' "$line" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("error","?"))')"
    printf 'round %d/%d  %-13s %s (%ds)\n' "$r" "$ROUNDS" "$p" "$status" $((SECONDS - t0)) >&2
  done
done

refs=()
for p in "${PATHS[@]}"; do refs+=(--ref "$p=${REF[$p]}"); done
"$PY" "$CLIENT_PY" summarize "$RESULTS" "${refs[@]}"
echo
echo "- echo services: direct, stunnel, ssh, wireguard and the bridge reach bench-bridge's own echo REP/ROUTER (Rust zeromq crate) in B, so they compare with \"direct\"; curve needs libzmq, so it and direct-pyzmq reach a pyzmq echo in B and curve compares with \"direct-pyzmq\""
echo "- load at end $(cut -d' ' -f1-3 /proc/loadavg); raw per-round JSON: $RESULTS${BENCH_OUT:+ (copied to $BENCH_OUT)}"
