"""The runtime end to end: real processes, real ZeroMQ sockets, real files."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

from tests.conftest import actor_processes, alive_titled, read_jsonl, wait_for


def chain(out: Path, count: int, rate: int = 0, workers: int = 2, fields: str = '{ stage = "one" }',
          extra: str = "") -> str:
    return f"""
[sources.gen]
type = "generator"
count = {count}
rate = {rate}
keys = 16

[analyzers.tag]
type = "annotate"
inputs = ["gen"]
workers = {workers}
partition_by = "data.key"
fields = {fields}

[analyzers.fwd]
type = "passthrough"
inputs = ["tag"]

[sinks.out]
type = "jsonl"
inputs = ["fwd"]
path = "{out}"
{extra}
"""


def check_order(rows: list[dict]) -> dict[int, list[int]]:
    """Per key, the n values in file order; asserts strictly increasing (order per key held)."""
    per_key: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        per_key[r["data"]["key"]].append(r["data"]["n"])
    for key, ns in per_key.items():
        assert all(a < b for a, b in zip(ns, ns[1:], strict=False)), f"order broken for key {key}"
    return per_key


def test_100k_events_partitioned_none_lost_none_duplicated_order_per_key(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 100_000)).start()
    assert p.wait(120) == 0, p.stderr()
    rows = read_jsonl(out)
    assert len(rows) == 100_000
    assert len({r["data"]["i"] for r in rows}) == 100_000  # no duplicates, none missing
    per_key = check_order(rows)
    assert sorted(per_key) == list(range(16))
    assert all(r["data"]["stage"] == "one" for r in rows)
    assert p.lost_reported() == 0
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    # The run dir is private while it runs and gone afterwards.
    assert not p.run_dir.exists()


def test_kill_9_of_a_worker_is_restarted_and_every_event_is_delivered_or_reported_lost(pipeline, workdir):
    out = workdir / "out.jsonl"
    total = 60_000
    p = pipeline(chain(out, total, rate=15_000)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 200_000, 20, what="events flowing")
    victim = p.instance("analyzers/tag#0")
    old_pid = victim["pid"]
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    back = wait_for(lambda: (r := p.instance("analyzers/tag#0"))["state"] == "running" and r["pid"] != old_pid and r,
                    5, interval=0.02, what="worker restarted")
    assert time.monotonic() - killed_at < 2.0
    assert back["restarts"] == 1
    assert p.wait(120) == 0, p.stderr()
    rows = read_jsonl(out)
    ids = [r["data"]["i"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicates delivered"
    check_order(rows)
    lost = p.lost_reported()
    assert len(rows) + lost == total, (len(rows), lost)
    assert len(rows) > total // 2
    assert "crashed: killed by signal 9" in p.stderr()


def test_sigterm_stops_every_child_within_the_graceful_timeout_and_loses_nothing(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=20_000) + "\n[supervisor]\ngraceful_timeout = 8.0\n"
                 f'runtime_dir = "{workdir / "run"}"\n').start()
    wait_for(lambda: out.exists() and out.stat().st_size > 100_000, 20, what="events flowing")
    children = actor_processes(p.proc.pid)
    assert len(children) == 6  # bus, gen, tag#0, tag#1, fwd, out
    titles = sorted(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in children)
    assert "agentsight: analyzer/tag#1" in titles and "agentsight: sink/out" in titles
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.stderr()
    assert time.monotonic() - t0 < 8.0
    assert alive_titled(children) == []
    rows = read_jsonl(out)
    per_key = check_order(rows)
    # Every event the generator emitted is in the file: per key, n runs 0..max with no hole.
    for ns in per_key.values():
        assert ns == list(range(len(ns)))
    gen_sent = next(int(line.split()[4]) for line in p.stderr().splitlines() if line.startswith("sources/gen"))
    assert gen_sent == len(rows)
    assert p.lost_reported() == 0


def test_ctrl_c_stops_cleanly(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=5_000)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 10_000, 20, what="events flowing")
    children = actor_processes(p.proc.pid)
    p.proc.send_signal(signal.SIGINT)
    assert p.wait(30) == 0
    assert alive_titled(children) == []
    assert p.lost_reported() == 0


def test_a_flapping_actor_is_left_alone_for_a_while_then_tried_again_and_said_so(pipeline, workdir):
    out = workdir / "out.jsonl"
    extra = ("\n[supervisor]\nmax_restarts = 2\nrestart_window = 60.0\nretry_after = 2.0\n"
             f'runtime_dir = "{workdir / "run"}"\n')
    p = pipeline(chain(out, 0, rate=2_000, workers=1) + extra).start()
    for _ in range(3):
        r = wait_for(lambda: (x := p.instance("analyzers/tag"))["state"] == "running" and x, 10, what="running")
        os.kill(r["pid"], signal.SIGKILL)
        wait_for(lambda pid=r["pid"]: p.instance("analyzers/tag")["pid"] != pid
                 or p.instance("analyzers/tag")["state"] == "backoff", 10, what="restart or back off")
    waiting = wait_for(lambda: (x := p.instance("analyzers/tag"))["state"] == "backoff" and x, 10, what="backoff")
    assert "retrying in 2s" in p.stderr() and "next try in 2s" in waiting["message"]
    # The rest keeps running, and the actor gets another chance, not a verdict for good.
    assert p.instance("sources/gen")["state"] == "running"
    back = wait_for(lambda: (x := p.instance("analyzers/tag"))["state"] == "running" and x, 10, what="retried")
    assert back["restarts"] == 3 and "retrying analyzers/tag after its backoff" in p.stderr()
    size = out.stat().st_size
    wait_for(lambda: out.stat().st_size > size, 10, what="events flowing again")
    p.stop()
