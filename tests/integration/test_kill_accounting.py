"""kill -9 of every actor kind under load: restarted fast, and every event delivered or counted lost.

This is the test the kill -9 figures come from (restart time median and max, accounting
exactness per actor kind, sinks included); it prints them (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import time

from tests.conftest import read_jsonl, status_now, summary_rows, wait_for

# The instances killed, in turn, twice each: an analyzer worker, a single analyzer, both sinks,
# the bus and the source.
VICTIMS = ["analyzers/tag#0", "analyzers/fwd", "sinks/out", "sinks/db", "bus", "sources/gen"]


def config(out, db, run_dir) -> str:
    return f"""
[sources.gen]
type = "generator"
count = 0
rate = 12000
keys = 16

[analyzers.tag]
type = "annotate"
inputs = ["gen"]
workers = 2
partition_by = "data.key"
fields = {{ stage = "one" }}

[analyzers.fwd]
type = "passthrough"
inputs = ["tag"]

[sinks.out]
type = "jsonl"
inputs = ["fwd"]
path = "{out}"

[sinks.db]
type = "sqlite"
inputs = ["fwd"]
path = "{db}"

[supervisor]
max_restarts = 10
runtime_dir = "{run_dir}"
"""


def instance(run_dir, iid: str) -> dict:
    return next(r for r in status_now(run_dir)["instances"] if r["id"] == iid)


def test_kill_9_of_every_actor_kind_is_restarted_and_counted_exactly(pipeline, workdir):
    out, db = workdir / "out.jsonl", workdir / "rec.db"
    p = pipeline(config(out, db, workdir / "run")).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 300_000, 30, what="events flowing")
    restart_s: dict[str, list[float]] = {v: [] for v in VICTIMS}
    for _ in range(2):
        for victim in VICTIMS:
            before = instance(p.run_dir, victim)
            os.kill(before["pid"], signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda v=victim, pid=before["pid"]: (r := instance(p.run_dir, v))["state"] == "running"
                     and r["pid"] != pid, 10, interval=0.01, what=f"{victim} restarted")
            restart_s[victim].append(time.monotonic() - killed)
            size = out.stat().st_size
            wait_for(lambda s=size: out.stat().st_size > s + 50_000, 20, what="events flowing again")
    assert p.stop(60) == 0, p.stderr()
    rows = summary_rows(p.stderr())
    lines = read_jsonl(out)
    with sqlite3.connect(db) as con:
        stored = [int(x) for (x,) in con.execute("SELECT json_extract(data, '$.i') || '' FROM events")]
    numbered = int(p.stderr().rsplit("events from the sources: ", 1)[1].split()[0])
    upstream = sum(rows[i]["dropped"] for i in ("sources/gen", "analyzers/tag#0", "analyzers/tag#1", "analyzers/fwd"))
    figures = {}
    for sink, got in (("sinks/out", len(lines)), ("sinks/db", len(stored))):
        counted = upstream + rows[sink]["dropped"]
        figures[sink] = (got, counted, numbered)
        assert got + counted == numbered, (sink, got, counted, numbered)
    # Nothing delivered twice (the source restarts its numbering of i, so key on its pid too).
    keys = [(r["pid"], r["data"]["i"]) for r in lines]
    assert len(keys) == len(set(keys))
    times = [t for ts in restart_s.values() for t in ts]
    print(f"\nkill -9 restart time: median {statistics.median(times):.2f}s, max {max(times):.2f}s "
          f"over {len(times)} kills")
    for victim, ts in restart_s.items():
        print(f"  {victim:<18} restart {', '.join(f'{t:.2f}s' for t in ts)}")
    for iid in ("analyzers/tag#0", "analyzers/tag#1", "analyzers/fwd", "sinks/out", "sinks/db"):
        print(f"  {iid:<18} counted lost {rows[iid]['dropped']} (restarts {rows[iid]['restarts']})")
    for sink, (got, counted, total) in figures.items():
        print(f"  {sink:<18} delivered {got} + counted lost {counted} = {got + counted} of {total} numbered")
    assert max(times) < 3.0
