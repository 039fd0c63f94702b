"""MCP in the views: record's summary, `report prompts` (the chain), `top`, and `debug mcp`'s pretty lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentsight.commands.render import pretty
from agentsight.commands.topmodel import TopModel, format_plain
from agentsight.event import Event
from agentsight.recording.report import format_prompts, format_summary, mcp_summary, prompts, summary
from agentsight.recording.store import Store
from tests.mcp_recording import NOTES, TOOL_USE, mcp_records, session_events


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return session_events()


@pytest.fixture
def store(tmp_path: Path, events: list[Event]) -> Store:
    s = Store(tmp_path / "rec.db")
    s.add(events)
    return s


def test_summary_counts_mcp_calls_per_server(store):
    m = mcp_summary(store)
    assert (m["calls"], m["tool_calls"], m["failed"], m["unanswered"], m["linked"], m["garbage_lines"]) == (
        6, 4, 2, 1, 1, 1)
    servers = {g["server"]: g for g in m["servers"]}
    fs, remote = servers["secure-filesystem-server"], servers["remote-search"]
    assert (fs["transport"], fs["calls"], fs["tool_calls"], fs["failed"], fs["unanswered"], fs["garbage_lines"]) == (
        "stdio", 3, 2, 1, 1, 1)
    assert fs["tools"] == {"read_text_file": 1, "list_directory": 1} and fs["median_ms"] == 12.0
    assert (remote["transport"], remote["calls"], remote["failed"], remote["tools"]) == ("http", 3, 1, {"search": 2})
    text = format_summary(summary(store))
    assert ("MCP calls: 6 to 2 server(s), 4 tool call(s); 2 failed, 1 unanswered; 1 tied to the LLM call that asked"
            in text)
    assert "secure-filesystem-server  stdio" in text and "tools: search (2x), list_directory, read_text_file" in text
    assert "1 line(s) on MCP pipes were not JSON-RPC (counted and skipped)" in text


def test_a_recording_without_mcp_says_nothing_of_it(tmp_path):
    s = Store(tmp_path / "empty.db")
    s.add([Event("process.exec", 1, "process", 1, 1, "sh", {"argv": ["sh"]})])
    assert mcp_summary(s)["calls"] == 0 and "MCP" not in format_summary(summary(s))


def test_prompts_show_the_thread_from_tool_call_to_mcp_call_and_back(store):
    calls = prompts(store)
    asking, answered = calls
    (ran,) = asking["mcp_calls"]
    assert ran["tool_call_id"] == TOOL_USE and ran["server"] == "secure-filesystem-server"
    assert ran["tool"] == "read_text_file" and ran["status"] == "ok" and ran["latency_ms"] == 12.0
    (result,) = answered["mcp_results"]
    assert result["tool_call_id"] == TOOL_USE and result["mcp"]["call_id"] == ran["call_id"]
    assert result["asked_by"] == asking["key"]
    text = format_prompts(calls)
    assert (f'  tool call: mcp__filesystem__read_text_file({json.dumps({"path": NOTES})})\n'
            "    ran as MCP secure-filesystem-server (stdio) tools/call read_text_file: ok, 12.0 ms") in text
    assert (f"  tool result {TOOL_USE} came from MCP secure-filesystem-server (stdio) tools/call read_text_file: "
            "ok, 12.0 ms") in text


def test_top_counts_a_sessions_mcp_calls(events):
    m = TopModel()
    for e in events:
        m.feed(e)
    (row,) = m.rows.values()
    assert (row.mcp, row.mcp_failed) == (6, 2)
    text = format_plain(m.visible("mcp"))
    assert " 6 (2 failed) " in text and "mcp" in text.splitlines()[0]


def test_top_without_sessions_counts_stdio_calls_for_the_client():
    m = TopModel()
    m.feed(Event("llm.call", 1, "llm", 10, 10, "python3", {"model": "m", "usage": {}}))
    m.feed(Event("mcp.call", 2, "mcp", 11, 11, "node", {"client": {"pid": 10}, "status": "ok", "method": "ping",
                                                        "server": {"argv": ["node", "srv.js"]}}))
    (row,) = m.rows.values()
    assert row.mcp == 1 and row.last == "mcp node srv.js ping"


def test_debug_mcp_pretty_lines(events):
    tool = next(e for e in events if e.topic == "mcp.call" and e.data["tool"] == "read_text_file")
    line = pretty(tool)
    assert line.endswith(f"mcp.call node[4320] secure-filesystem-server tools/call read_text_file "
                         f'{{"path": "{NOTES}"}} -> ok 12.0ms buy milk [asked by claude-sonnet-4-5 {TOOL_USE}]')
    failed = next(e for e in events if e.topic == "mcp.call" and e.data["status"] == "error")
    assert pretty(failed).endswith('remote-search tools/call search {"q": ""} -> error 80.0ms error -32602: empty query')
    end = next(e for e in events if e.topic == "mcp.session.end" and e.data["transport"] == "stdio")
    assert pretty(end).endswith("secure-filesystem-server the server exited (exit code 1): 3 calls, 1 unanswered, "
                                "0 notifications, 1 garbage lines")
    assert mcp_records(events, "mcp.notification") == []


def test_the_mcp_stage_sits_between_sessions_and_redaction():
    from agentsight.pipeline.presets import Capture, build_spec

    def graph(cap: Capture) -> dict[str, list[str]]:
        return {n: c.inputs for n, c in build_spec(cap.pipeline()).components.items()}

    # record: stdio and TLS of the tree, LLM calls to link to (a tool call waits for its asker)
    cap = Capture(ssl=True, process=True, stdio=True, pid=42, tree=True, http=True, llm=True, sessions=True, mcp=True)
    g = graph(cap)
    assert g["sessions"] == ["llm", "stdio"] and g["mcp"] == ["sessions"] and g["redact"] == ["mcp"]
    assert cap.pipeline()["analyzers"]["mcp"]["link_wait_s"] == 3.0
    # stdio alone: nothing to link to, nothing to wait for
    cap = Capture(stdio=True, pid=42, mcp=True)
    assert graph(cap)["mcp"] == ["stdio"] and cap.pipeline()["analyzers"]["mcp"]["link_wait_s"] == 0.0
