"""MCP over stdio (agentsight.analysis.mcp.McpCalls): a real server's capture replayed whole and split,
garbage, cuts, exits, cancellations, redaction."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from agentsight.analysis.mcp import McpCalls, ProcInfo
from agentsight.event import Event
from agentsight.jsonform import event_from_json
from tests.mcp_oracle import assert_same_calls, read_log

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mcp"
KEY = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"
MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fixture_events() -> list[Event]:
    return [event_from_json(line) for line in (FIXTURES / "everything_stdio.jsonl").read_text().splitlines()]


def run(events: list[Event], calls: McpCalls | None = None, flush: bool = True) -> list[Event]:
    calls = calls or McpCalls(link_wait_s=0)
    out: list[Event] = []
    for e in events:
        out += calls.feed(e)
    if flush:
        out += calls.flush()
    return out


def split(events: list[Event], sizes: Any) -> list[Event]:
    """Each stdio.data event cut into pieces (sizes() gives each piece's length), as reads/writes that small."""
    out = []
    for e in events:
        if e.topic != "stdio.data":
            out.append(e)
            continue
        data, i = e.data["bytes"], 0
        while i < len(data):
            n = sizes()
            piece = data[i:i + n]
            out.append(Event(e.topic, e.ts_ns, e.source, e.pid, e.tid, e.comm,
                             {**e.data, "bytes": piece, "len": len(piece)}))
            i += n
    return out


def records(out: list[Event], topic: str = "mcp.call") -> list[dict[str, Any]]:
    return [e.data for e in out if e.topic == topic]


def stdio(pid: int, fd: int, data: bytes, ts: int, length: int | None = None, comm: str = "node") -> Event:
    direction = "read" if fd == 0 else "write"
    return Event("stdio.data", ts * MS, "stdio", pid, pid, comm,
                 {"fd": fd, "dir": direction, "bytes": data, "len": len(data) if length is None else length,
                  "truncated": length is not None and length > len(data)})


def line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode() + b"\n"


def exec_(pid: int, ppid: int, argv: list[str], ts: int = 1) -> Event:
    return Event("process.exec", ts, "process", pid, pid, argv[0].rsplit("/", 1)[-1][:15],
                 {"ppid": ppid, "filename": argv[0], "argv": argv})


def test_a_real_server_capture_gives_every_call_the_client_made():
    out = run(fixture_events())
    calls = records(out)
    n = assert_same_calls(read_log(FIXTURES / "everything_client.jsonl"), calls)
    assert n == len(calls) == 16
    # Both directions: the server asked the client for a sampling and for its roots.
    assert {(c["direction"], c["method"]) for c in calls} >= {("server", "sampling/createMessage"),
                                                              ("server", "roots/list")}
    first = calls[0]
    assert first["method"] == "initialize" and first["server"]["name"] == "mcp-servers/everything"
    assert first["server"]["argv"][-1] == "stdio" and first["client"]["name"] == "mcp"
    assert first["transport"] == "stdio" and first["protocol_version"] == "2025-11-25"
    (end,) = records(out, "mcp.session.end")
    assert end["calls"] == 16 and end["garbage_lines"] == 0 and end["unanswered"] == 0
    assert end["reason"].startswith("the server exited") and end["exit_code"] == 0
    tools = {c["tool"]: c for c in calls if c["method"] == "tools/call"}
    assert tools["get-sum"]["arguments"] == {"a": 2, "b": 40}
    assert tools["get-sum"]["result"]["content"][0]["text"] == "The sum of 2 and 40 is 42."
    assert tools["no-such-tool"]["status"] == "tool_error"
    assert len(records(out, "mcp.notification")) >= 2


def test_the_same_records_in_any_split_of_reads_and_writes():
    events = fixture_events()
    whole = records(run(events))
    assert records(run(split(events, lambda: 1))) == whole
    rng = random.Random(7)
    assert records(run(split(events, lambda: rng.randint(1, 300)))) == whole


def test_garbage_on_a_pipe_is_counted_and_skipped():
    events = fixture_events()
    pid = next(e.pid for e in events if e.topic == "stdio.data")
    ts = next(e.ts_ns for e in events if e.topic == "stdio.data")
    noisy: list[Event] = []
    junk = [b"debug: starting\n", b'{"not": "json-rpc"}\n', b"\x00\xff\xfe binary\n", b"{broken json\n"]
    for i, e in enumerate(events):
        noisy.append(e)
        if e.topic == "stdio.data" and i % 5 == 0:
            noisy.append(Event("stdio.data", e.ts_ns, "stdio", pid, pid, "node",
                               {"fd": e.data["fd"], "dir": e.data["dir"], "bytes": junk[i % len(junk)],
                                "len": len(junk[i % len(junk)])}))
    before = [Event("stdio.data", ts - 1, "stdio", pid, pid, "node",
                    {"fd": 1, "dir": "write", "bytes": b"banner before the first message\n", "len": 32})]
    calls = McpCalls(link_wait_s=0)
    out = run(before + noisy, calls)
    junk_lines = sum(1 for e in noisy if e.topic == "stdio.data" and e.data["bytes"] in junk) + 1
    junk_bytes = sum(len(e.data["bytes"]) - 1 for e in noisy if e.topic == "stdio.data" and e.data["bytes"] in junk)
    (end,) = records(out, "mcp.session.end")
    assert end["garbage_lines"] == calls.stats.garbage_lines == junk_lines
    assert end["garbage_bytes"] == junk_bytes + len(b"banner before the first message")
    def same(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in ("call_id", "mcp_session")}

    assert [same(r) for r in records(out)] == [same(r) for r in records(run(fixture_events()))]


def test_a_process_that_never_speaks_mcp_gives_nothing():
    calls = McpCalls(link_wait_s=0)
    out = run([stdio(9, 1, b"compiling 1/3\n", 1), stdio(9, 1, b'{"level":"info","msg":"x"}\n', 2),
               stdio(9, 0, b"y\n", 3), Event("process.exit", 4, "process", 9, 9, "make", {"exit_code": 0})], calls)
    assert out == [] and calls.stats.garbage_lines == 0


def test_stderr_and_other_fds_are_not_the_pipe():
    msg = line({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    out = run([stdio(5, 2, msg, 1), Event("stdio.data", 2, "stdio", 5, 5, "x",
                                          {"fd": 7, "dir": "write", "bytes": msg, "len": len(msg)})])
    assert out == []


def _conversation(pid: int = 50) -> list[Event]:
    return [
        exec_(10, 1, ["/usr/bin/python3", "agent.py"]),
        Event("process.fork", 2, "process", 20, 20, "python3", {"ppid": 10}),
        exec_(20, 10, ["/usr/bin/npx", "-y", "server"], 3),
        Event("process.fork", 4, "process", pid, pid, "npm exec", {"ppid": 20}),
        exec_(pid, 20, ["/usr/bin/node", "/srv/server.js", "--root", f"/tmp/{KEY}"], 5),
        stdio(pid, 0, line({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "agent", "version": "9"}}}), 10),
        stdio(pid, 1, line({"jsonrpc": "2.0", "id": 0, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "srv", "version": "1"}}}), 12),
    ]


def test_command_line_client_and_identity():
    out = run(_conversation())
    (init,) = records(out)
    assert init["server"] == {"pid": 50, "comm": "node", "argv": ["/usr/bin/node", "/srv/server.js", "--root",
                                                                  "/tmp/[REDACTED:sk]"],
                              "exe": "/usr/bin/node", "name": "srv", "version": "1"}
    # npx is a launcher: the client is the agent that ran it.
    assert init["client"]["pid"] == 10 and init["client"]["name"] == "agent"
    assert init["latency_ms"] == 2.0 and init["mcp_session"] == f"stdio:50@{10 * MS}"
    assert init["call_id"] == f"stdio:50@{10 * MS}#1"


def test_a_server_seen_only_in_proc_is_looked_up():
    looked: list[int] = []

    def lookup(pid: int) -> ProcInfo | None:
        looked.append(pid)
        return {77: ProcInfo(70, "node", ["node", "old.js"], "/usr/bin/node"),
                70: ProcInfo(1, "claude", ["claude"], "/usr/bin/claude")}.get(pid)

    out = run([stdio(77, 0, line({"jsonrpc": "2.0", "id": 1, "method": "ping"}), 1),
               stdio(77, 1, line({"jsonrpc": "2.0", "id": 1, "result": {}}), 2)],
              McpCalls(link_wait_s=0, proc_lookup=lookup))
    (c,) = records(out)
    assert c["server"]["argv"] == ["node", "old.js"] and c["client"]["comm"] == "claude" and 77 in looked


def test_a_reply_that_never_comes_is_reported_when_the_server_exits():
    clock = Clock()
    calls = McpCalls(link_wait_s=0, exit_grace_s=1.0, clock=clock)
    events = [*_conversation(), stdio(50, 0, line({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                     "params": {"name": "slow", "arguments": {"n": 1}}}), 20),
              Event("process.exit", 30, "process", 50, 50, "node", {"exit_code": 137})]
    out = run(events, calls, flush=False)
    assert [c["method"] for c in records(out)] == ["initialize"]
    clock.t = 0.5
    assert calls.tick() == []  # its last writes may still be on their way
    clock.t = 1.5
    late = calls.tick()
    (c,) = records(late)
    assert c["status"] == "no_reply" and c["tool"] == "slow" and c["ts_response_ns"] is None
    assert c["notes"] == ["no reply: the server exited (exit code 137)"]
    (end,) = records(late, "mcp.session.end")
    assert end["unanswered"] == 1 and end["exit_code"] == 137
    assert calls.flush() == []


def test_a_reply_written_after_the_exit_event_still_counts():
    clock = Clock()
    calls = McpCalls(link_wait_s=0, exit_grace_s=1.0, clock=clock)
    out = run([*_conversation(), stdio(50, 0, line({"jsonrpc": "2.0", "id": 1, "method": "ping"}), 20),
               Event("process.exit", 30, "process", 50, 50, "node", {"exit_code": 0}),
               stdio(50, 1, line({"jsonrpc": "2.0", "id": 1, "result": {}}), 25)], calls, flush=False)
    clock.t = 2
    out += calls.tick()
    assert [(c["method"], c["status"]) for c in records(out)] == [("initialize", "ok"), ("ping", "ok")]


def test_the_capture_ending_leaves_requests_unfinished():
    out = run([*_conversation(), stdio(50, 0, line({"jsonrpc": "2.0", "id": 1, "method": "ping"}), 20)])
    assert records(out)[-1]["status"] == "unfinished"
    assert records(out, "mcp.session.end")[0]["reason"] == "the capture ended"


def test_a_cancelled_request():
    out = run([*_conversation(),
               stdio(50, 0, line({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t"}}), 20),
               stdio(50, 0, line({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                  "params": {"requestId": 2, "reason": "user hit Esc"}}), 25)])
    c = records(out)[1]
    assert c["status"] == "cancelled" and c["notes"] == ["cancelled by the client: user hit Esc"]
    assert records(out, "mcp.notification")[0]["method"] == "notifications/cancelled"


def test_a_cut_reply_completes_the_only_request_waiting():
    # The TypeScript SDK writes the id last: a reply longer than the capture loses it.
    reply = json.dumps({"result": {"content": [{"type": "text", "text": "z" * 30000}]}, "jsonrpc": "2.0",
                        "id": 1}).encode() + b"\n"
    out = run([*_conversation(),
               stdio(50, 0, line({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                                  "params": {"uri": "file:///big"}}), 20),
               stdio(50, 1, reply[:16384], 21, length=len(reply)),
               stdio(50, 0, line({"jsonrpc": "2.0", "id": 2, "method": "ping"}), 30),
               stdio(50, 1, line({"jsonrpc": "2.0", "id": 2, "result": {}}), 31)])
    big, ping = records(out)[1:]
    assert big["uri"] == "file:///big" and big["truncated"] is True and big["result"] is None
    assert big["status"] == "ok" and big["partial"] == reply[:4096].decode() and big["latency_ms"] == 1.0
    assert ping["status"] == "ok" and ping["truncated"] is False
    assert records(out, "mcp.session.end")[0]["cut_messages"] == 1


def test_a_cut_reply_is_not_guessed_when_several_requests_wait():
    reply = json.dumps({"result": {"text": "z" * 20000}, "jsonrpc": "2.0", "id": 1}).encode() + b"\n"
    out = run([*_conversation(),
               stdio(50, 0, line({"jsonrpc": "2.0", "id": 1, "method": "a"}) + line(
                   {"jsonrpc": "2.0", "id": 2, "method": "b"}), 20),
               stdio(50, 1, reply[:8192], 21, length=len(reply))])
    assert [(c["method"], c["status"]) for c in records(out)[1:]] == [("a", "unfinished"), ("b", "unfinished")]


def test_a_cut_request_keeps_its_id_and_method():
    request = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "write", "arguments": {"text": "w" * 20000}}}).encode() + b"\n"
    out = run([*_conversation(), stdio(50, 0, request[:16384], 20, length=len(request)),
               stdio(50, 1, line({"jsonrpc": "2.0", "id": 3, "result": {"content": []}}), 22)])
    c = records(out)[1]
    assert c["method"] == "tools/call" and c["status"] == "ok" and c["truncated"] is True
    assert c["params"] is None and c["notes"][0].startswith("the request was longer than the capture")


def test_a_reply_whose_request_was_not_seen():
    out = run([stdio(60, 1, line({"jsonrpc": "2.0", "id": 9, "result": {"tools": []}}), 5)])
    (c,) = records(out)
    assert c["method"] is None and c["result"] == {"tools": []} and c["ts_request_ns"] is None
    assert c["notes"] == ["its request was not seen (the capture began later)"]


def test_arguments_results_and_params_are_redacted_unless_asked_not_to():
    req = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "login", "arguments": {"api_key": KEY, "note": f"Bearer {KEY}"}}}
    resp = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"token {KEY}"}]}}
    events = [stdio(70, 0, line(req), 1), stdio(70, 1, line(resp), 2)]
    (c,) = records(run(events))
    assert KEY not in json.dumps(c)
    assert c["arguments"]["api_key"] == "[REDACTED:sk]"
    (raw,) = records(run(events, McpCalls(link_wait_s=0, redact=False)))
    assert raw["arguments"]["api_key"] == KEY and KEY in raw["result"]["content"][0]["text"]
