#!/usr/bin/env bash
# Bridged vs direct ZeroMQ between two network namespaces (issue #5 benchmark).
#
#   host A (client): bench-bridge --role client: the REQ/DEALER clients and, in the same
#                    process, the client-side bridge endpoints (ROUTERs on 127.0.0.1) and
#                    the tunnel endpoint that dials B.
#   host B (service): bench-bridge --role server: an echo REP, an echo ROUTER and the
#                    tunnel endpoint that exports them (bench-rep, bench-router).
#
# "direct": the client in A connects to the REP/ROUTER in B over the veth LAN.
# "bridged": the client in A -> bridge endpoint in A -> QUIC over the LAN -> B -> service.
# Both are measured in the same run, between the same namespaces. A and B hang off a Linux
# bridge in a third "LAN" namespace, as in tests/src/netns.rs.
#
# Run as root, from anywhere. Extra arguments go to the client (e.g. --rounds 5).
# Then, unless BENCH_FLOORS=0, the floors the bridge cannot beat, measured the same way: raw
# QUIC between A and B (no ZeroMQ, no bridge) and ZeroMQ REQ/REP on B's own loopback.
# Everything it creates (namespaces, certificates, processes) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BENCH_BIN:-$(pwd)/target/release}
[ -x "$BIN/bench-bridge" ] && [ -x "$BIN/meshctl" ] || {
  echo "build first: cargo build --release --bin bench-bridge --bin meshctl" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }

P="mbb$$"
LAN="$P-lan" A="$P-a" B="$P-b"
A_IP=10.78.0.1 B_IP=10.78.0.2
WORK=$(mktemp -d -t mesh-bench-bridge.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$A" "$B" "$LAN"; do ip netns del "$ns" 2>/dev/null || true; done
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
  ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$LAN"
  ip -n "$LAN" link set "h$i" master br0
  ip -n "$LAN" link set "h$i" up
  ip -n "$ns" addr add "10.78.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

"$BIN/meshctl" certs init --dir "$WORK" --mesh bench >/dev/null
for node in mainpc pc2; do
  "$BIN/meshctl" certs issue --dir "$WORK" --role agent --name "$node" >/dev/null
done

ip netns exec "$B" "$BIN/bench-bridge" --role server --certs-dir "$WORK" --node pc2 \
  --tunnel-listen "$B_IP:7500" --rep-bind "tcp://$B_IP:7501" \
  --router-bind "tcp://$B_IP:7502" --quic-echo "$B_IP:7503" 2>"$WORK/server.log" &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^serving' "$WORK/server.log" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^serving' "$WORK/server.log" || { echo "server did not start" >&2; exit 1; }

echo "hosts: A $A_IP (client), B $B_IP (service) on a veth LAN; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

ip netns exec "$A" "$BIN/bench-bridge" --role client --certs-dir "$WORK" --node mainpc \
  --peer "$B_IP:7500" --peer-name pc2 \
  --direct-rep "tcp://$B_IP:7501" --direct-router "tcp://$B_IP:7502" "$@"

# Datagrams the kernel dropped because a UDP socket's receive buffer was full (QUIC losses).
drops() { ip netns exec "$1" awk '/^Udp:/ { n++; if (n == 1) for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; if (n == 2) print $c }' /proc/net/snmp; }
echo
echo "UDP receive-buffer drops during the run: A $(drops "$A"), B $(drops "$B")"

if [ "${BENCH_FLOORS:-1}" = 1 ]; then
  # What the bridged round trip is made of, measured the same way: raw QUIC between A and B
  # (the tunnel's TLS and transport settings, one stream, an echo, no ZeroMQ) and a ZeroMQ
  # REQ/REP round trip on B's own loopback (the hop from the service-side bridge to the service).
  echo
  ip netns exec "$A" "$BIN/bench-bridge" --role quic-client --certs-dir "$WORK" --node mainpc \
    --peer "$B_IP:7500" --peer-name pc2 "$@"
  echo
  echo "### ZeroMQ REQ/REP round trip on B's loopback (client and service on one host)"
  echo
  ip netns exec "$B" "$BIN/bench-bridge" --role client --certs-dir "$WORK" --node mainpc \
    --peer "$B_IP:7500" --peer-name pc2 --only direct-rtt \
    --direct-rep "tcp://$B_IP:7501" --direct-router "tcp://$B_IP:7502" "$@" | sed 's/^DirectRtt /- /'
  echo
  ip netns exec "$B" "$BIN/bench-bridge" --role tcp-loopback
fi
