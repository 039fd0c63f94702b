"""The web UI's API over a recording that retention trimmed: the newer session whole, no trace of the older."""

from __future__ import annotations

from pathlib import Path

from agentsight.event import Event
from agentsight.recording.store import Store
from tests.web.conftest import serve
from tests.web.recording import AGENT_PID, T0, agent_session, write
from tests.web.test_web_api import get

DAY = 86_400 * 10**9


def with_mcp(events: list[Event], t0: int) -> list[Event]:
    """The session plus one MCP tool call over stdio (what the mcp stage records)."""
    call = Event("mcp.call", t0 + 10**9, "mcp", 4330, 4330, "node", {
        "transport": "stdio", "server": {"pid": 4330, "name": "fs"}, "client": {"pid": AGENT_PID},
        "direction": "client", "id": 1, "call_id": f"4330:1@{t0}", "method": "tools/call", "tool": "read_file",
        "status": "ok", "latency_ms": 3.0, "ts_request_ns": t0 + 10**9 - 3 * 10**6, "ts_response_ns": t0 + 10**9})
    return sorted([*events, call], key=lambda e: e.ts_ns)


def test_the_api_serves_what_retention_kept(tmp_path: Path):
    old, new = with_mcp(agent_session(T0), T0), with_mcp(agent_session(T0 + DAY), T0 + DAY)  # one pid, a day apart
    path = write(tmp_path / "rec.db", old + new)
    with Store(path) as s:
        deleted = 0
        while n := s.trim(before_ns=T0 + DAY // 2, batch=50):
            deleted += n
        assert deleted == len(old)
    served = serve(path)
    try:
        url = served.url
        status, _, info = get(url + "/api/info")
        assert status == 200
        assert info["counts"]["events"] == len(new) and info["start_ns"] == T0 + DAY
        assert info["last_id"] == len(old) + len(new)
        _, _, procs = get(url + "/api/processes")
        runs = [p for p in procs["processes"] if p["pid"] == AGENT_PID]
        assert [p["start_ns"] for p in runs] == [T0 + DAY]
        assert all(p["start_ns"] is None or p["start_ns"] >= T0 + DAY for p in procs["processes"])
        assert [s["start_ns"] for s in procs["sessions"]] == [T0 + DAY]
        _, _, detail = get(url + f"/api/processes/{AGENT_PID}")
        assert detail["llm_calls"] and all(c["ts_ns"] > T0 + DAY for c in detail["llm_calls"])
        _, _, calls = get(url + "/api/llm/calls")
        assert len(calls["calls"]) == 4
        for call in calls["calls"]:
            status, _, one = get(url + f"/api/llm/calls/{call['id']}")
            assert status == 200 and one["data"]["model"]
        status, _, timeline = get(url + "/api/timeline")
        assert status == 200 and timeline
        status, _, lanes = get(url + "/api/lanes")
        assert status == 200 and sum(la["count"] for la in lanes["lanes"]) == len(new)
        status, _, events = get(url + "/api/events?after_id=0&limit=5")
        assert status == 200 and events["events"][0]["id"] == len(old) + 1
        status, _, mcp = get(url + "/api/mcp/calls")
        assert status == 200 and [c["call_id"] for c in mcp["calls"]] == [f"4330:1@{T0 + DAY}"]
        assert mcp["summary"]["calls"] == 1
    finally:
        served.thread.stop()


def test_a_web_sink_that_does_not_write_serves_what_the_sqlite_sink_writes(tmp_path: Path):
    """The collector's shape: one store, written (and trimmed) by the sqlite sink, served by the web sink."""
    from agentsight.actors.sinks.sqlite import SqliteSink
    from agentsight.actors.sinks.web import WebSink
    from agentsight.pipeline.config import loads
    from tests.conftest import wait_for
    from tests.web.conftest import TOKEN

    db = tmp_path / "store.db"
    web = WebSink("web", {"port": 0, "db": str(db), "write": False, "token": TOKEN})
    web.open()  # before the writer: it makes the empty recording so pages can read it
    rec = SqliteSink("rec", {"path": str(db)})
    rec.open()
    try:
        events = agent_session(T0)
        web.write(events)
        web.flush()
        assert get(web.url + "api/info")[2]["counts"]["events"] == 0  # the web sink wrote nothing
        rec.write(events)
        rec.flush()
        # The page sees the writer's commits (the file is watched).
        info = wait_for(lambda: (i := get(web.url + "api/info")[2])["counts"]["events"] and i, 10,
                        what="the committed events served")
        assert info["counts"]["events"] == len(events) and info["counts"]["llm_calls"] == 4
    finally:
        web.close()
        rec.close()
    # Both name the file: only the writer claims it, so the pipeline validates.
    spec = loads(f"""
[sources.gen]
type = "generator"
[sinks.rec]
type = "sqlite"
inputs = ["gen"]
path = "{db}"
[sinks.web]
type = "web"
inputs = ["gen"]
db = "{db}"
write = false
""")
    assert spec.components["web"].options["write"] is False
    assert WebSink.check_options({"write": False}) == ["write = false needs db: the recording another sink writes"]
