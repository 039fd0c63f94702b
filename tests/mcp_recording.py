"""A recorded agent session with MCP, for the report, top and web UI tests: made by running the
``mcp`` stage's logic (McpCalls) over the events an agent using two MCP servers produces.

Claude Code (pid 4242) asks the model, which asks for ``mcp__filesystem__read_text_file``; the agent
runs it on a filesystem server over stdio (pid 4320, ``npx`` launcher 4310), then sends the result back
in the next request; it also calls a remote server over streamable HTTP (``search``), whose second
call fails, and the stdio server's pipe carries one line of garbage. The server exits with a request
still waiting.
"""

from __future__ import annotations

import json
from typing import Any

from agentsight.analysis.mcp import McpCalls
from agentsight.event import Event

T0 = 1_773_482_400_000_000_000  # 2026-03-14 10:00:00 UTC
MS = 1_000_000
AGENT, LAUNCHER, SERVER = 4242, 4310, 4320
SESSION = f"{AGENT}@{T0}"
CONN = f"{AGENT}:7f3a2c001a40"
TOOL_USE = "toolu_01MCPREAD"
NOTES = "/home/dev/project/notes.txt"


def _ann(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "session": SESSION, "agent": "claude-code"}


def _proc(ts: int, pid: int, ppid: int, argv: list[str]) -> list[Event]:
    comm = argv[0].rsplit("/", 1)[-1][:15]
    return [Event("process.fork", ts, "process", pid, pid, comm, _ann({"ppid": ppid})),
            Event("process.exec", ts + MS, "process", pid, pid, comm,
                  _ann({"ppid": ppid, "filename": argv[0], "argv": argv, "uid": 1000}))]


def _llm(seq: int, ts: int, messages: list[dict[str, Any]], answer: str,
         tool_calls: list[dict[str, Any]]) -> Event:
    usage = {"input_tokens": 1200 + 300 * seq, "output_tokens": 40, "cache_read_tokens": 0, "cache_write_tokens": 0,
             "reasoning_tokens": None, "uncached_input_tokens": 1200 + 300 * seq, "total_tokens": 1240 + 300 * seq,
             "raw": {}}
    d = _ann({"api": "anthropic.messages", "provider": "anthropic", "host": "api.anthropic.com",
              "endpoint": "/v1/messages", "stream": True, "status_code": 200, "model_requested": "claude-sonnet-4-5",
              "model": "claude-sonnet-4-5", "response_id": f"msg_{seq}", "system": "You are Claude Code.",
              "messages": messages, "tools": [{"name": "mcp__filesystem__read_text_file", "description": "Read",
                                               "parameters": {"type": "object"}}],
              "output_text": answer, "reasoning": None, "tool_calls": tool_calls,
              "stop_reason": "tool_use" if tool_calls else "end_turn", "error": None, "usage": usage,
              "cost": {"currency": "USD", "total": 0.004, "input": 0.0036, "output": 0.0004, "model_ref": "x",
                       "provider_ref": "anthropic", "price_source": "genai-prices test"},
              "stream_events": 12, "user_agent": "claude-cli/2.1", "conn": CONN, "seq": seq,
              "ts_request_start_ns": ts, "ts_first_byte_ns": ts + 300 * MS, "ts_first_token_ns": ts + 320 * MS,
              "ts_end_ns": ts + 900 * MS, "ttft_ms": 320.0, "duration_ms": 900.0, "notes": []})
    return Event("llm.call", ts + 900 * MS, "llm", AGENT, AGENT + 3, "claude", d)


def _rpc(fd: int, msg: dict[str, Any] | bytes, ts: int) -> Event:
    data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
    return Event("stdio.data", ts, "stdio", SERVER, SERVER, "node",
                 _ann({"fd": fd, "dir": "read" if fd == 0 else "write", "bytes": data, "len": len(data),
                       "truncated": False}))


def _http(seq: int, ts: int, body: dict[str, Any], answer: dict[str, Any], status: int = 200) -> Event:
    req = {"method": "POST", "path": "/mcp", "host": "mcp.example.com", "target": "/mcp",
           "headers": [["mcp-session-id", "sess-7"], ["content-type", "application/json"]],
           "body": json.dumps(body).encode(), "body_size": len(json.dumps(body)), "content_type": "application/json"}
    resp = {"status_code": status, "reason": "OK", "headers": [["content-type", "application/json"]],
            "content_type": "application/json", "body": json.dumps(answer).encode(), "body_size": 10}
    return Event("http.exchange", ts + 80 * MS, "http", AGENT, AGENT + 5, "claude",
                 _ann({"conn": f"{AGENT}:9e00", "seq": seq, "host": "mcp.example.com", "request": req,
                       "response": resp, "ts_request_start_ns": ts, "ts_response_end_ns": ts + 80 * MS}))


def raw_events() -> list[Event]:
    """What the sources and the earlier stages give the mcp stage, in the order it sees them."""
    ev: list[Event] = [Event("session.start", T0, "sessions", AGENT, AGENT, "claude",
                             {"session": SESSION, "agent": "claude-code", "pid": AGENT, "start_ns": T0,
                              "parent": None, "pids": [AGENT], "exe": "/usr/bin/claude",
                              "argv": ["claude", "-p", "read the notes"], "comm": "claude"})]
    ev += _proc(T0, AGENT, 4000, ["/usr/bin/claude", "-p", "read the notes"])
    ev += _proc(T0 + 50 * MS, LAUNCHER, AGENT, ["/usr/bin/npx", "-y", "@modelcontextprotocol/server-filesystem"])
    ev += _proc(T0 + 90 * MS, SERVER, LAUNCHER, ["node", "/cache/server-filesystem/dist/index.js",
                                                 "/home/dev/project"])
    t = T0 + 200 * MS
    ev.append(_rpc(0, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "claude-code", "version": "2.1"}}},
        t))
    ev.append(_rpc(1, b"Secure MCP Filesystem Server running on stdio\n", t + 2 * MS))
    ev.append(_rpc(1, {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                             "serverInfo": {"name": "secure-filesystem-server",
                                                                            "version": "0.2.0"}}}, t + 5 * MS))
    ev.append(_http(0, t + 10 * MS, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "claude-code", "version": "2.1"}}},
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                               "serverInfo": {"name": "remote-search", "version": "1.0"}}}))
    user = {"role": "user", "content": "Read the notes.", "parts": [{"type": "text", "text": "Read the notes."}]}
    call = {"id": TOOL_USE, "name": "mcp__filesystem__read_text_file", "arguments": json.dumps({"path": NOTES}),
            "input": {"path": NOTES}}
    t = T0 + 400 * MS
    ask = _llm(0, t, [user], "Let me read them.", [call])
    run_at = t + 1000 * MS
    # The run's stdio records reach the stage before the asking call (its TLS path is longer).
    ev.append(_rpc(0, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "read_text_file", "arguments": {"path": NOTES}}}, run_at))
    ev.append(_rpc(1, {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "buy milk"}]}},
                   run_at + 12 * MS))
    ev.append(ask)
    for i, (q, ok) in enumerate([("agentsight", True), ("", False)]):
        body = {"jsonrpc": "2.0", "id": 2 + i, "method": "tools/call", "params": {"name": "search",
                                                                                 "arguments": {"q": q}}}
        answer = ({"jsonrpc": "2.0", "id": 2 + i, "result": {"content": [{"type": "text", "text": "3 hits"}]}} if ok
                  else {"jsonrpc": "2.0", "id": 2 + i, "error": {"code": -32602, "message": "empty query"}})
        ev.append(_http(1 + i, run_at + (100 + 50 * i) * MS, body, answer))
    history = [user, {"role": "assistant", "content": "Let me read them.", "parts": [
        {"type": "text", "text": "Let me read them."}, {"type": "tool_call", **call}]},
        {"role": "user", "content": "", "parts": [{"type": "tool_result", "id": TOOL_USE, "content": "buy milk"}]}]
    ev.append(_llm(1, run_at + 400 * MS, history, "The notes say: buy milk.", []))
    ev.append(_rpc(0, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "list_directory", "arguments": {"path": "/home/dev"}}}, run_at + 2000 * MS))
    ev.append(Event("process.exit", run_at + 2100 * MS, "process", SERVER, SERVER, "node",
                    _ann({"ppid": LAUNCHER, "exit_code": 1, "signal": 0, "duration_ms": 3000.0})))
    ev.append(Event("process.exit", run_at + 2200 * MS, "process", AGENT, AGENT, "claude",
                    _ann({"ppid": 4000, "exit_code": 0, "signal": 0, "duration_ms": 4000.0})))
    return ev


def session_events() -> list[Event]:
    """Everything the recording holds: the inputs (llm.call annotated) and the stage's records."""
    calls = McpCalls(link_wait_s=3.0, clock=lambda: 0.0)
    out: list[Event] = []
    for e in raw_events():
        out.append(e)
        out += calls.feed(e)
    out += calls.flush()
    return out


def mcp_records(events: list[Event], topic: str = "mcp.call") -> list[dict[str, Any]]:
    return [e.data for e in events if e.topic == topic]
