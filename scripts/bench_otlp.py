#!/usr/bin/env python3
"""The OTLP export: spans/s the otlp sink sustains, and the CPU it adds per LLM call.

A local OTLP/HTTP receiver (a separate process: it decodes every request with
opentelemetry-proto and answers 200) takes what is sent. Two measurements:

1. the export alone (``agentsight.recording.otlp.OtlpExport``, what the sink's ``write`` runs): real
   ``llm.call`` records (the LLM fixtures through http -> sse -> llm), in agent sessions with
   their tool calls, fed as fast as possible; spans/s from the first event until the receiver
   has every span, and this process's CPU per LLM call (mapping, SDK spans, protobuf, HTTP;
   the receiver's CPU is its own). Content off (the default) and on.
2. the sink as an actor: `agentsight run` with a replay of a capture where each LLM call
   comes with ``--others`` other events (a recorded agent has ~200: file opens, processes,
   HTTP records), fanned out to an ``otlp`` sink (spans and metrics, as ``--otel`` makes it)
   and to a ``null`` sink that only decodes;
   CPU of each sink process per LLM call, measured from psutil once the burst is done
   (the replay waits 2 s before the burst, so start-up CPU is left out).

    .venv/bin/python scripts/bench_otlp.py [--calls 20000] [--actor-calls 2000] [--others 200]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentsight.event import Event  # noqa: E402
from agentsight.jsonform import event_to_json  # noqa: E402
from agentsight.recording.otlp import OtlpExport  # noqa: E402
from tests.unit.test_llm_fixtures import NAMES, pipeline, wire  # noqa: E402

RECEIVER = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
count = {"spans": 0, "requests": 0, "bytes": 0}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n = 0
        if self.path == "/v1/traces":
            req = ExportTraceServiceRequest.FromString(body)
            n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        with lock:
            count["spans"] += n; count["requests"] += 1; count["bytes"] += len(body)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        with lock:
            body = json.dumps(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def count(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/count", timeout=10) as r:
            return dict(json.loads(r.read()))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def fixture_calls() -> list[dict[str, Any]]:
    out = []
    for name in NAMES:
        req, resp = wire(name)
        _, calls = pipeline([("write", req), ("read", resp)])
        out.append(calls[0].data)
    return out


def workload(calls: int, per_session: int = 20, others: int = 0) -> tuple[list[Event], int]:
    """Sessions of ``per_session`` calls (each tool call answered by the next call); returns (events, calls)."""
    base = fixture_calls()
    events: list[Event] = []
    ts = 1_764_435_000_000_000_000
    made = 0
    while made < calls:
        pid = 10_000 + made
        sid = f"{pid}@{ts}"
        events.append(Event("session.start", ts, "sessions", pid, pid, "agent",
                            {"session": sid, "agent": "claude-code", "pid": pid, "start_ns": ts, "parent": None,
                             "pids": [pid], "exe": "/usr/bin/claude", "argv": ["claude", "-p", "bench"],
                             "comm": "claude"}))
        pending: list[dict[str, Any]] = []
        for i in range(min(per_session, calls - made)):
            d = copy.deepcopy(base[(made + i) % len(base)])
            # The previous call's tool calls come back with their results in this request.
            d["messages"] = d["messages"] + [{"role": "tool", "content": "ok", "parts": [
                {"type": "tool_result", "id": t["id"], "content": "ok"}]} for t in pending]
            pending = [t for t in d["tool_calls"] if t.get("id")]
            for t in pending:
                t["id"] = f"{t['id']}-{made + i}"
            start = ts + 1000
            d.update(session=sid, agent="claude-code", conn=f"{pid}:1", seq=i, ts_request_start_ns=start,
                     ts_end_ns=start + 500_000_000, ttft_ms=120.0, duration_ms=500.0)
            for j in range(others):
                events.append(Event("file.open", ts + j, "process", pid, pid, "claude",
                                    {"path": f"/usr/lib/python3/x{j}.py", "flags": 0, "ret": 3, "count": 1,
                                     "session": sid, "agent": "claude-code"}))
            ts = start + 600_000_000
            events.append(Event("llm.call", ts, "llm", pid, pid, "claude", d))
        made += min(per_session, calls - made)
        events.append(Event("session.end", ts + 1000, "sessions", pid, pid, "claude",
                            {"session": sid, "agent": "claude-code", "pid": pid, "start_ns": ts, "end_ns": ts + 1000,
                             "parent": None, "exit_code": 0}))
        ts += 10_000
    return events, made


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_export(calls: int, content: bool) -> dict[str, float]:
    events, n = workload(calls)
    rx = Receiver()
    try:
        exp = OtlpExport(rx.url, metrics=False, content=content, max_queue=10**7, batch=512, delay_s=0.05,
                         stop_budget_s=60)
        c0, t0 = cpu_self(), time.perf_counter()
        exp.feed(events)
        t_fed = time.perf_counter()
        exp.close()   # exports what is queued
        t1, c1 = time.perf_counter(), cpu_self()
        counts = exp.counts()
        got = rx.count()
    finally:
        rx.close()
    assert counts["spans_lost"] == 0 and got["spans"] == counts["spans_created"], (counts, got)
    spans = counts["spans_created"]
    return {"calls": n, "spans": spans, "spans_per_s": spans / (t1 - t0), "calls_per_s": n / (t1 - t0),
            "cpu_us_per_call": (c1 - c0) / n * 1e6, "feed_us_per_call": (t_fed - t0) / n * 1e6,
            "bytes_per_span": got["bytes"] / spans}


def bench_actor(calls: int, others: int) -> dict[str, float]:
    events, n = workload(calls, others=others)
    # The burst starts 2 s after a first event: the sinks are up and idle when it comes.
    first = Event("gen.event", events[0].ts_ns - 2_000_000_000, "bench", 1, 1, "bench", {})
    rx = Receiver()
    with tempfile.TemporaryDirectory(prefix="as-bo-", dir="/tmp") as tmp:
        d = Path(tmp)
        cap = d / "cap.jsonl"
        # Keep the recorded order but squeeze the burst: pace=original plays the 2 s gap, then all at once.
        burst = [Event(e.topic, events[0].ts_ns, e.source, e.pid, e.tid, e.comm, e.data) for e in events]
        cap.write_text("".join(event_to_json(e) + "\n" for e in [first, *burst]))
        (d / "p.toml").write_text(f"""
name = "bench-otlp"
[sources.cap]
type = "replay"
path = "{cap}"
pace = "original"
[sinks.otlp]
type = "otlp"
inputs = ["cap"]
endpoint = "{rx.url}"
queue_size = 1000000
[sinks.null]
type = "null"
inputs = ["cap"]
[bus]
enabled = false
[supervisor]
runtime_dir = "{d / 'run'}"
""")
        proc = subprocess.Popen([sys.executable, "-m", "agentsight", "run", "--config", str(d / "p.toml")],
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        sinks: dict[str, psutil.Process] = {}
        deadline = time.monotonic() + 30
        while len(sinks) < 2 and time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    title = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                for name in ("otlp", "null"):
                    if f"sink/{name}" in title:
                        sinks[name] = child
            time.sleep(0.05)
        time.sleep(1.0)  # inside the replay's 2 s gap: both sinks are open and idle
        start = {k: sum(p.cpu_times()[:2]) for k, p in sinks.items()}
        last = dict(start)
        while proc.poll() is None:
            for k, p in sinks.items():
                try:
                    last[k] = sum(p.cpu_times()[:2])
                except psutil.Error:
                    pass
            time.sleep(0.05)
        err = proc.stderr.read() if proc.stderr else ""
    got = rx.count()
    rx.close()
    assert proc.returncode == 0, err
    assert got["spans"] > 0, err
    return {"calls": n, "events": len(events), "spans": got["spans"],
            "otlp_cpu_us_per_call": (last["otlp"] - start["otlp"]) / n * 1e6,
            "null_cpu_us_per_call": (last["null"] - start["null"]) / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000, help="LLM calls for the export measurement")
    ap.add_argument("--actor-calls", type=int, default=2000, help="LLM calls for the actor measurement")
    ap.add_argument("--others", type=int, default=200, help="other events per LLM call in the actor's capture")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    results: dict[str, Any] = {
        "export": bench_export(a.calls, content=False),
        "export_content": bench_export(a.calls, content=True),
        "actor": bench_actor(a.actor_calls, a.others),
    }
    if a.json:
        print(json.dumps(results, indent=2))
        return
    for label, key in (("export, content off", "export"), ("export, content on", "export_content")):
        r = results[key]
        print(f"{label}: {r['calls']:,} LLM calls -> {r['spans']:,} spans; {r['spans_per_s']:,.0f} spans/s "
              f"({r['calls_per_s']:,.0f} calls/s) sustained to the receiver; {r['cpu_us_per_call']:,.0f} µs CPU per "
              f"call; write() returns in {r['feed_us_per_call']:,.0f} µs per call; {r['bytes_per_span']:,.0f} B/span")
    r = results["actor"]
    print(f"otlp sink actor: {r['calls']:,} LLM calls among {r['events']:,} events ({a.others} others per call): "
          f"{r['otlp_cpu_us_per_call']:,.0f} µs CPU per call in the otlp sink, "
          f"{r['null_cpu_us_per_call']:,.0f} µs in a null sink decoding the same events")
    print(f"(cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
