#!/usr/bin/env python3
"""Measure the eBPF sources: the highest event rate each sustains with zero kernel drops,
and the RSS of the process that runs it. Needs root and bcc. Prints a table.

For each rate a fresh worker process opens the source filtered to one load-generator
process, the generator does its syscall at that rate for ``--seconds``, and the worker
counts the records it decoded and ``stats["kernel_lost"]``. A rate passes when every
syscall arrived as an event and nothing was lost. The search doubles the rate until a
run fails or the generator cannot go faster.

    sudo .venv/bin/python scripts/bench_sources.py [--seconds 2] [--ring-pages 256]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

# The load generator: waits for a line on stdin, then runs `op` `rate` times a second.
GENERATOR = r"""
import os, sys, time
kind, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
payload = b"x" * int(sys.argv[4])
null = os.open("/dev/null", os.O_WRONLY)
os.dup2(null, 2)
sys.stdin.readline()
if kind == "process":
    def op():
        os.close(os.open("/dev/null", os.O_RDONLY))
else:
    def op():
        os.write(2, payload)
start = time.perf_counter()
end = start + seconds
done = 0
while True:
    now = time.perf_counter()
    if now >= end:
        break
    due = int((now - start) * rate) if rate > 0 else done + 1000
    while done < due:
        op()
        done += 1
    if rate > 0 and done >= due:
        time.sleep(0.0005)
print(done, flush=True)
"""


@dataclass
class Run:
    target: float
    sent: int
    seen: int
    lost: int
    seconds: float
    rss_mb: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.seen == self.sent

    @property
    def achieved(self) -> float:
        return self.sent / self.seconds


def worker(kind: str, pid: int, ring_pages: int) -> None:
    """Open one source filtered to ``pid``, say ready, count until told to stop; print JSON."""
    from agentsight.pipeline.component import Source

    src: Source
    if kind == "process":
        from agentsight.actors.sources.process import ProcessSource
        src = ProcessSource("bench", {"pid": pid, "ring_kib": ring_pages * 4, "open_window_ms": 0,
                                      "open_rate": 10**9})
    else:
        from agentsight.actors.sources.stdio import StdioSource
        src = StdioSource("bench", {"pid": pid, "ring_kib": ring_pages * 4, "max_bytes": 4096})
    src.open()
    print("ready", flush=True)

    def counted(events: list[Any]) -> int:
        """The generator's own operations: O_RDONLY opens of /dev/null, or writes on fd 2."""
        if kind == "process":
            return sum(1 for e in events if e.pid == pid and e.topic == "file.open"
                       and e.data["path"] == "/dev/null" and e.data["flags"] & os.O_ACCMODE == os.O_RDONLY)
        return sum(1 for e in events if e.pid == pid and e.topic == "stdio.data" and e.data["fd"] == 2)

    seen = 0
    stopping = False
    while True:
        events = src.poll(0.05)
        seen += counted(events)
        if stopping and not events:
            break
        if not stopping and select.select([sys.stdin], [], [], 0)[0]:
            sys.stdin.readline()
            stopping = True
    seen += counted(src.stop())
    rss = psutil.Process().memory_info().rss
    print(json.dumps({"seen": seen, "lost": src.stats["kernel_lost"], "rss": rss}), flush=True)
    src.close()


def run_once(kind: str, rate: float, seconds: float, ring_pages: int, payload: int) -> Run:
    gen = subprocess.Popen([sys.executable, "-c", GENERATOR, kind, str(rate), str(seconds), str(payload)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    work = subprocess.Popen([sys.executable, __file__, "worker", kind, str(gen.pid), str(ring_pages)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert work.stdout is not None and work.stdin is not None and gen.stdin is not None
        if work.stdout.readline().strip() != "ready":
            raise SystemExit(f"{kind} worker failed to start (see its error above)")
        started = time.perf_counter()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        out, _ = gen.communicate()
        elapsed = time.perf_counter() - started
        work.stdin.write("stop\n")
        work.stdin.flush()
        result: dict[str, Any] = json.loads(work.stdout.readline())
        work.wait()
    finally:
        for proc in (gen, work):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return Run(rate, int(out.strip()), result["seen"], result["lost"], min(elapsed, seconds),
               result["rss"] / 2**20)


def search(kind: str, seconds: float, ring_pages: int, payload: int, start: float,
           refine: int = 2) -> tuple[Run | None, Run]:
    """Double the rate until a run loses events, then bisect ``refine`` times between the
    last passing and the first failing rate; return (best passing run, lowest failing run)."""

    def attempt(rate: float) -> Run:
        run = run_once(kind, rate, seconds, ring_pages, payload)
        print(f"  {kind:8} {payload:>5} B  target {rate:>9,.0f}/s  sent {run.achieved:>9,.0f}/s"
              f"  seen {run.seen:>9,}  lost {run.lost:>7,}  {'ok' if run.ok else 'LOSS'}", file=sys.stderr)
        return run

    best: Run | None = None
    rate = start
    while True:
        run = attempt(rate)
        if not run.ok:
            break
        best = run
        if run.achieved < rate * 0.9:  # the generator is the limit now
            return best, run
        rate *= 2
    failing = run
    for _ in range(refine):
        low = best.target if best else 0.0
        run = attempt((low + failing.target) / 2)
        if run.ok:
            best = run
        else:
            failing = run
    return best, failing


def system_cost() -> tuple[float, float, float]:
    """ms per system-wide sample, ms per tree sample of this session, RSS MiB (in a fresh process)."""
    code = (
        "import json, os, time, psutil\n"
        "from agentsight.actors.sources.system import SystemSource\n"
        "def cost(opts):\n"
        "    s = SystemSource('b', opts); s.open(); t = time.perf_counter()\n"
        "    for _ in range(20): s.sample()\n"
        "    return (time.perf_counter() - t) / 20 * 1000\n"
        "a = cost({}); b = cost({'pid': os.getsid(0)})\n"
        "print(json.dumps([a, b, psutil.Process().memory_info().rss / 2**20]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    a, b, rss = json.loads(out)
    return a, b, rss


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each run")
    parser.add_argument("--ring-pages", type=int, default=256, help="ring buffer pages (default 1 MiB)")
    parser.add_argument("--start", type=float, default=12_500, help="first rate tried, events/s")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmark loads eBPF programs: run it as root")

    rows = []
    for kind, payload, label in (("process", 0, "process (file.open)"),
                                 ("stdio", 100, "stdio (100 B writes)"),
                                 ("stdio", 4096, "stdio (4 KiB writes)")):
        best, last = search(kind, args.seconds, args.ring_pages, payload, args.start)
        rows.append((label, best, last))
    sys_ms, tree_ms, sys_rss = system_cost()

    print(f"\nring buffer {args.ring_pages * 4} KiB, {args.seconds:g} s per run, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"{'source':24} {'max rate, 0 lost':>17} {'first failing':>24} {'RSS MiB':>8}")
    for label, best, last in rows:
        ok = f"{best.achieved:,.0f}/s" if best else "-"
        fail = "- (generator limit)" if last.ok else f"{last.achieved:,.0f}/s lost {last.lost:,}"
        print(f"{label:24} {ok:>17} {fail:>24} {(best or last).rss_mb:>8.0f}")
    print(f"{'system (psutil)':24} {f'{sys_ms:.2f} ms/sample':>17} "
          f"{f'tree: {tree_ms:.2f} ms/sample':>24} {sys_rss:>8.0f}")


if __name__ == "__main__":
    main()
