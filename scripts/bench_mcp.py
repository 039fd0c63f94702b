"""Throughput of the mcp stage's logic (agentsight.analysis.mcp.McpCalls), the way record feeds it.

- ``mcp``: the real everything-server capture (tests/fixtures/mcp) replayed on fresh pids:
  MB/s of stdio payload and mcp.call records per second;
- ``build output``: a busy process's stdout that never speaks MCP (what a build or a test run
  writes under `record`): MB/s;
- ``other topics``: events the stage only passes on (file.open): events per second.

    .venv/bin/python scripts/bench_mcp.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agentsight.analysis.mcp import McpCalls
from agentsight.event import Event
from agentsight.jsonform import event_from_json

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mcp" / "everything_stdio.jsonl"


def bench_mcp(seconds: float) -> tuple[float, float]:
    events = [event_from_json(line) for line in FIXTURE.read_text().splitlines()]
    stdio = [e for e in events if e.topic == "stdio.data"]
    payload = sum(len(e.data["bytes"]) for e in stdio)
    calls = McpCalls(link_wait_s=0, exit_grace_s=0)
    done = records = rounds = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pid = 100_000 + rounds
        for e in stdio:
            records += sum(1 for o in calls.feed(Event(e.topic, e.ts_ns, e.source, pid, pid, e.comm, e.data))
                           if o.topic == "mcp.call")
        records += sum(1 for o in calls.feed(Event("process.exit", 0, "p", pid, pid, "node", {"exit_code": 0}))
                       if o.topic == "mcp.call")
        records += sum(1 for o in calls.tick() if o.topic == "mcp.call")
        done += payload
        rounds += 1
    dt = time.perf_counter() - t0
    return done / dt / 1e6, records / dt


def bench_build_output(seconds: float) -> float:
    lines = b"".join(f"[{i:4d}/9999] CC src/module_{i}.o -O2 -Wall\n".encode() for i in range(200))
    chunks = [lines[i:i + 4096] for i in range(0, len(lines), 4096)]
    calls = McpCalls(link_wait_s=0)
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for c in chunks:
            calls.feed(Event("stdio.data", 0, "stdio", 7, 7, "make", {"fd": 1, "dir": "write", "bytes": c,
                                                                       "len": len(c)}))
        done += len(lines)
    return done / (time.perf_counter() - t0) / 1e6


def bench_other(seconds: float) -> float:
    calls = McpCalls(link_wait_s=0)
    ev = Event("file.open", 0, "process", 7, 7, "make", {"path": "/usr/include/stdio.h", "flags": 0})
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10_000):
            calls.feed(ev)
        n += 10_000
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    mbs, cps = bench_mcp(a.seconds)
    print(f"mcp (everything server capture): {mbs:6.1f} MB/s of stdio, {cps:8,.0f} mcp.call/s")
    print(f"build output (never MCP):        {bench_build_output(a.seconds):6.1f} MB/s")
    print(f"other topics (passed on):        {bench_other(a.seconds):8,.0f} events/s")


if __name__ == "__main__":
    main()
