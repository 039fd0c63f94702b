#!/usr/bin/env python3
"""The real agent CLIs with and without `agentsight record`: calls recovered, wall times, and the
cost of finding the TLS functions of their stripped builds. Needs root (eBPF, network namespaces)
and the CLIs (`scripts/setup.sh --clis`).

Usage: sudo .venv/bin/python scripts/bench_agents.py [--runs N] [--cli NAME ...]

Per CLI, N runs of the two-turn task alone and N under `record` (agentsight.demo.clis): the
median wall time of each (under record it includes record's own start and stop), and the LLM
calls the server answered against those in the recording. Then, for Claude Code's and Codex's
native binaries, the search for their TLS functions with nothing cached (median of 3) and from
the cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentsight.demo import clis
from agentsight.demo.llm_server import GENERATE_APIS
from agentsight.kernel import tlsfind
from agentsight.recording.store import Store

AGENTSIGHT = [sys.executable, "-m", "agentsight"]
BINARIES = {
    "claude": "node_modules/@anthropic-ai/claude-code/bin/claude.exe",
    "codex": "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
}


def one(name: str, tmp: Path, recorded: bool) -> tuple[float, int, int]:
    """(wall s, calls the server answered, calls in the recording)."""
    db = tmp / "rec.db"
    wrap = [*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(tmp / "rt"), "--"] if recorded else None
    result = clis.run(name, tmp / "run", timeout=300, wrap=wrap)
    if not result.ok:
        raise SystemExit(f"{name}: the CLI did not complete its task (exit {result.returncode})")
    answered = {e["response_id"] for e in result.exchanges if e.get("api") in GENERATE_APIS and e.get("status") == 200}
    seen = 0
    if recorded:
        with Store(db, readonly=True) as s:
            seen = len(answered & {s.llm_call(r["id"])["data"]["response_id"] for r in s.llm_calls(limit=1 << 20)})
    return result.wall_s, len(answered), seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cli", action="append", choices=list(clis.SETUPS), help="default: every setup")
    args = p.parse_args()
    print(f"{'cli':20} {'alone s':>8} {'record s':>9} {'calls seen':>11}")
    for name in args.cli or list(clis.SETUPS):
        alone, under, answered, seen = [], [], 0, 0
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                alone.append(one(name, Path(d), False)[0])
            with tempfile.TemporaryDirectory() as d:
                wall, a, s = one(name, Path(d), True)
                under.append(wall)
                answered += a
                seen += s
        print(f"{name:20} {statistics.median(alone):8.2f} {statistics.median(under):9.2f} {seen:>5}/{answered:<5}")
    print()
    print(f"{'binary':20} {'size MB':>8} {'first s':>8} {'cached ms':>10}  found")
    for name, rel in BINARIES.items():
        path = clis.cache_dir() / rel
        if not path.exists():
            continue
        firsts = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as d:
                started = time.perf_counter()
                found = tlsfind.find(str(path), d)
                firsts.append(time.perf_counter() - started)
                started = time.perf_counter()
                cached = tlsfind.find(str(path), d)
                again = time.perf_counter() - started
                assert cached.cached
        print(f"{name:20} {path.stat().st_size / 1e6:8.0f} {statistics.median(firsts):8.2f} {again * 1000:10.1f}  "
              f"{found.stack}: {', '.join(found.functions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
