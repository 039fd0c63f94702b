#!/usr/bin/env python3
"""`agentsight record` start and stop latency, standalone and through a running collector, and
what an idle collector costs. Needs root (eBPF).

Usage: sudo .venv/bin/python scripts/bench_record.py [--runs 5] [--idle 60]

The recorded command is ``date +%s.%N``: it prints the wall clock as it starts (a
millisecond after its exec), then exits. Start latency = from launching ``agentsight
record`` to that time; stop latency = from it to ``record`` exiting, its summary printed.
Medians of ``--runs``. Standalone runs are measured with the eBPF compile cache warm (what
``scripts/setup.sh`` leaves), after the previous run's actors are gone and back to back, and
with the cache empty (every program compiled). The collector is config/collector.toml with its store, sockets and
web UI moved to a temporary directory; its idle cost is the CPU time of all its processes
over ``--idle`` seconds with nothing recorded, scaled to an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.collectorconf import collector_config  # noqa: E402  (the collector the tests run)

AGENTSIGHT = [sys.executable, "-m", "agentsight"]


def one(env: dict[str, str], tmp: Path, *flags: str) -> tuple[float, float]:
    db = tmp / "rec.db"
    for p in tmp.glob("rec.db*"):
        p.unlink()
    t0 = time.time()
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), *flags, "--", "date", "+%s.%N"], env=env,
                       capture_output=True, text=True, timeout=300)
    t_end = time.time()
    if r.returncode != 0:
        raise SystemExit(f"record failed: {r.stderr[-2000:]}")
    t_cmd = float(r.stdout.strip().splitlines()[-1])
    return t_cmd - t0, t_end - t_cmd


def pids_of(rt: Path) -> list[int]:
    r = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(rt), "--json"], capture_output=True, text=True)
    report = json.loads(r.stdout)
    return [report["pid"], *[i["pid"] for i in report["instances"] if i.get("pid")]]


def cpu_seconds(pids: list[int]) -> float:
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tck
        except (OSError, IndexError):
            pass
    return total


def settle(timeout: float = 30.0) -> None:
    """Wait until no actor of an earlier run is left (their probes detached), then a second more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", "^agentsight: (source|analyzer|sink|bus)"], capture_output=True)
        if left.returncode != 0:
            break
        time.sleep(0.1)
    time.sleep(1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle", type=float, default=60.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="as-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    env = {**os.environ, "AGENTSIGHT_COLLECTOR": str(tmp / "collector.sock")}
    try:
        # The previous run's sources detach their probes after record has exited (~3 s: the kernel
        # waits out a grace period per probe), which slows the next run's attaching: measured
        # both after that teardown and back to back. The compile cache warm (setup.sh), then empty.
        settled = []
        for _ in range(args.runs):
            settle()
            settled.append(one(env, tmp, "--standalone"))
        back_to_back = [one(env, tmp, "--standalone") for _ in range(args.runs)]
        cold = []
        for _ in range(args.runs):
            settle()
            shutil.rmtree(tmp / "bpf-cache", ignore_errors=True)
            cold.append(one({**env, "AGENTSIGHT_BPF_CACHE": str(tmp / "bpf-cache")}, tmp, "--standalone"))
        settle()
        (tmp / "c.toml").write_text(collector_config(tmp))
        rt = tmp / "rt"
        col = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(tmp / "c.toml"), "--runtime-dir", str(rt),
                                "--no-watch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while True:
                r = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(rt), "--json"],
                                   capture_output=True, text=True)
                if r.returncode == 0 and all(i["state"] == "running" for i in json.loads(r.stdout)["instances"]):
                    break
                if time.monotonic() > deadline or col.poll() is not None:
                    raise SystemExit("the collector did not start")
                time.sleep(0.5)
            time.sleep(5)  # past its start-up work
            pids = pids_of(rt)
            c0 = cpu_seconds(pids)
            time.sleep(args.idle)
            idle_per_hour = (cpu_seconds(pids) - c0) * 3600 / args.idle
            through = [one(env, tmp) for _ in range(args.runs)]
        finally:
            col.terminate()
            col.wait(timeout=120)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, rows in (("standalone", settled), ("standalone, back to back", back_to_back),
                       ("standalone, cache empty", cold), ("through the collector", through)):
        starts, stops = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{name:25} start {statistics.median(starts):6.3f} s (min {min(starts):.3f}, max {max(starts):.3f})"
              f"   stop {statistics.median(stops):6.3f} s (min {min(stops):.3f}, max {max(stops):.3f})")
    print(f"idle collector: {idle_per_hour:.1f} CPU seconds per hour ({idle_per_hour / 36:.2f}% of one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
