"""The thread from an LLM's tool call to the MCP call that ran it and back (agentsight.analysis.mcplink),
through the stage (agentsight.analysis.mcp.McpCalls): in both arrival orders, from history, by name only,
never across sessions; and the OpenTelemetry hook."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentsight.analysis.mcp import McpCalls, span_attributes, span_name
from agentsight.analysis.mcplink import llm_key, same_arguments, tool_name_matches
from agentsight.event import Event

MS = 1_000_000
SESSION = "4242@1"


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def llm(seq: int, ts: int, *, asks: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
        history: list[dict[str, Any]] | None = None, session: str = SESSION) -> Event:
    d = {"conn": "4242:7f00", "seq": seq, "ws_index": None, "response_id": f"msg_{seq}", "model": "claude-x",
         "ts_request_start_ns": ts * MS, "messages": history or [],
         "tool_calls": [{"id": i, "name": n, "arguments": json.dumps(a), "input": a} for i, n, a in asks],
         "session": session, "agent": "claude-code"}
    return Event("llm.call", (ts + 50) * MS, "llm", 4242, 4243, "claude", d)


def rpc(pid: int, fd: int, msg: dict[str, Any], ts: int, session: str = SESSION) -> Event:
    data = json.dumps(msg).encode() + b"\n"
    return Event("stdio.data", ts * MS, "stdio", pid, pid, "node",
                 {"fd": fd, "dir": "read" if fd == 0 else "write", "bytes": data, "len": len(data),
                  "session": session, "agent": "claude-code"})


def tool_run(rid: int, tool: str, args: dict[str, Any], ts: int, pid: int = 77,
             session: str = SESSION) -> list[Event]:
    return [rpc(pid, 0, {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                         "params": {"name": tool, "arguments": args}}, ts, session),
            rpc(pid, 1, {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "ok"}]}},
                ts + 3, session)]


def result_part(tid: str) -> dict[str, Any]:
    return {"role": "user", "content": "", "parts": [{"type": "tool_result", "id": tid, "content": "ok"}]}


def call_part(tid: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "parts": [
        {"type": "tool_call", "id": tid, "name": name, "arguments": json.dumps(args), "input": args}]}


def feed(calls: McpCalls, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        out += calls.feed(e)
    return out


def mcp_calls(out: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in out if e.topic == "mcp.call"]


ARGS = {"path": "/work/README.md"}


def test_asked_then_ran_then_answered():
    calls = McpCalls()
    a = llm(0, 100, asks=[("toolu_1", "mcp__fs__read_file", ARGS)])
    assert feed(calls, [a]) == []
    (m,) = mcp_calls(feed(calls, tool_run(1, "read_file", ARGS, 200)))
    assert m["llm"] == {"tool_call_id": "toolu_1", "tool_name": "mcp__fs__read_file", "match": "name+arguments",
                        "asked_by": {"key": "4242:7f00#0", "conn": "4242:7f00", "seq": 0, "ws_index": None,
                                     "response_id": "msg_0", "model": "claude-x", "pid": 4242, "ts_ns": 150 * MS}}
    b = llm(1, 300, history=[call_part("toolu_1", "mcp__fs__read_file", ARGS), result_part("toolu_1")])
    feed(calls, [b])
    assert b.data["mcp"] == {"tool_results": [{"tool_call_id": "toolu_1", "mcp_call": m["call_id"],
                                               "tool": "read_file", "asked_by": "4242:7f00#0"}]}
    # The call after that repeats the history: it is not the one that carried the result.
    c = llm(2, 400, history=[call_part("toolu_1", "mcp__fs__read_file", ARGS), result_part("toolu_1")])
    feed(calls, [c])
    assert "mcp" not in c.data
    assert calls.stats.linked_tool_calls == 1


def test_the_asking_call_reaching_the_stage_after_the_run():
    clock = Clock()
    calls = McpCalls(link_wait_s=3, clock=clock)
    assert feed(calls, tool_run(1, "read_file", ARGS, 200)) == []  # held: its asker may still come
    a = llm(0, 100, asks=[("toolu_1", "mcp__fs__read_file", ARGS), ("toolu_2", "Bash", {"command": "ls"})])
    (m,) = mcp_calls(feed(calls, [a]))
    assert m["llm"]["tool_call_id"] == "toolu_1" and m["llm"]["asked_by"]["key"] == "4242:7f00#0"
    assert a.data["mcp"] == {"tool_calls": [{"tool_call_id": "toolu_1", "mcp_call": m["call_id"]}]}


def test_a_run_nobody_asked_for_goes_out_after_the_wait():
    clock = Clock()
    calls = McpCalls(link_wait_s=3, clock=clock)
    assert feed(calls, tool_run(1, "read_file", ARGS, 200)) == []
    clock.t = 2.9
    assert calls.tick() == []
    clock.t = 3.0
    (m,) = mcp_calls(calls.tick())
    assert m["llm"] is None and m["tool"] == "read_file"


def test_without_a_wait_runs_go_out_at_once():
    (m,) = mcp_calls(feed(McpCalls(link_wait_s=0), tool_run(1, "read_file", ARGS, 200)))
    assert m["llm"] is None


def test_the_asker_not_captured_the_history_tells():
    clock = Clock()
    calls = McpCalls(link_wait_s=3, clock=clock)
    assert feed(calls, tool_run(1, "read_file", ARGS, 200)) == []
    b = llm(1, 300, history=[call_part("toolu_9", "read_file", ARGS), result_part("toolu_9")])
    (m,) = mcp_calls(feed(calls, [b]))
    assert m["llm"]["tool_call_id"] == "toolu_9" and m["llm"]["asked_by"] is None
    assert b.data["mcp"]["tool_results"][0]["mcp_call"] == m["call_id"]


def test_same_tool_twice_links_by_arguments():
    calls = McpCalls()
    feed(calls, [llm(0, 100, asks=[("t1", "mcp__fs__read_file", {"path": "a"}),
                                   ("t2", "mcp__fs__read_file", {"path": "b"})])])
    second = mcp_calls(feed(calls, tool_run(1, "read_file", {"path": "b"}, 200)))
    first = mcp_calls(feed(calls, tool_run(2, "read_file", {"path": "a"}, 210)))
    assert second[0]["llm"]["tool_call_id"] == "t2" and first[0]["llm"]["tool_call_id"] == "t1"


def test_name_only_when_the_agent_changed_the_arguments():
    calls = McpCalls()
    feed(calls, [llm(0, 100, asks=[("t1", "fs__read_file", {"path": "README.md"})])])
    (m,) = mcp_calls(feed(calls, tool_run(1, "read_file", {"path": "/work/README.md"}, 200)))
    assert m["llm"]["tool_call_id"] == "t1" and m["llm"]["match"] == "name"


def test_never_across_sessions_nor_before_the_ask():
    clock = Clock()
    calls = McpCalls(link_wait_s=1, clock=clock)
    feed(calls, [llm(0, 100, asks=[("t1", "read_file", ARGS)], session="other@1")])
    assert feed(calls, tool_run(1, "read_file", ARGS, 200)) == []
    clock.t = 5
    (m,) = mcp_calls(calls.tick())
    assert m["llm"] is None
    # A run that started well before the request that asked for it is not its answer.
    calls = McpCalls(link_wait_s=0)
    feed(calls, [llm(0, 5000, asks=[("t1", "read_file", ARGS)])])
    (m,) = mcp_calls(feed(calls, tool_run(1, "read_file", ARGS, 200)))
    assert m["llm"] is None


def test_a_tool_use_id_in_the_request_meta_decides():
    """Claude Code names the model's tool-use id in params._meta: that link, whatever the names and arguments."""
    clock = Clock()
    calls = McpCalls(link_wait_s=3, clock=clock)
    feed(calls, [llm(0, 100, asks=[("toolu_A", "mcp__fs__read_file", {"path": "a"}),
                                   ("toolu_B", "mcp__fs__read_file", {"path": "a"})])])
    run = [rpc(77, 0, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "read_file", "arguments": {"path": "/abs/a"}, "_meta": {"claudecode/toolUseId": "toolu_B"}}}, 200),
           rpc(77, 1, {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, 203)]
    (m,) = mcp_calls(feed(calls, run))
    assert m["llm"]["tool_call_id"] == "toolu_B" and m["llm"]["match"] == "tool_use_id"
    # One naming an id no model asked for (yet) is not guessed by name.
    run2 = [rpc(77, 0, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "read_file", "arguments": {"path": "a"}, "_meta": {"toolCallId": "call_later"}}}, 300),
            rpc(77, 1, {"jsonrpc": "2.0", "id": 2, "result": {"content": []}}, 303)]
    assert feed(calls, run2) == []
    (m2,) = mcp_calls(feed(calls, [llm(1, 400, history=[call_part("call_later", "read_file", {"path": "a"}),
                                                        result_part("call_later")])]))
    assert m2["llm"]["tool_call_id"] == "call_later" and m2["llm"]["match"] == "tool_use_id"


@pytest.mark.parametrize("llm_name,tool,ok", [
    ("read_file", "read_file", True), ("mcp__filesystem__read_file", "read_file", True),
    ("filesystem__read_file", "read_file", True), ("fs.read_file", "read_file", True),
    ("mcp_filesystem_read_file", "read_file", True), ("read_file_v2", "read_file", False),
    ("myread_file", "read_file", False), ("Read", "read_file", False), (None, "read_file", False),
])
def test_tool_names(llm_name, tool, ok):
    assert tool_name_matches(llm_name, tool) is ok


def test_arguments_and_keys():
    assert same_arguments('{"a": 1}', {"a": 1}) and same_arguments(None, {}) and same_arguments("", None)
    assert not same_arguments({"a": 1}, {"a": 2})
    assert llm_key({"conn": "1:a", "seq": 3}) == "1:a#3"
    assert llm_key({"conn": "1:a", "seq": 3, "ws_index": 2}) == "1:a#3.2"
    assert llm_key({"conn": None, "seq": 3}) is None


def test_span_attributes_of_a_linked_tool_call():
    calls = McpCalls()
    feed(calls, [llm(0, 100, asks=[("toolu_1", "mcp__fs__read_file", ARGS)])])
    (m,) = mcp_calls(feed(calls, tool_run(1, "read_file", ARGS, 200)))
    assert span_name(m) == "execute_tool read_file"
    attrs = span_attributes(m)
    assert attrs["gen_ai.operation.name"] == "execute_tool" and attrs["gen_ai.tool.call.id"] == "toolu_1"
    assert attrs["mcp.method.name"] == "tools/call" and attrs["jsonrpc.request.id"] == "1"
    assert attrs["network.transport"] == "pipe" and json.loads(attrs["gen_ai.tool.call.arguments"]) == ARGS
    assert "error.type" not in attrs
    failed = {**m, "status": "error", "error": {"code": -32602, "message": "bad"}, "tool": None}
    assert span_name(failed) == "tools/call" and span_attributes(failed)["error.type"] == "-32602"
