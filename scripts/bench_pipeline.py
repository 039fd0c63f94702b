#!/usr/bin/env python3
"""Pipeline throughput: generator -> 2 analyzer stages -> sink, against a passthrough baseline.

Both chains run as real `agentsight run` pipelines (one process per actor, ZeroMQ
between them) on this machine, one after the other in the same invocation:

  real      generator -> annotate (decodes, changes, re-encodes) -> passthrough (decodes, re-encodes) -> null sink (decodes)
  baseline  generator -> passthrough decode=false -> passthrough decode=false -> null sink decode=false
            (the same processes and hops, forwarding frames without decoding the events)

For each event size it lets the chain warm up, then measures over a window: events/s
reaching the sink and CPU microseconds per event summed over every actor process.
Prints a table. Usage: scripts/bench_pipeline.py [--seconds 5] [--sizes 300,4096]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def config(run_dir: Path, size: int, real: bool) -> str:
    payload = max(0, size - 100)  # envelope + counters take ~100 bytes on the wire
    decode = "true" if real else "false"
    first = 'type = "annotate"\nfields = { stage = "bench" }' if real else 'type = "passthrough"\ndecode = false'
    return f"""
name = "bench"
[sources.gen]
type = "generator"
size = {payload}
keys = 64
[analyzers.one]
{first}
inputs = ["gen"]
[analyzers.two]
type = "passthrough"
decode = {decode}
inputs = ["one"]
[sinks.out]
type = "null"
decode = {decode}
inputs = ["two"]
[supervisor]
runtime_dir = "{run_dir}"
watch = false
"""


def sink_received(run_dir: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "agentsight", "status", "--runtime-dir", str(run_dir), "--json"],
                         capture_output=True, text=True, timeout=20)
    report = json.loads(out.stdout)
    return next(r["received"] for r in report["instances"] if r["id"] == "sinks/out")


def cpu_seconds(sup: psutil.Process) -> float:
    total = 0.0
    for p in sup.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(size: int, real: bool, seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as d:
        run_dir = Path(d) / "run"
        cfg = Path(d) / "p.toml"
        cfg.write_text(config(run_dir, size, real))
        proc = subprocess.Popen([sys.executable, "-m", "agentsight", "run", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (run_dir / "status").exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"pipeline did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.1)
            sup = psutil.Process(proc.pid)
            time.sleep(2.0)  # warm up; heartbeats every 0.5 s
            n0, c0, t0 = sink_received(run_dir), cpu_seconds(sup), time.monotonic()
            time.sleep(seconds)
            n1, c1, t1 = sink_received(run_dir), cpu_seconds(sup), time.monotonic()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    n = max(1, n1 - n0)
    return n / (t1 - t0), (c1 - c0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sizes", default="300,4096")
    args = ap.parse_args()
    os.chdir(HERE.parent)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        base_rate, base_cpu = measure(size, False, args.seconds)
        real_rate, real_cpu = measure(size, True, args.seconds)
        rows.append((size, real_rate, real_cpu, base_rate, base_cpu))
    print(f"{'event size':>10} | {'2-stage chain ev/s':>18} | {'CPU µs/ev':>9} | {'passthrough ev/s':>16} | "
          f"{'CPU µs/ev':>9} | {'chain/baseline':>14}")
    print("-" * 92)
    for size, rr, rc, br, bc in rows:
        print(f"{size:>9}B | {rr:>18,.0f} | {rc:>9.2f} | {br:>16,.0f} | {bc:>9.2f} | {rr / br:>13.0%}")
    print(f"({os.cpu_count()} CPUs; generator, 2 stages, sink, bus and supervisor share them; {args.seconds:.0f} s windows)")


if __name__ == "__main__":
    main()
