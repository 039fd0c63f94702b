"""Retention in the recording: the sqlite sink's max_mb and max_age_h (Store.trim)."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from agentsight.actors.sinks.sqlite import SqliteSink
from agentsight.event import Event
from agentsight.pipeline.component import OptionError
from agentsight.recording import report
from agentsight.recording.store import SCHEMA, SCHEMA_VERSION, Store

HOUR = 3600 * 10**9
MiB = 1 << 20


def agent_events(t0: int, pid: int, n_files: int = 3, size: int = 0) -> list[Event]:
    """One small agent run at t0: exec, file opens, a connect, an LLM call, a sample, its exit, its session."""
    sid = f"{pid}@{t0}"

    def ev(topic: str, dt_ms: int, data: dict, p: int = pid) -> Event:
        return Event(topic, t0 + dt_ms * 10**6, "test", p, p, "agent", {**data, "session": sid})

    out = [ev("session.start", 0, {"agent": "claude-code", "pid": pid, "start_ns": t0}),
           ev("process.exec", 0, {"ppid": 1, "filename": "/usr/bin/agent", "argv": ["agent"], "uid": 1000})]
    out += [ev("file.open", 1 + i, {"path": f"/work/{pid}/{i}", "flags": 0, "count": 1, "pad": "x" * size})
            for i in range(n_files)]
    out += [ev("net.connect", 20, {"family": "ipv4", "address": "127.0.0.1", "port": 443, "fd": 5, "ret": 0}),
            ev("llm.call", 30, {"provider": "anthropic", "model": "m", "status_code": 200,
                                "usage": {"input_tokens": 10, "output_tokens": 2}, "output_text": "ok"}),
            ev("system.sample", 40, {"cpu_percent": 1.0, "rss_bytes": 1000, "threads": 1, "processes": 1}),
            ev("process.exit", 50, {"ppid": 1, "exit_code": 0, "signal": 0, "duration_ms": 50.0}),
            ev("session.end", 50, {"agent": "claude-code", "pid": pid, "end_ns": t0 + 50 * 10**6, "exit_code": 0})]
    return out


def derived_consistent(s: Store) -> None:
    """No derived row outlives what it was derived from (or is older than every event left)."""
    db = s.db
    oldest = db.execute("SELECT min(ts_ns) FROM events").fetchone()[0]
    assert db.execute("SELECT count(*) FROM llm_calls c WHERE NOT EXISTS "
                      "(SELECT 1 FROM events e WHERE e.id = c.event_id)").fetchone()[0] == 0
    for table in ("files", "connections", "samples"):
        assert db.execute(f"SELECT count(*) FROM {table} WHERE ts_ns < ?", (oldest,)).fetchone()[0] == 0, table
    assert db.execute("SELECT count(*) FROM processes WHERE end_ns < ?", (oldest,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM sessions WHERE end_ns < ?", (oldest,)).fetchone()[0] == 0


def sink(path, **options) -> SqliteSink:
    s = SqliteSink("rec", {"path": str(path), **options})
    s.open()
    return s


def test_a_store_grown_past_max_mb_comes_back_under_it_and_keeps_the_recent_events(tmp_path):
    path = tmp_path / "rec.db"
    now = time.time_ns()
    rec = sink(path)  # no limit yet: grow it to ~6 MiB
    runs = [agent_events(now - (400 - i) * 10**9, 10_000 + i, n_files=20, size=700) for i in range(400)]
    for run in runs:
        rec.write(run)
        rec.flush()
    assert rec.store is not None
    assert rec.store.used_bytes() > 5 * MiB
    last_id = rec.position()

    assert rec.reconfigure({"path": str(path), "max_mb": 2})  # live: applies at the next flush
    deleted = 0
    for _ in range(200):  # each flush spends at most ~0.1 s trimming; the rest waits for the next one
        rec.flush()
        deleted = rec.stats.get("retention_deleted", 0)
        if not rec._trimming and not rec._pending:
            break
    store = rec.store
    assert store.used_bytes() <= 2 * MiB
    assert deleted == sum(map(len, runs)) - store.count_events()
    assert rec.position() == last_id  # ids never go back: the runtime's position, a page's cursor
    # The oldest runs went, the newest stayed whole, with their derived rows.
    pids = {r["pid"] for r in store.processes()}
    assert 10_000 not in pids and 10_399 in pids
    assert store.count_events(pid=10_399) == len(runs[-1])
    assert len(store.files(10_399)) == 20 and store.llm_calls(pid=10_399)
    derived_consistent(store)
    rec.close()
    # auto_vacuum=INCREMENTAL on a new store: the file itself shrank, not just its contents.
    assert os.path.getsize(path) <= 2 * MiB
    assert not os.path.exists(f"{path}-wal") or os.path.getsize(f"{path}-wal") == 0
    with Store(path) as s:
        assert s.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_events_older_than_max_age_h_go_with_their_rows(tmp_path):
    path = tmp_path / "rec.db"
    now = time.time_ns()
    old = [agent_events(now - (50 - i) * HOUR, 100 + i) for i in range(3)]   # 50, 49, 48 hours ago
    new = [agent_events(now - (2 - i) * HOUR, 200 + i) for i in range(2)]    # 2 and 1 hours ago
    # A long-running agent: started 60 h ago and still running, with an event an hour ago: it stays.
    live = Event("process.exec", now - 60 * HOUR, "test", 300, 300, "daemon", {"ppid": 1, "argv": ["daemon"]})
    live_recent = Event("file.open", now - HOUR, "test", 300, 300, "daemon", {"path": "/etc/hosts"})
    # A process that started 60 h ago, never seen exiting, with no event left: it goes.
    stale = Event("process.exec", now - 60 * HOUR + 1, "test", 301, 301, "ghost", {"ppid": 1, "argv": ["ghost"]})
    rec = sink(path, max_age_h=24)
    rec.write([live, stale, *[e for run in old for e in run]])
    rec.write([*[e for run in new for e in run], live_recent])
    rec.flush()  # the first flush checks at once
    s = rec.store
    assert s is not None
    assert rec.stats["retention_deleted"] == 2 + sum(map(len, old))
    assert {r["pid"] for r in s.processes()} == {200, 201, 300}
    assert {r["id"] for r in s.sessions()} == {e.data["session"] for run in new for e in run[:1]}
    assert len(s.llm_calls()) == 2 and len(s.connections()) == 2 and len(s.samples()) == 2
    assert s.time_range()[0] >= now - 24 * HOUR
    derived_consistent(s)
    # Checked again only after retention_interval; nothing left to do then.
    assert rec.retain(now=time.monotonic() + 61) == 0
    rec.close()


def test_the_newest_event_always_stays_so_ids_keep_growing(tmp_path):
    path = tmp_path / "rec.db"
    now = time.time_ns()
    rec = sink(path, max_age_h=1)
    rec.write(agent_events(now - 10 * HOUR, 1))
    rec.flush()
    s = rec.store
    assert s is not None
    assert s.count_events() == 1 and s.last_id() == len(agent_events(0, 1))
    rec.write(agent_events(now, 2))
    rec.flush()
    assert s.events(limit=1)[0]["id"] == len(agent_events(0, 1))
    assert s.last_id() == 2 * len(agent_events(0, 1))
    rec.close()


def test_a_store_made_before_retention_keeps_working_and_stops_growing(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)  # as an earlier agentsight made it: no auto_vacuum
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    db.commit()
    db.close()
    os.chmod(path, 0o600)
    now = time.time_ns()
    rec = sink(path, max_mb=1)
    assert rec.store is not None and rec.store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    sizes = []
    for round_ in range(3):
        for i in range(150):
            rec.write(agent_events(now + (round_ * 150 + i) * 10**9, 1000 + round_ * 150 + i, n_files=20, size=500))
            rec.flush()
        rec._next_check = 0.0
        while True:
            rec.flush()
            if not rec._trimming and not rec._pending:
                break
        assert rec.store.used_bytes() <= MiB
        rec.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes.append(os.path.getsize(path))
    # Its free pages are reused: the file stops growing once at the cap (it does not shrink).
    assert sizes[2] <= sizes[1] * 1.1
    assert rec.stats["retention_deleted"] > 0
    derived_consistent(rec.store)
    rec.close()


def test_readers_work_on_a_trimmed_store(tmp_path):
    path = tmp_path / "rec.db"
    now = time.time_ns()
    rec = sink(path, max_age_h=24)
    rec.write([e for i in range(3) for e in agent_events(now - (48 - i) * HOUR, 100 + i)])
    rec.write([e for i in range(2) for e in agent_events(now - (2 - i) * HOUR, 200 + i)])
    rec.flush()
    rec.close()
    with Store(path, readonly=True) as s:
        summary = report.summary(s)
        assert summary["llm"]["total"]["calls"] == 2
        assert [r["calls"] for r in report.tokens(s)] == [2]
        assert len(report.prompts(s)) == 2
        exported = report.export(s, events=True)
        assert len(exported["events"]) == s.count_events() and len(exported["llm_calls"]) == 2
        for call in s.llm_calls():
            assert s.llm_call(call["id"])["data"]["output_text"] == "ok"


def test_retention_options_are_checked_and_live():
    with pytest.raises(OptionError):
        SqliteSink("rec", {"path": "x.db", "max_mb": -1})
    with pytest.raises(OptionError):
        SqliteSink("rec", {"path": "x.db", "retention_interval": 0})
    rec = SqliteSink("rec", {"path": "x.db"})
    assert rec.reconfigure({"path": "x.db", "max_mb": 512, "max_age_h": 24.5, "retention_interval": 5})
    assert rec.options["max_mb"] == 512 and rec.options["max_age_h"] == 24.5
    assert not rec.reconfigure({"path": "y.db"})  # another file needs a restart
