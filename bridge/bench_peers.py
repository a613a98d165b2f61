#!/usr/bin/env python3
"""pyzmq side of bridge/bench-peers.sh: the one client every path is measured with.

  client     REQ/REP round trips and DEALER->ROUTER pipelined throughput against --rep and
             --router; prints one JSON line (ok: false and an error when the path is broken).
  serve      echo REP and echo ROUTER (optionally CURVE) until SIGINT/SIGTERM; prints
             "serving ..." on stderr once both are bound.
  keygen     a CURVE key pair into PREFIX.public / PREFIX.secret (Z85 text).
  fail       prints the JSON line of a path that could not be measured (for the script).
  summarize  the markdown table of a results file (one JSON line per path and round).
"""

import argparse
import json
import signal
import statistics
import sys
import threading
import time

SIZES = (64, 64 * 1024)


def _zmq():
    try:
        import zmq
    except ImportError:
        sys.exit("pyzmq is missing: pip install pyzmq")
    return zmq


# ---------------------------------------------------------------------------------------------
# client


def _curve_client(zmq, sock, args):
    if args.curve_serverkey:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = args.curve_serverkey.encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret


def _socket(zmq, ctx, kind, endpoint, args):
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.rcvtimeo = int(args.timeout * 1000)
    sock.sndtimeo = int(args.timeout * 1000)
    _curve_client(zmq, sock, args)
    sock.connect(endpoint)
    return sock


def _percentile(sorted_ns, q):
    i = min(len(sorted_ns) - 1, max(0, int(round(q * (len(sorted_ns) - 1)))))
    return sorted_ns[i] / 1000.0


def round_trips(zmq, ctx, args, size, n):
    req = _socket(zmq, ctx, zmq.REQ, args.rep, args)
    try:
        payload = b"\x5a" * size
        warm = max(1, n // 10)
        took = []
        clock = time.perf_counter_ns
        for i in range(warm + n):
            t0 = clock()
            req.send(payload, copy=size < 8192)
            reply = req.recv(copy=False)
            t1 = clock()
            if len(reply) != size:
                raise RuntimeError(f"REQ {args.rep}: reply of {len(reply)} B, sent {size} B")
            if i >= warm:
                took.append(t1 - t0)
        took.sort()
        return {
            "p50_us": round(_percentile(took, 0.50), 1),
            "p99_us": round(_percentile(took, 0.99), 1),
            "n": n,
        }
    finally:
        req.close()


def throughput(zmq, ctx, args, size, m):
    dealer = _socket(zmq, ctx, zmq.DEALER, args.router, args)
    try:
        # A round trip first, so connection set-up and handshakes are not measured.
        dealer.send(b"warm")
        dealer.recv()
        payload = b"\xa5" * size
        copy = size < 8192
        window = min(args.window, m)
        sent = received = 0
        t0 = time.perf_counter_ns()
        while sent < window:
            dealer.send(payload, copy=copy)
            sent += 1
        while received < m:
            reply = dealer.recv(copy=False)
            received += 1
            if len(reply) != size:
                raise RuntimeError(
                    f"DEALER {args.router}: reply of {len(reply)} B, sent {size} B")
            if sent < m:
                dealer.send(payload, copy=copy)
                sent += 1
        secs = (time.perf_counter_ns() - t0) / 1e9
        return {
            "msg_s": round(m / secs, 1),
            "mib_s": round(m * size / secs / (1 << 20), 2),
            "n": m,
        }
    finally:
        dealer.close()


def client(args):
    zmq = _zmq()
    out = {"path": args.label, "round": args.round, "ok": True, "rtt": {}, "tput": {}}
    if args.reference:
        out["reference"] = args.reference
    ctx = zmq.Context()
    stage = "start"
    try:
        for size in SIZES:
            stage = f"REQ {args.rep} round trips, {size} B"
            n = args.round_trips if size == 64 else max(1, args.round_trips // 4)
            out["rtt"][str(size)] = round_trips(zmq, ctx, args, size, n)
        for size in SIZES:
            stage = f"DEALER {args.router} throughput, {size} B"
            m = args.messages if size == 64 else max(1, args.messages // 10)
            out["tput"][str(size)] = throughput(zmq, ctx, args, size, m)
    except zmq.Again:
        out = {"path": args.label, "round": args.round, "ok": False,
               "error": f"{stage}: no reply within {args.timeout:g} s"}
    except Exception as e:  # a broken path is a result, not a crash
        out = {"path": args.label, "round": args.round, "ok": False,
               "error": f"{stage}: {type(e).__name__}: {e}"}
    finally:
        ctx.destroy(linger=0)
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 2


# ---------------------------------------------------------------------------------------------
# serve


def serve(args):
    zmq = _zmq()
    ctx = zmq.Context()
    stop = threading.Event()

    def make(kind, endpoint):
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.rcvtimeo = 200  # to notice shutdown
        if args.curve_secret_file:
            with open(args.curve_secret_file, "rb") as f:
                sock.curve_secretkey = f.read().strip()
            sock.curve_server = True
        sock.bind(endpoint)
        return sock

    rep = make(zmq.REP, args.rep)
    router = make(zmq.ROUTER, args.router)

    def rep_loop():
        while not stop.is_set():
            try:
                msg = rep.recv_multipart(copy=False)
            except zmq.Again:
                continue
            except zmq.ContextTerminated:
                return
            rep.send_multipart(msg, copy=False)

    def router_loop():
        while not stop.is_set():
            try:
                msg = router.recv_multipart(copy=False)
            except zmq.Again:
                continue
            except zmq.ContextTerminated:
                return
            router.send_multipart(msg, copy=False)

    threads = [threading.Thread(target=rep_loop, daemon=True),
               threading.Thread(target=router_loop, daemon=True)]
    for t in threads:
        t.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    mode = "CURVE" if args.curve_secret_file else "plaintext"
    print(f"serving {mode}: REP at {args.rep}, ROUTER at {args.router}",
          file=sys.stderr, flush=True)
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(1)
    rep.close()
    router.close()
    ctx.term()
    return 0


def keygen(args):
    zmq = _zmq()
    public, secret = zmq.curve_keypair()
    with open(args.prefix + ".public", "wb") as f:
        f.write(public + b"\n")
    with open(args.prefix + ".secret", "wb") as f:
        f.write(secret + b"\n")
    return 0


def fail(args):
    print(json.dumps({"path": args.label, "round": args.round, "ok": False,
                      "error": args.error}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# summarize


def _num(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(args):
    rows = {}
    order = []
    refs = {}
    with open(args.results) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r["path"] not in rows:
                rows[r["path"]] = []
                order.append(r["path"])
            rows[r["path"]].append(r)
    for spec in args.ref or []:
        path, ref = spec.split("=", 1)
        refs[path] = ref

    def values(path, kind, size, key):
        return [r[kind][str(size)][key] for r in rows.get(path, []) if r.get("ok")]

    def cell(path, kind, size, key, unit, lower_is_better):
        v = values(path, kind, size, key)
        if not v:
            return "-"
        med = statistics.median(v)
        ref = refs.get(path, path)
        rv = values(ref, kind, size, key)
        if ref == path:
            rel = "ref"
        elif rv:
            rm = statistics.median(rv)
            rel = f"{med / rm:.2f}x" if lower_is_better else f"{100 * med / rm:.0f}%"
        else:
            rel = "no ref"
        spread = f"{_num(min(v))}-{_num(max(v))}" if len(v) > 1 else "1 round"
        return f"{_num(med)}{unit} ({rel}; {spread})"

    print("| path | reference | 64 B RTT p50 | 64 KiB RTT p50 | 64 B msg/s | 64 KiB MiB/s |")
    print("|---|---|---|---|---|---|")
    for path in order:
        ok = [r for r in rows[path] if r.get("ok")]
        ref = refs.get(path, path)
        if not ok:
            err = rows[path][-1].get("error", "?").replace("|", "/")
            print(f"| {path} | {ref} | failed: {err} | | | |")
            continue
        cells = [
            cell(path, "rtt", 64, "p50_us", " µs", True),
            cell(path, "rtt", 65536, "p50_us", " µs", True),
            cell(path, "tput", 64, "msg_s", "", False),
            cell(path, "tput", 65536, "mib_s", "", False),
        ]
        note = ""
        if len(ok) < len(rows[path]):
            errs = sorted({r.get("error", "?") for r in rows[path] if not r.get("ok")})
            note = f" ({len(rows[path]) - len(ok)} failed round(s): {'; '.join(errs)})"
        print(f"| {path}{note} | {ref if ref != path else '-'} | " + " | ".join(cells) + " |")
    print()
    print("RTT p99, median of rounds (µs): " + "; ".join(
        f"{p} {_num(statistics.median(values(p, 'rtt', 64, 'p99_us')))}"
        f" / {_num(statistics.median(values(p, 'rtt', 65536, 'p99_us')))}"
        for p in order if values(p, "rtt", 64, "p99_us")) + "  (64 B / 64 KiB)")
    print("Cells: median of rounds (RTT: ratio to the reference path, lower is better; "
          "throughput: share of the reference; min-max over rounds).")
    return 0


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("client")
    c.add_argument("--rep", required=True, help="endpoint of an echo REP")
    c.add_argument("--router", required=True, help="endpoint of an echo ROUTER")
    c.add_argument("--curve-serverkey", help="server's CURVE public key (Z85): use CURVE")
    c.add_argument("--curve-serverkey-file", help="file with the server's CURVE public key")
    c.add_argument("--label", default="path")
    c.add_argument("--reference", help="recorded in the JSON: the path to compare with")
    c.add_argument("--round", type=int, default=0)
    c.add_argument("--round-trips", type=int, default=2000,
                   help="round trips of 64 B (a quarter of it for 64 KiB), after 10%% warm-up")
    c.add_argument("--messages", type=int, default=50000,
                   help="pipelined 64 B messages (a tenth of it for 64 KiB)")
    c.add_argument("--window", type=int, default=256)
    c.add_argument("--timeout", type=float, default=10.0, help="receive timeout, seconds")

    s = sub.add_parser("serve")
    s.add_argument("--rep", required=True)
    s.add_argument("--router", required=True)
    s.add_argument("--curve-secret-file", help="file with the server's CURVE secret key")

    k = sub.add_parser("keygen")
    k.add_argument("prefix")

    f = sub.add_parser("fail")
    f.add_argument("--label", required=True)
    f.add_argument("--round", type=int, default=0)
    f.add_argument("--error", required=True)

    m = sub.add_parser("summarize")
    m.add_argument("results")
    m.add_argument("--ref", action="append", help="PATH=REFERENCE_PATH")

    args = ap.parse_args()
    if args.cmd == "client" and args.curve_serverkey_file:
        with open(args.curve_serverkey_file) as fh:
            args.curve_serverkey = fh.read().strip()
    return {"client": client, "serve": serve, "keygen": keygen, "fail": fail,
            "summarize": summarize}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
