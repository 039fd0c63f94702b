#!/usr/bin/env python3
"""What the ssl source costs a traced program, and how many events it can take.

Run as root from the repository: ``.venv/bin/python scripts/bench_overhead.py``.

1. Requests/s of an HTTPS keep-alive client (Python ssl, 4 KiB request bodies) against a
   local server, without and with the ssl source attached to the client and its events
   consumed by a separate tracer process; alternating runs, medians reported.
2. The tracer process's RSS.
3. The highest rate of 4 KiB SSL_write calls the tracer keeps up with at zero kernel
   drops: a generator encrypts into a memory BIO (no network, so the generator is as
   fast as it can be) at increasing paced rates, one tracer per rate.

Every role runs in its own process (this file with a role argument); the client and
generator wait on stdin until the tracer is attached.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
BODY = 4096


# -- roles ------------------------------------------------------------------


def serve(cert: str, key: str) -> None:
    """HTTPS/1.1 keep-alive server on 127.0.0.1: answers every request with 64 bytes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"k" * 64

    def handle(conn: ssl.SSLSocket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                conn.sendall(reply)

    while True:
        raw, _ = listener.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ctx.wrap_socket(raw, server_side=True)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def client(port: int, requests: int) -> None:
    """Keep-alive client: ``requests`` POSTs of 4 KiB once released on stdin; prints req/s."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw)
    request = b"POST /r HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % BODY + b"b" * BODY
    sys.stdin.readline()
    buf = b""
    start = time.perf_counter()
    for _ in range(requests):
        sock.sendall(request)
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(1 << 16)
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buf) < length:
            buf += sock.recv(1 << 16)
        buf = buf[length:]
    elapsed = time.perf_counter() - start
    sock.close()
    print(json.dumps({"rps": requests / elapsed}), flush=True)


def blast(rate: int, seconds: float) -> None:
    """Paced 4 KiB SSL_write_ex calls into a memory BIO; prints how many it made per second."""
    cctx = ssl.create_default_context()
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(os.environ["BENCH_CERT"], os.environ["BENCH_KEY"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = cctx.wrap_bio(c_in, c_out)
    srv = sctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # handshake by shuttling the BIOs
        for side in (cli, srv):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    payload = b"e" * BODY
    sys.stdin.readline()
    writes = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = min(int((now - start) * rate) + 1, writes + 256)  # re-check the clock every 256 calls
        while writes < due:
            cli.write(payload)
            writes += 1
            if writes % 64 == 0:
                c_out.read()
        if writes >= due:
            time.sleep(0.0005)
    print(json.dumps({"writes": writes, "rate": writes / (time.perf_counter() - start)}), flush=True)


def trace(pid: int, fast_probes: bool) -> None:
    """Attach the ssl source to ``pid`` and consume its events until stdin closes."""
    from agentsight.actors.sources.ssl import SslSource

    source = SslSource("ssl", {"pid": pid, "fast_probes": fast_probes})
    source.open()
    print("ready", flush=True)
    events = bytes_seen = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        for e in source.poll(0.05):
            if e.topic == "ssl.data":
                events += 1
                bytes_seen += len(e.data["bytes"])
    for e in source.poll(0) + source.stop():
        if e.topic == "ssl.data":
            events += 1
            bytes_seen += len(e.data["bytes"])
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    source.close()
    print(json.dumps({"events": events, "bytes": bytes_seen, "stats": source.stats,
                      "rss_kib": int(status["VmRSS"].split()[0]), "hwm_kib": int(status["VmHWM"].split()[0])}),
          flush=True)


# -- orchestration ----------------------------------------------------------


def role(*args: Any, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def run_gated(worker: subprocess.Popen[str], traced: bool,
              fast_probes: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Release ``worker`` (with a tracer attached first if ``traced``); return both reports."""
    assert worker.stdin is not None and worker.stdout is not None
    tracer = None
    if traced:
        tracer = role("trace", worker.pid, int(fast_probes))
        assert tracer.stdout is not None
        if tracer.stdout.readline().strip() != "ready":
            raise SystemExit("the tracer did not start: run as root with bcc installed")
    worker.stdin.write("go\n")
    worker.stdin.flush()
    result = json.loads(worker.stdout.readline())
    worker.wait()
    report = None
    if tracer is not None:
        assert tracer.stdin is not None and tracer.stdout is not None
        tracer.stdin.write("stop\n")
        tracer.stdin.flush()
        report = json.loads(tracer.stdout.readline())
        tracer.wait()
    return result, report


def orchestrate(requests: int, rounds: int, rates: list[int], seconds: float, fast_probes: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="as-bench-") as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
        server = role("serve", cert, key)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            plain: list[float] = []
            traced: list[float] = []
            reports: list[dict[str, Any]] = []
            for _ in range(rounds):
                plain.append(run_gated(role("client", port, requests), False)[0]["rps"])
                result, report = run_gated(role("client", port, requests), True, fast_probes)
                assert report is not None
                traced.append(result["rps"])
                reports.append(report)
        finally:
            server.kill()
            server.wait()
        base, with_src = statistics.median(plain), statistics.median(traced)
        placement = "past verified prologues" if fast_probes else "at symbols"
        print(f"HTTPS keep-alive, {requests} requests of {BODY} B, median of {rounds}, probes {placement}:")
        print(f"  without ssl source: {base:8.0f} req/s   (runs: {', '.join(f'{x:.0f}' for x in plain)})")
        print(f"  with ssl source:    {with_src:8.0f} req/s   (runs: {', '.join(f'{x:.0f}' for x in traced)})")
        print(f"  ratio: {with_src / base:.3f}  (cost {100 * (1 - with_src / base):.1f}%)")
        last = reports[-1]
        print(f"  events consumed per run: {last['events']} ({last['bytes']} bytes), "
              f"kernel drops: {last['stats'].get('kernel_lost', 0)}")
        print(f"  tracer RSS: {last['rss_kib'] / 1024:.0f} MiB (peak {max(r['hwm_kib'] for r in reports) / 1024:.0f} MiB)")

        print(f"4 KiB SSL_write_ex events, {seconds:.0f} s per rate:")
        best = 0.0
        env = {"BENCH_CERT": cert, "BENCH_KEY": key}
        for rate in rates:
            result, report = run_gated(role("blast", rate, seconds, env=env), True, fast_probes)
            assert report is not None
            lost = report["stats"].get("kernel_lost", 0)
            ok = lost == 0 and report["events"] == result["writes"]
            print(f"  target {rate:7d}/s: made {result['rate']:9.0f}/s, captured {report['events']}/{result['writes']}, "
                  f"kernel drops {lost} -> {'ok' if ok else 'LOSS'}")
            if ok:
                best = max(best, result["rate"])
            elif lost:
                break
        print(f"  highest rate with zero drops: {best:.0f} events/s")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "client", "blast", "trace"):
        name, args = sys.argv[1], sys.argv[2:]
        if name == "serve":
            serve(args[0], args[1])
        elif name == "client":
            client(int(args[0]), int(args[1]))
        elif name == "blast":
            blast(int(args[0]), float(args[1]))
        else:
            trace(int(args[0]), args[1] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per client run")
    parser.add_argument("--rounds", type=int, default=3, help="runs with and without the source")
    parser.add_argument("--rates", default="25000,50000,75000,100000,150000",
                        help="comma-separated 4 KiB event rates to try")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per event rate")
    parser.add_argument("--probes-at-symbol", action="store_true",
                        help="put every probe on its symbol (fast_probes = false), to compare")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_overhead.py loads eBPF: run it as root")
    orchestrate(opts.requests, opts.rounds, [int(r) for r in opts.rates.split(",")], opts.seconds,
                not opts.probes_at_symbol)


if __name__ == "__main__":
    main()
