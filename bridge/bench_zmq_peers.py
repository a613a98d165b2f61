#!/usr/bin/python3
"""libzmq (pyzmq) echo services and the measuring client of bridge/bench-encrypted.sh.

  serve --router EP [--curve-secret Z85]               an echo ROUTER until killed
  client --path NAME --rep EP --router EP [--curve-server Z85] [--round N]
                                                       one JSON line of measurements
  table FILE                                           the markdown table of a run's lines

The same client measures every path, so the figures differ only by the path.
"""
import argparse
import json
import statistics
import sys
import time

import zmq

RTT = [(64, 2000), (65536, 500)]
THROUGHPUT = [(64, 50000), (65536, 5000)]
WINDOW = 256


def curve_server(sock, secret):
    sock.curve_secretkey = secret.encode()
    sock.curve_publickey = zmq.curve_public(secret.encode())
    sock.curve_server = True


def curve_client(sock, server_public):
    public, secret = zmq.curve_keypair()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey = server_public.encode()


def serve(args):
    """An echo ROUTER in libzmq's own loop (zmq_proxy from the socket to itself): the same C
    code on every path and no Python per message. REQ clients talk to it as to a REP."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    if args.curve_secret:
        curve_server(s, args.curve_secret)
    s.bind(args.router)
    print("serving", flush=True)
    zmq.proxy(s, s)


def socket(ctx, kind, ep, args):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 15000)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    if args.curve_server:
        curve_client(s, args.curve_server)
    s.connect(ep)
    return s


def client(args):
    ctx = zmq.Context()
    out = {"path": args.path, "round": args.round}
    try:
        req = socket(ctx, zmq.REQ, args.rep, args)
        for size, n in RTT:
            body = b"x" * size
            warm = n // 10
            times = []
            for i in range(n + warm):
                t = time.perf_counter_ns()
                req.send(body)
                if len(req.recv()) != size:
                    raise RuntimeError("short reply")
                if i >= warm:
                    times.append((time.perf_counter_ns() - t) / 1000)
            times.sort()
            out[f"rtt_p50_{size}"] = times[len(times) // 2]
            out[f"rtt_p99_{size}"] = times[int(len(times) * 0.99)]
        req.close()
        dealer = socket(ctx, zmq.DEALER, args.router, args)
        for size, n in THROUGHPUT:
            body = b"y" * size
            # Warm-up: one window's worth.
            for _ in range(WINDOW):
                dealer.send_multipart([b"", body])
            for _ in range(WINDOW):
                dealer.recv_multipart()
            t = time.perf_counter()
            sent = received = 0
            while sent < min(WINDOW, n):
                dealer.send_multipart([b"", body])
                sent += 1
            while received < n:
                dealer.recv_multipart(copy=False)
                received += 1
                if sent < n:
                    dealer.send_multipart([b"", body])
                    sent += 1
            secs = time.perf_counter() - t
            out[f"msgs_{size}"] = n / secs
            out[f"mibs_{size}"] = n * size / secs / (1 << 20)
        dealer.close()
    except Exception as e:  # a broken path is reported, the run goes on
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)


def cell(values, fmt, ref=None, ratio="x"):
    if not values:
        return "failed"
    med = statistics.median(values)
    text = fmt.format(med)
    if ref:
        text += f" ({med / ref:.2f}x" if ratio == "x" else f" ({med / ref:.0%}"
        text += ";"
    else:
        text += " ("
    text += f" {fmt.format(min(values))}-{fmt.format(max(values))})"
    return text.replace("( ", "(")


def table(args):
    rows = {}
    order = []
    errors = {}
    for line in open(args.file):
        r = json.loads(line)
        if r["path"] not in rows:
            rows[r["path"]] = []
            order.append(r["path"])
        if "error" in r:
            errors.setdefault(r["path"], []).append(r["error"])
        else:
            rows[r["path"]].append(r)
    col = lambda path, key: [r[key] for r in rows.get(path, [])]
    ref = {k: statistics.median(col("direct", k)) for k in (
        "rtt_p50_64", "rtt_p50_65536", "msgs_64", "mibs_65536") if col("direct", k)}
    print("| path | 64 B RTT p50 | 64 KiB RTT p50 | 64 B msg/s | 64 KiB MiB/s | 64 B RTT p99 | 64 KiB RTT p99 |")
    print("|---|---|---|---|---|---|---|")
    for path in order:
        if not rows[path]:
            print(f"| {path} | failed: {errors.get(path, ['?'])[0]} | | | | | |")
            continue
        print("| {} | {} | {} | {} | {} | {} | {} |".format(
            path,
            cell(col(path, "rtt_p50_64"), "{:.0f} µs", ref.get("rtt_p50_64")),
            cell(col(path, "rtt_p50_65536"), "{:.0f} µs", ref.get("rtt_p50_65536")),
            cell(col(path, "msgs_64"), "{:,.0f}", ref.get("msgs_64"), "%"),
            cell(col(path, "mibs_65536"), "{:.0f}", ref.get("mibs_65536"), "%"),
            cell(col(path, "rtt_p99_64"), "{:.0f} µs"),
            cell(col(path, "rtt_p99_65536"), "{:.0f} µs"),
        ))
        for e in errors.get(path, []):
            print(f"|  | (one round failed: {e}) | | | | | |")


def rust_table(args):
    """Lines "PATH 64 B RATE MIBS" / "PATH 64 KiB RATE MIBS" from bench-bridge."""
    got = {}
    order = []
    for line in open(args.file):
        parts = line.split()
        if len(parts) != 5:
            continue
        path, size = parts[0], parts[1] + " " + parts[2]
        if path not in got:
            got[path] = {}
            order.append(path)
        got[path].setdefault(size, []).append((float(parts[3]), float(parts[4])))
    med = lambda path, size, i: statistics.median(v[i] for v in got[path][size]) if got.get(path, {}).get(size) else None
    print("| path | 64 B msg/s | 64 KiB MiB/s |")
    print("|---|---|---|")
    for path in order:
        cells = []
        for size, i, fmt in (("64 B", 0, "{:,.0f}"), ("64 KiB", 1, "{:.0f}")):
            v, ref = med(path, size, i), med("direct", size, i)
            vals = [x[i] for x in got[path].get(size, [])]
            cells.append("failed" if v is None else fmt.format(v) + (f" ({v / ref:.0%}; " if ref else " (") + fmt.format(min(vals)) + "-" + fmt.format(max(vals)) + ")")
        print(f"| {path} | {cells[0]} | {cells[1]} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--router", required=True)
    s.add_argument("--curve-secret")
    c = sub.add_parser("client")
    c.add_argument("--path", required=True)
    c.add_argument("--rep", required=True)
    c.add_argument("--router", required=True)
    c.add_argument("--curve-server")
    c.add_argument("--round", type=int, default=1)
    t = sub.add_parser("table")
    t.add_argument("file")
    r = sub.add_parser("rust-table")
    r.add_argument("file")
    args = p.parse_args()
    {"serve": serve, "client": client, "table": table, "rust-table": rust_table}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
