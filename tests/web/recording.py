"""Recordings for the web UI's tests and benchmark, made with Store.add from realistic events.

:func:`agent_session` is one Claude Code session fixing a failing test: the agent,
its tool runs (bash, pytest, git, rg, an MCP server over stdio) with exit codes, the
files they open, the connections they make, four LLM calls with prompts, answers,
tool calls and usage, TLS records, resource samples. :func:`big_session` scales
the same shapes to any number of events (the 50,000-event benchmark).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from agentsight.analysis.llm import extract_call
from agentsight.event import Event
from agentsight.recording.store import Store

T0 = 1_773_482_400_000_000_000  # 2026-03-14 10:00:00 UTC
MS = 1_000_000
S = 1_000_000_000

AGENT_PID = 4242
SYSTEM_PROMPT = ("You are Claude Code, Anthropic's official CLI for Claude. You are an interactive CLI tool "
                 "that helps users with software engineering tasks. Use the tools available to you.")
TOOLS = [
    {"name": "Bash", "description": "Run a shell command and return its output.",
     "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
    {"name": "Read", "description": "Read a file from the local filesystem.",
     "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
    {"name": "Edit", "description": "Replace a string in a file.",
     "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}, "old_string": {"type": "string"},
                                                     "new_string": {"type": "string"}}}},
]
USER_TASK = "The test test_parse_duration fails. Find out why and fix it."
# A string only one event holds (the log search test looks for it).
NEEDLE = "zebra-quartz-7f3a"


def _exec(ts: int, pid: int, ppid: int, comm: str, argv: list[str], session: str) -> list[Event]:
    return [
        Event("process.fork", ts, "process", pid, pid, comm, {"ppid": ppid, "child_pid": pid, "parent_tid": ppid,
                                                             "session": session, "agent": "claude-code"}),
        Event("process.exec", ts + 200_000, "process", pid, pid, comm,
              {"ppid": ppid, "filename": f"/usr/bin/{argv[0]}", "argv": argv, "argv_truncated": False,
               "uid": 1000, "session": session, "agent": "claude-code"}),
    ]


def _exit(ts: int, pid: int, ppid: int, comm: str, code: int, start: int, session: str) -> Event:
    return Event("process.exit", ts, "process", pid, pid, comm,
                 {"ppid": ppid, "exit_code": code, "signal": 0, "signal_name": None,
                  "duration_ms": (ts - start) / MS, "session": session, "agent": "claude-code"})


def _open(ts: int, pid: int, comm: str, path: str, session: str, flags: int = 0) -> Event:
    return Event("file.open", ts, "process", pid, pid, comm,
                 {"path": path, "flags": flags, "flag_names": ["O_RDONLY"] if not flags else ["O_WRONLY", "O_TRUNC"],
                  "mode": 0, "dfd": -100, "ret": 3, "count": 1, "repeat": False, "session": session,
                  "agent": "claude-code"})


def _llm(ts_start: int, n: int, messages: list[dict[str, Any]], answer: str, tool_calls: list[dict[str, Any]],
         usage: tuple[int, int, int], session: str, conn: str) -> list[Event]:
    """An ssl write/read pair, the http.exchange and the llm.call of one request."""
    inp, out, cache = usage
    ttft = 420 + 37 * n
    dur = 1800 + 650 * n
    ts_end = ts_start + dur * MS
    body = json.dumps({"model": "claude-sonnet-4-5", "system": SYSTEM_PROMPT, "messages": [
        {"role": m["role"], "content": m["content"]} for m in messages], "stream": True}).encode()
    data = {
        "api": "anthropic.messages", "provider": "anthropic", "host": "api.anthropic.com",
        "endpoint": "/v1/messages", "stream": True, "status_code": 200,
        "model_requested": "claude-sonnet-4-5", "model": "claude-sonnet-4-5-20250929",
        "response_id": f"msg_01ABCDEF{n:04d}", "system": SYSTEM_PROMPT, "messages": messages, "tools": TOOLS,
        "output_text": answer, "reasoning": None, "tool_calls": tool_calls,
        "stop_reason": "tool_use" if tool_calls else "end_turn", "error": None,
        "usage": {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache, "cache_write_tokens": 0,
                  "reasoning_tokens": None, "uncached_input_tokens": inp - cache, "total_tokens": inp + out,
                  "raw": {"input_tokens": inp - cache, "cache_read_input_tokens": cache, "output_tokens": out}},
        "cost": {"currency": "USD", "total": round((inp - cache) * 3e-6 + cache * 3e-7 + out * 15e-6, 6),
                 "input": round((inp - cache) * 3e-6 + cache * 3e-7, 6), "output": round(out * 15e-6, 6),
                 "model_ref": "claude-sonnet-4-5", "provider_ref": "anthropic", "price_source": "genai-prices 0.2.3"},
        "stream_events": 40 + n, "user_agent": "claude-cli/2.0.14 (external, cli)", "conn": conn, "seq": n,
        "ts_request_start_ns": ts_start, "ts_first_byte_ns": ts_start + (ttft - 30) * MS,
        "ts_first_token_ns": ts_start + ttft * MS, "ts_end_ns": ts_end, "ttft_ms": float(ttft),
        "duration_ms": float(dur), "notes": [], "session": session, "agent": "claude-code",
    }
    request = b"POST /v1/messages HTTP/1.1\r\nhost: api.anthropic.com\r\ncontent-type: application/json\r\n\r\n" + body
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: message_start\r\n"
             b"data: {\"type\":\"message_start\"}\r\n\r\n")
    pid, comm = AGENT_PID, "claude"
    return [
        Event("ssl.data", ts_start, "ssl", pid, pid + 3, comm,
              {"conn": conn, "dir": "write", "func": "SSL_write", "len": len(request), "bytes": request,
               "truncated": 0, "latency_ns": 41_000, "uid": 1000, "session": session, "agent": "claude-code"}),
        Event("ssl.data", ts_start + ttft * MS, "ssl", pid, pid + 3, comm,
              {"conn": conn, "dir": "read", "func": "SSL_read", "len": len(reply), "bytes": reply, "truncated": 0,
               "latency_ns": 12_000, "uid": 1000, "session": session, "agent": "claude-code"}),
        Event("http.exchange", ts_end, "http", pid, pid + 3, comm,
              {"host": "api.anthropic.com", "conn": conn, "seq": n,
               "request": {"method": "POST", "path": "/v1/messages", "host": "api.anthropic.com"},
               "response": {"status_code": 200, "reason": "OK", "content_type": "text/event-stream"},
               "ts_request_start_ns": ts_start, "ts_response_first_byte_ns": ts_start + (ttft - 30) * MS,
               "ts_response_end_ns": ts_end, "duration_ns": dur * MS, "session": session, "agent": "claude-code"}),
        Event("llm.call", ts_end, "llm", pid, pid + 3, comm, data),
    ]


def agent_session(t0: int = T0) -> list[Event]:
    """One agent session, in time order."""
    sid = f"{AGENT_PID}@{t0}"
    out: list[Event] = []
    ev = out.append
    out += _exec(t0, AGENT_PID, 4000, "claude", ["claude", "-p", USER_TASK], sid)
    ev(Event("session.start", t0 + 300_000, "sessions", AGENT_PID, AGENT_PID, "claude",
             {"session": sid, "agent": "claude-code", "pid": AGENT_PID, "start_ns": t0, "parent": None,
              "pids": [AGENT_PID], "exe": "/usr/bin/claude", "argv": ["claude", "-p", USER_TASK], "comm": "claude"}))
    for i, path in enumerate(["/home/dev/project/CLAUDE.md", "/home/dev/.claude/settings.json",
                              "/home/dev/project/.gitignore"]):
        ev(_open(t0 + (5 + i) * MS, AGENT_PID, "claude", path, sid))
    ev(Event("net.connect", t0 + 30 * MS, "process", AGENT_PID, AGENT_PID + 3, "claude",
             {"family": "AF_INET", "address": "160.79.104.10", "port": 443, "fd": 21, "ret": 0, "session": sid,
              "agent": "claude-code"}))
    conn = f"{AGENT_PID}:7f3a2c001a40"
    msgs: list[dict[str, Any]] = [{"role": "user", "content": USER_TASK, "parts": [{"type": "text", "text": USER_TASK}]}]

    def call(n: int, ts: int, answer: str, tool: dict[str, Any] | None, usage: tuple[int, int, int]) -> int:
        calls = [tool] if tool else []
        out.extend(_llm(ts, n, list(msgs), answer, calls, usage, sid, conn))
        parts: list[dict[str, Any]] = [{"type": "text", "text": answer}] if answer else []
        parts += [{"type": "tool_call", **c} for c in calls]
        msgs.append({"role": "assistant", "content": answer, "parts": parts})
        return ts + (1800 + 650 * n) * MS

    def tool_result(tid: str, text: str, error: bool = False) -> None:
        msgs.append({"role": "user", "content": "", "parts": [
            {"type": "tool_result", "id": tid, "content": text, "is_error": error}]})

    def run(pid: int, ppid: int, comm: str, argv: list[str], start: int, dur_ms: int, code: int,
            files: list[str]) -> int:
        out.extend(_exec(start, pid, ppid, comm, argv, sid))
        for k, f in enumerate(files):
            ev(_open(start + (k + 1) * 2 * MS, pid, comm, f, sid))
        end = start + dur_ms * MS
        ev(_exit(end, pid, ppid, comm, code, start, sid))
        return end

    t = t0 + 60 * MS
    t = call(0, t, "I'll run the test suite to see the failure.",
             {"id": "toolu_01", "name": "Bash", "arguments": '{"command": "pytest -q tests/test_duration.py"}',
              "input": {"command": "pytest -q tests/test_duration.py"}}, (3120, 41, 0))
    sh = run(4301, AGENT_PID, "bash", ["bash", "-c", "pytest -q tests/test_duration.py"], t + 5 * MS, 1450, 1,
             ["/etc/profile"])
    run(4302, 4301, "pytest", ["python3", "-m", "pytest", "-q", "tests/test_duration.py"], t + 9 * MS, 1400, 1,
        ["/home/dev/project/tests/test_duration.py", "/home/dev/project/src/duration.py",
         "/home/dev/project/pyproject.toml"])
    for k in range(2):
        ev(Event("stdio.data", t + (300 + 200 * k) * MS, "stdio", 4302, 4302, "pytest",
                 {"fd": 1, "dir": "write", "bytes": b"F" if k else b"tests/test_duration.py ", "len": 1 + 22 * (1 - k),
                  "truncated": False, "session": sid, "agent": "claude-code"}))
    tool_result("toolu_01", "FAILED tests/test_duration.py::test_parse_duration - assert 90 == 5400", True)
    t = call(1, sh + 40 * MS, "The parser treats minutes as seconds. Let me read it.",
             {"id": "toolu_02", "name": "Read", "arguments": '{"file_path": "src/duration.py"}',
              "input": {"file_path": "src/duration.py"}}, (4410, 38, 3072))
    ev(_open(t + 3 * MS, AGENT_PID, "claude", "/home/dev/project/src/duration.py", sid))
    rg = run(4310, AGENT_PID, "rg", ["rg", "-n", "parse_duration", "src"], t + 20 * MS, 85, 0,
             ["/home/dev/project/src/duration.py", "/home/dev/project/src/cli.py"])
    mcp = run(4320, AGENT_PID, "node", ["node", "mcp-server-filesystem", "/home/dev/project"], rg + 10 * MS, 2600, 0,
              ["/home/dev/project/package.json"])
    for k, (d, payload) in enumerate([
            ("read", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_directory"}}'),
            ("write", b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"' + NEEDLE.encode()
             + b' src tests"}]}}')]):
        ev(Event("stdio.data", rg + (200 + 300 * k) * MS, "stdio", 4320, 4320, "node",
                 {"fd": 0 if d == "read" else 1, "dir": d, "bytes": payload, "len": len(payload), "truncated": False,
                  "session": sid, "agent": "claude-code"}))
    tool_result("toolu_02", "def parse_duration(s):\n    return int(s[:-1]) * (60 if s.endswith('m') else 1)")
    t = call(2, mcp + 30 * MS, "Found it: the hour suffix is missing. Fixing the multiplier.",
             {"id": "toolu_03", "name": "Edit", "arguments": '{"file_path": "src/duration.py"}',
              "input": {"file_path": "src/duration.py", "old_string": "60 if", "new_string": "3600 if s.endswith('h') else 60 if"}},
             (4980, 112, 4096))
    ev(_open(t + 4 * MS, AGENT_PID, "claude", "/home/dev/project/src/duration.py", sid, flags=0o1001))
    tool_result("toolu_03", "The file src/duration.py has been updated.")
    sh2 = run(4330, AGENT_PID, "bash", ["bash", "-c", "pytest -q && git status --short"], t + 30 * MS, 1700, 0, [])
    run(4331, 4330, "pytest", ["python3", "-m", "pytest", "-q"], t + 35 * MS, 1300, 0,
        ["/home/dev/project/tests/test_duration.py", "/home/dev/project/src/duration.py"])
    run(4332, 4330, "git", ["git", "status", "--short"], t + 1400 * MS, 60, 0,
        ["/home/dev/project/.git/HEAD", "/home/dev/project/.git/index"])
    tool_result("toolu_01", "3 passed in 0.41s\n M src/duration.py")
    t = call(3, sh2 + 50 * MS, "Fixed: `parse_duration` now handles hours (`h`) as 3600 s. All 3 tests pass.",
             None, (5230, 64, 4864))
    for k in range(int((t - t0) / S) + 1):
        ev(Event("system.sample", t0 + k * S + 500 * MS, "system", AGENT_PID, AGENT_PID, "claude",
                 {"scope": "tree", "pids": [AGENT_PID], "cpu_percent": 12.0 + 9 * (k % 3), "rss_bytes": (210 + 6 * k) << 20,
                  "threads": 14, "processes": 2 + k % 3, "children": 1 + k % 3, "alerts": [], "session": sid,
                  "agent": "claude-code"}))
    end = t + 40 * MS
    ev(_exit(end, AGENT_PID, 4000, "claude", 0, t0, sid))
    ev(Event("session.end", end + 100_000, "sessions", AGENT_PID, AGENT_PID, "claude",
             {"session": sid, "agent": "claude-code", "pid": AGENT_PID, "start_ns": t0, "end_ns": end, "parent": None,
              "pids": [AGENT_PID, 4301, 4302, 4310, 4320, 4330, 4331, 4332], "exit_code": 0}))
    out.sort(key=lambda e: e.ts_ns)
    return out


def bare_llm_call(ts: int, pid: int = AGENT_PID, comm: str = "claude") -> Event:
    """An ``llm.call`` with the fields a real capture leaves empty: a tool-less request that the
    server refused with a body that is not JSON (no answer, no usage, no cost, no TTFT, no notes),
    built by the llm stage itself from the exchange."""
    body = json.dumps({"model": "gpt-5.5", "input": "Say hi", "stream": False}).encode()
    exchange = {
        "host": "api.openai.com", "conn": f"{pid}:7f3a2c00bbbb", "seq": 0,
        "request": {"method": "POST", "path": "/v1/responses", "host": "api.openai.com",
                    "headers": [["content-type", "application/json"]], "body": body},
        "response": {"status_code": 502, "reason": "Bad Gateway", "content_type": "text/html",
                     "body": b"<html>bad gateway</html>", "body_text": "<html>bad gateway</html>", "complete": True},
        "ts_request_start_ns": ts - 80 * MS, "ts_response_first_byte_ns": ts, "ts_response_end_ns": ts,
    }
    record = extract_call(exchange, prices=False)
    assert record is not None
    return Event("llm.call", ts, "llm", pid, pid + 3, comm, record)


def llm_calls_over(span_ns: int, n: int = 12, t0: int = T0) -> list[Event]:
    """``n`` LLM calls of one agent whose answers end evenly over ``span_ns`` (for the tokens chart)."""
    sid = f"{AGENT_PID}@{t0}"
    out = _exec(t0 - S, AGENT_PID, 4000, "claude", ["claude"], sid)
    conn = f"{AGENT_PID}:7f3a2c001a40"
    msgs = [{"role": "user", "content": USER_TASK, "parts": [{"type": "text", "text": USER_TASK}]}]
    for i in range(n):
        end = t0 + span_ns * i // max(1, n - 1)
        out += _llm(end - (1800 + 650 * i) * MS, i, msgs, "Done.", [], (3000 + 400 * i, 40 + i, 2048), sid, conn)
    out.sort(key=lambda e: e.ts_ns)
    return out


def write(path: Path, events: list[Event]) -> Path:
    store = Store(path)
    try:
        for i in range(0, len(events), 5000):
            store.add(events[i:i + 5000])
    finally:
        store.close()
    return path


def lane_counts(events: list[Event]) -> Counter[tuple[int, str]]:
    """Events per (pid, source) lane: what the timeline must show."""
    return Counter((e.pid, e.source) for e in events)


def big_session(n: int = 50_000, seed: int = 7) -> list[Event]:
    """About ``n`` events: agent sessions back to back plus busy tool processes over ~10 minutes."""
    rng = random.Random(seed)
    out: list[Event] = []
    t = T0
    while len(out) < n // 4:
        session = agent_session(t)
        out += session
        t = session[-1].ts_ns + 2 * S
    span = max(t - T0, 600 * S)
    pids = list(range(5000, 5040))
    comms = ["node", "python3", "cargo", "rg", "git", "npm", "make", "cc1"]
    for pid in pids:
        start = T0 + rng.randrange(span // 2)
        comm = rng.choice(comms)
        out += _exec(start, pid, AGENT_PID, comm, [comm, "--job", str(pid)], f"{AGENT_PID}@{T0}")
        out.append(_exit(start + rng.randrange(span // 2), pid, AGENT_PID, comm, rng.choice([0, 0, 0, 1, 2]), start,
                         f"{AGENT_PID}@{T0}"))
    while len(out) < n:
        pid = rng.choice(pids)
        ts = T0 + rng.randrange(span)
        r = rng.random()
        if r < 0.55:
            out.append(_open(ts, pid, "worker", f"/home/dev/project/build/obj/{rng.randrange(4000)}.o", ""))
        elif r < 0.8:
            out.append(Event("stdio.data", ts, "stdio", pid, pid, "worker",
                             {"fd": 1, "dir": "write", "bytes": f"compiling unit {rng.randrange(9999)}\n".encode(),
                              "len": 22, "truncated": False}))
        elif r < 0.95:
            out.append(Event("net.connect", ts, "process", pid, pid, "worker",
                             {"family": "AF_INET", "address": f"10.0.{rng.randrange(4)}.{rng.randrange(250)}",
                              "port": 443, "fd": 7, "ret": 0}))
        else:
            out.append(Event("system.sample", ts, "system", pid, pid, "worker",
                             {"scope": "tree", "pids": [pid], "cpu_percent": rng.random() * 100,
                              "rss_bytes": rng.randrange(1 << 30), "threads": 4, "processes": 1}))
    out = out[:n]
    out.sort(key=lambda e: e.ts_ns)
    return out
