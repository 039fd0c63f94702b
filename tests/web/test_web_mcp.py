"""MCP in the web UI, over a recording made by the mcp stage's logic (tests/mcp_recording.py): the
counts, the LLM call detail (the tool call that ran as an MCP call, the result that came from one),
the process tree (MCP calls under their server, one in full with the thread back to the model),
the timeline's MCP kind. Screenshots go to $AGENTSIGHT_ARTIFACTS/web."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mcp_recording import SERVER, TOOL_USE, session_events
from tests.web.conftest import Served, open_view, screenshot, serve, wait_js
from tests.web.recording import write
from tests.web.test_web_api import get


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db: Path = write(tmp_path_factory.mktemp("mcp") / "mcp.db", session_events())
    s = serve(db)
    yield s
    s.thread.stop()


def test_api_ties_each_mcp_call_to_the_llm_calls(mcp_server):
    status, _, info = get(mcp_server.url + "/api/info")
    assert status == 200 and info["counts"]["mcp_calls"] == 6
    _, _, body = get(mcp_server.url + "/api/mcp/calls")
    calls = body["calls"]
    assert len(calls) == 6 and body["summary"]["linked"] == 1 and body["summary"]["garbage_lines"] == 1
    (read,) = [c for c in calls if c["tool"] == "read_text_file"]
    assert (read["asked_by_llm_id"], read["result_in_llm_id"], read["tool_call_id"]) == (1, 2, TOOL_USE)
    assert read["pid"] == SERVER and read["server"] == "secure-filesystem-server" and read["result"] == "buy milk"
    search = [c for c in calls if c["tool"] == "search"]
    assert [c["status"] for c in search] == ["ok", "error"] and search[1]["error"] == "empty query"
    assert all(c["pid"] == 4242 and c["transport"] == "http" for c in search)
    _, _, only = get(mcp_server.url + f"/api/mcp/calls?pid={SERVER}")
    assert [c["method"] for c in only["calls"]] == ["initialize", "tools/call", "tools/call"]


def test_the_llm_call_detail_shows_the_mcp_thread(mcp_server, page):
    open_view(page, mcp_server.url + "/llm?id=1", "llm")
    wait_js(page, "document.querySelector('#llm-mcp .mcp-link')")
    link = page.inner_text("#llm-mcp .mcp-link")
    assert "tool call mcp__filesystem__read_text_file" in link and TOOL_USE in link
    assert "ran as secure-filesystem-server · read_text_file" in link and "ok" in link and "buy milk" in link
    assert page.text_content("#llm-stat-mcp") == "6MCP calls"
    assert page.inner_text("#meta-mcp") == "6"
    screenshot(page, "llm-mcp")
    page.click("#llm-table tbody tr:nth-child(2)")
    wait_js(page, "document.querySelector('#llm-mcp .mcp-link[data-how=result]')")
    assert "came from secure-filesystem-server · read_text_file" in page.inner_text("#llm-mcp")
    assert "asked in LLM call #1" in page.inner_text("#llm-mcp")
    assert not page.errors


def test_the_process_tree_shows_mcp_calls_under_their_server(mcp_server, page):
    open_view(page, mcp_server.url + "/processes", "processes")
    wait_js(page, f"document.querySelector('#proc-tree .node-row[data-pid=\"{SERVER}\"]')")
    assert page.inner_text(f'#proc-tree .node-row[data-pid="{SERVER}"] .pill.mcp') == "3 MCP"
    rows = page.evaluate("[...document.querySelectorAll('#proc-tree .act-row[data-mcp]')].map(r => r.innerText)")
    assert len(rows) == 6  # 3 under the stdio server, 3 HTTP ones under the agent
    page.click("#proc-tree .act-row[data-mcp]:has-text('read_text_file')")
    wait_js(page, "document.getElementById('mcp-thread')")
    thread = page.inner_text("#mcp-thread")
    assert "Asked for by the model as mcp__filesystem__read_text_file" in thread and "LLM call #1" in thread
    assert "Its result went back to the model in LLM call #2" in thread
    detail = page.inner_text("#proc-detail")
    assert "/home/dev/project/notes.txt" in detail and "buy milk" in detail and "claude-code" in detail
    screenshot(page, "processes-mcp")
    page.click("#mcp-thread a[href='/llm?id=2']")
    wait_js(page, "location.pathname === '/llm' && document.querySelector('#llm-mcp')")
    assert not page.errors


def test_a_deep_link_opens_one_mcp_call(mcp_server, page):
    _, _, body = get(mcp_server.url + "/api/mcp/calls")
    unanswered = next(c for c in body["calls"] if c["status"] == "no_reply")
    open_view(page, mcp_server.url + f"/processes?mcp={unanswered['event_id']}", "processes")
    wait_js(page, f"document.querySelector('#mcp-detail[data-event=\"{unanswered['event_id']}\"]')")
    text = page.inner_text("#proc-detail")
    assert "list_directory" in text and "no_reply" in text and "no reply: the server exited (exit code 1)" in text


def test_the_timeline_has_an_mcp_kind(mcp_server, page):
    open_view(page, mcp_server.url + "/timeline", "timeline")
    chip = wait_js(page, "document.querySelector('.chip.k-mcp') && document.querySelector('.chip.k-mcp').innerText")
    assert chip.startswith("mcp") and chip.endswith("8")  # 6 calls, 2 session ends
