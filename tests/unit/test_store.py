"""The SQLite recording: events round-trip byte for byte, typed rows follow the topics."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from agentsight.actors.sinks.sqlite import SqliteSink
from agentsight.event import Event
from agentsight.recording.store import SCHEMA_VERSION, Store, StoreError

T0 = 1_764_435_000_000_000_000


def ev(topic: str, dt_ms: int, pid: int, data: dict, comm: str = "python3") -> Event:
    return Event(topic, T0 + dt_ms * 1_000_000, "test", pid, pid, comm, data)


def session_events() -> list[Event]:
    return [
        ev("process.exec", 0, 100, {"ppid": 1, "filename": "/usr/bin/python3", "argv": ["python3", "agent.py"],
                                    "uid": 1000, "session": "100@1", "agent": "recorded"}),
        ev("process.fork", 10, 101, {"ppid": 100, "child_pid": 101}),
        ev("process.exec", 11, 101, {"ppid": 100, "filename": "/bin/ls", "argv": ["ls", "-l"], "uid": 1000}, "ls"),
        ev("file.open", 12, 101, {"path": "/etc/passwd", "flags": 0, "count": 3}, "ls"),
        ev("process.exit", 20, 101, {"ppid": 100, "exit_code": 3, "signal": 0, "duration_ms": 10.0}, "ls"),
        ev("net.connect", 30, 100, {"family": "ipv4", "address": "127.0.0.1", "port": 8443, "fd": 5, "ret": 0}),
        ev("ssl.data", 31, 100, {"conn": "100:abc", "dir": "write", "bytes": b"POST /v1/messages\r\n\xff\x00"}),
        ev("llm.call", 40, 100, {"provider": "anthropic", "api": "anthropic.messages", "host": "api.anthropic.com",
                                 "model": "claude-x", "status_code": 200, "stream": True,
                                 "usage": {"input_tokens": 120, "output_tokens": 7, "cache_read_tokens": 100,
                                           "cache_write_tokens": None, "reasoning_tokens": None},
                                 "cost": {"total": 0.0012}, "ttft_ms": 12.5, "duration_ms": 40.0,
                                 "stop_reason": "end_turn", "output_text": "hello", "session": "100@1"}),
        ev("system.sample", 50, 100, {"scope": "tree", "cpu_percent": 12.5, "rss_bytes": 1 << 20, "threads": 3,
                                      "processes": 2}),
        ev("process.exit", 60, 100, {"ppid": 1, "exit_code": 0, "signal": 0, "duration_ms": 60.0}),
        ev("session.start", 0, 100, {"session": "100@1", "agent": "recorded", "pid": 100, "start_ns": T0}),
        ev("session.end", 60, 100, {"session": "100@1", "agent": "recorded", "pid": 100, "end_ns": T0 + 60_000_000,
                                    "exit_code": 0}),
    ]


def test_events_and_derived_rows(tmp_path):
    path = tmp_path / "rec.db"
    with Store(path) as s:
        s.add(session_events())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with Store(path, readonly=True) as s:
        assert s.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert s.count_events() == 12
        raw = s.events(topics=["ssl."], raw=True)
        assert raw[0]["data"]["bytes"] == b"POST /v1/messages\r\n\xff\x00"
        assert s.events(topics=["ssl."])[0]["data"]["bytes"] == {"$base64": "UE9TVCAvdjEvbWVzc2FnZXMNCv8A"}
        procs = {p["pid"]: p for p in s.processes()}
        assert procs[101]["ppid"] == 100 and procs[101]["exit_code"] == 3 and procs[101]["argv"] == ["ls", "-l"]
        assert procs[100]["agent"] == "recorded" and procs[100]["end_ns"] == T0 + 60_000_000
        assert s.files(101)[0]["path"] == "/etc/passwd" and s.files(101)[0]["count"] == 3
        assert s.connections()[0]["port"] == 8443
        call = s.llm_calls()[0]
        assert (call["model"], call["input_tokens"], call["output_tokens"], call["cache_read_tokens"]) == \
            ("claude-x", 120, 7, 100)
        assert call["cache_write_tokens"] is None and call["stream"] is True and call["cost_usd"] == 0.0012
        assert s.llm_call(call["id"])["data"]["output_text"] == "hello"
        assert s.llm_call(999) is None
        assert s.samples()[0]["rss_bytes"] == 1 << 20
        assert s.sessions() == [{"id": "100@1", "agent": "recorded", "pid": 100, "start_ns": T0,
                                 "end_ns": T0 + 60_000_000, "exit_code": 0}]
        assert s.count_events(text="PASSWD") == 1
        assert [e["topic"] for e in s.events(pid=101)] == ["process.fork", "process.exec", "file.open",
                                                           "process.exit"]
        lanes = {(la["pid"], la["source"]): la["count"] for la in s.lanes()}
        assert lanes == {(100, "test"): 8, (101, "test"): 4}
        assert [e.topic for e in s.iter_events(topics=["llm."])] == ["llm.call"]


def test_a_reader_sees_batches_a_writer_appends(tmp_path):
    path = tmp_path / "rec.db"
    w = Store(path)
    w.add(session_events()[:3])
    r = Store(path, readonly=True)
    assert r.last_id() == 3
    w.add(session_events()[3:])
    assert r.last_id() == 12 and len(r.events(after_id=3)) == 9
    r.close()
    w.close()


def test_not_a_recording_and_newer_schema_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an agentsight recording"):
        Store(junk)
    with pytest.raises(StoreError, match="no such recording"):
        Store(tmp_path / "missing.db", readonly=True)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this agentsight"):
        Store(newer, readonly=True)


def test_sqlite_sink_writes_a_recording_with_meta(tmp_path):
    sink = SqliteSink("rec", {"path": str(tmp_path / "out.db"), "meta": {"command": "python3 agent.py"}})
    sink.open()
    sink.write(session_events())
    sink.close()
    with Store(tmp_path / "out.db", readonly=True) as s:
        assert s.meta()["command"] == "python3 agent.py"
        assert len(s.llm_calls()) == 1
