"""MCP over HTTP (agentsight.analysis.mcp.McpCalls): streamable HTTP with JSON and SSE answers, sessions,
server-to-client streams read live or at their end, the legacy HTTP+SSE transport, errors.
Also the HTTP/1 parser's part: an MCP event stream ends at its response."""

from __future__ import annotations

import json
from typing import Any

from agentsight.analysis.httpstream import HttpStreams, jsonrpc_answered, jsonrpc_request_id
from agentsight.analysis.mcp import McpCalls
from agentsight.analysis.sse import SseMerge
from agentsight.event import Event

MS = 1_000_000
SID = "a065a9330a3c47b5b5e585a197a9e81b"


def sse(*messages: dict[str, Any]) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in messages)


def exchange(seq: int, method: str, body: Any = None, *, status: int | None = 200, ctype: str = "application/json",
             answer: bytes = b"", session: str | None = SID, response_session: str | None = None,
             path: str = "/mcp", query: str = "", t: int = 0, pid: int = 300) -> Event:
    headers = [["host", "mcp.example.com"], ["accept", "application/json, text/event-stream"]]
    if session:
        headers.append(["mcp-session-id", session])
    req_body = json.dumps(body).encode() if body is not None else b""
    request = {"method": method, "path": path, "query": query, "target": path + (f"?{query}" if query else ""),
               "host": "mcp.example.com", "headers": headers, "body": req_body, "body_size": len(req_body),
               "content_type": "application/json"}
    response = None
    if status is not None:
        rh = [["content-type", ctype]] + ([["mcp-session-id", response_session]] if response_session else [])
        response = {"status_code": status, "reason": "OK", "headers": rh, "content_type": ctype, "body": answer,
                    "body_size": len(answer), "timeline": [[len(answer), (t + 5) * MS]]}
    d = {"conn": f"{pid}:c0ffee", "seq": seq, "host": "mcp.example.com", "request": request, "response": response,
         "ts_request_start_ns": t * MS, "ts_response_end_ns": (t + 5) * MS, "session": "300@1", "agent": "claude-code"}
    return Event("http.exchange", (t + 5) * MS, "http", pid, pid, "claude", d)


def run(events: list[Event], calls: McpCalls | None = None) -> list[Event]:
    calls = calls or McpCalls(link_wait_s=0)
    merge = SseMerge(live=False)
    out: list[Event] = []
    for e in events:
        for m in merge.feed(e):  # response.sse, as the pipeline gives it
            out += calls.feed(m)
    return out + calls.flush()


def records(out: list[Event], topic: str = "mcp.call") -> list[dict[str, Any]]:
    return [e.data for e in out if e.topic == topic]


INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "claude-code",
                                                                                     "version": "2"}}}
INIT_OK = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                  "serverInfo": {"name": "remote", "version": "3"}}}


def test_json_and_event_stream_answers_in_one_session():
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}}
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
    result = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "found"}]}}
    out = run([
        exchange(0, "POST", INIT, answer=json.dumps(INIT_OK).encode(), session=None, response_session=SID),
        exchange(1, "POST", {"jsonrpc": "2.0", "method": "notifications/initialized"}, status=202, t=10),
        exchange(2, "POST", call, ctype="text/event-stream", answer=sse(progress, result), t=20),
        exchange(3, "DELETE", None, t=30),
    ])
    init, tool = records(out)
    assert init["mcp_session"] == tool["mcp_session"] == SID and init["transport"] == "http"
    assert tool["server"] == {"url": "https://mcp.example.com/mcp", "host": "mcp.example.com", "path": "/mcp",
                              "name": "remote", "version": "3"}
    assert tool["client"] == {"pid": 300, "comm": "claude", "name": "claude-code", "version": "2"}
    assert tool["tool"] == "search" and tool["arguments"] == {"q": "x"} and tool["result"] == result["result"]
    assert tool["latency_ms"] == 5.0 and tool["session"] == "300@1" and tool["agent"] == "claude-code"
    assert [n["method"] for n in records(out, "mcp.notification")] == ["notifications/initialized",
                                                                        "notifications/progress"]
    (end,) = records(out, "mcp.session.end")
    assert end["reason"] == "the client ended the session" and end["calls"] == 2


def test_http_errors_and_lost_connections_end_their_request():
    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
    out = run([exchange(0, "POST", ping, status=404, answer=b"session not found"),
               exchange(1, "POST", {**ping, "id": 6}, status=None, t=10)])
    gone, lost = records(out)
    assert gone["status"] == "error" and gone["error"]["http_status"] == 404
    assert gone["error"]["message"] == "HTTP 404 OK" and gone["error"]["body"] == "session not found"
    assert lost["status"] == "no_reply" and lost["notes"] == ["no response came (the connection closed first)"]


def test_a_server_request_on_the_get_stream_read_live_pairs_with_the_client_answer():
    sampling = {"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage",
                "params": {"messages": [], "maxTokens": 5}}
    answer = {"jsonrpc": "2.0", "id": 0, "result": {"role": "assistant", "model": "m",
                                                     "content": {"type": "text", "text": "hi"}}}
    head = Event("http.stream.head", 1 * MS, "http", 300, 300, "claude",
                 {"conn": "300:beef", "seq": 0, "method": "GET", "host": "mcp.example.com", "path": "/mcp",
                  "status_code": 200, "headers": [["mcp-session-id", SID]], "content_type": "text/event-stream"})
    chunk = Event("http.stream.chunk", 2 * MS, "http", 300, 300, "claude",
                  {"conn": "300:beef", "seq": 0, "offset": 0, "data": sse(sampling)})
    calls = McpCalls(link_wait_s=0)
    live = calls.feed(head) + calls.feed(chunk)
    assert live == []  # waiting for the client's answer
    out = calls.feed(exchange(4, "POST", answer, status=202, t=3))
    (c,) = records(out)
    assert c["direction"] == "server" and c["method"] == "sampling/createMessage" and c["latency_ms"] == 1.0
    assert c["result"]["content"]["text"] == "hi"


def test_an_answer_seen_before_its_request_waits_for_it():
    """A GET stream without the session in its head is read when it ends: its requests come last."""
    roots = {"jsonrpc": "2.0", "id": 7, "method": "roots/list"}
    answer = {"jsonrpc": "2.0", "id": 7, "result": {"roots": []}}
    get = exchange(0, "GET", None, ctype="text/event-stream", answer=sse(roots), t=1)
    get.data["ts_response_end_ns"] = 50 * MS
    out = run([exchange(1, "POST", answer, status=202, t=4), get])
    (c,) = records(out)
    assert c["method"] == "roots/list" and c["direction"] == "server" and c["result"] == {"roots": []}


def test_the_legacy_http_sse_transport():
    endpoint = b"event: endpoint\r\ndata: /messages/?session_id=abc123\r\n\r\n"
    ok = {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}
    head = Event("http.stream.head", 1 * MS, "http", 300, 300, "claude",
                 {"conn": "300:aa", "seq": 0, "method": "GET", "host": "old.example.com", "path": "/sse",
                  "status_code": 200, "headers": [], "content_type": "text/event-stream"})
    calls = McpCalls(link_wait_s=0)
    calls.feed(head)
    calls.feed(Event("http.stream.chunk", 2 * MS, "http", 300, 300, "claude",
                     {"conn": "300:aa", "seq": 0, "offset": 0, "data": endpoint}))
    calls.feed(exchange(1, "POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, status=202,
                        session=None, path="/messages/", query="session_id=abc123", t=3))
    out = calls.feed(Event("http.stream.chunk", 9 * MS, "http", 300, 300, "claude",
                           {"conn": "300:aa", "seq": 0, "offset": len(endpoint), "data": sse(ok)}))
    (c,) = records(out)
    assert c["mcp_session"] == "abc123" and c["method"] == "tools/list" and c["latency_ms"] == 6.0


def test_answers_waiting_for_their_request_are_bounded():
    calls = McpCalls(link_wait_s=0, max_pending=2)
    out: list[Event] = []
    for i in range(3):
        out += calls.feed(exchange(i, "POST", {"jsonrpc": "2.0", "id": i, "result": {"n": i}}, status=202, t=i))
    (oldest,) = records(out)
    assert oldest["id"] == 0 and oldest["method"] is None and oldest["direction"] == "server"
    assert oldest["notes"] == ["its request was not seen (the capture began later)"]


def test_json_rpc_that_is_not_mcp_is_left_alone():
    calls = McpCalls(link_wait_s=0)
    out = run([exchange(0, "POST", {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}, session=None,
                        answer=b'{"jsonrpc":"2.0","id":1,"result":"0x1"}')], calls)
    assert out == [] and calls.stats.non_mcp_jsonrpc == 1


def test_sessionless_requests_pair_within_their_exchange():
    """Protocol 2026-07-28: no initialize, no session; each POST is one request and its answer."""
    call = {"jsonrpc": "2.0", "id": "r1", "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    out = run([exchange(0, "POST", call, session=None, answer=json.dumps(
        {"jsonrpc": "2.0", "id": "r1", "result": {"content": []}}).encode())])
    (c,) = records(out)
    assert c["mcp_session"] is None and c["id"] == "r1" and c["status"] == "ok"


def _h1(events: list[tuple[str, bytes]]) -> list[Event]:
    http = HttpStreams(redact=False)
    out: list[Event] = []
    for i, (direction, data) in enumerate(events):
        out += http.feed(Event("ssl.data", i * MS, "ssl", 300, 300, "python3",
                               {"conn": "300:7b70", "dir": direction, "bytes": data, "len": len(data)}))
    return out


def _post(body: bytes) -> bytes:
    return (b"POST /mcp HTTP/1.1\r\nHost: h\r\ncontent-type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _chunked_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_an_mcp_event_stream_ends_at_its_response_and_the_next_head_is_kept():
    """The official Python client stops reading an answer's stream at the response and drops the
    connection; the next one may get the same SSL* (the same conn key): its first response head
    must not be lost in the unfinished chunked body."""
    first = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    note = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
    second = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}).encode()
    out = _h1([
        ("write", _post(first)), ("read", _chunked_head()),
        ("read", _chunk(b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\r\n\r\n')),
        ("write", _post(note)),
        ("read", b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"),
        ("write", _post(second)),
        ("read", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n"
                 b'{"jsonrpc":"2.0","id":2,"result":{}}'),
    ])
    exchanges = [e.data for e in out if e.topic == "http.exchange"]
    assert [(json.loads(x["request"]["body"]).get("id"), x["response"]["status_code"]) for x in exchanges] == [
        (1, 200), (None, 202), (2, 200)]
    assert exchanges[0]["response"]["complete"] is True
    assert not [e for e in out if e.topic == "http.error"]


def test_arguments_redacted_by_the_http_stage_keep_their_marker():
    """The http stage redacts the body first; the mcp stage's own redaction leaves its markers as they are."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "login", "arguments": {"api_key": "[REDACTED:sk]", "user": "x"}}}
    out = run([exchange(0, "POST", call, answer=json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode())])
    assert records(out)[0]["arguments"] == {"api_key": "[REDACTED:sk]", "user": "x"}


def test_jsonrpc_helpers():
    assert jsonrpc_request_id(b'{"jsonrpc":"2.0","id":3,"method":"x"}') == "3"
    assert jsonrpc_request_id(b'{"jsonrpc":"2.0","id":"3","method":"x"}') == '"3"'
    assert jsonrpc_request_id(b'{"jsonrpc":"2.0","method":"x"}') is None
    assert jsonrpc_request_id(b'[{"jsonrpc":"2.0","id":3,"method":"x"}]') is None
    body = sse({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
    assert not jsonrpc_answered(body, "3")
    body += sse({"result": {}, "jsonrpc": "2.0", "id": 3})
    assert jsonrpc_answered(body, "3") and not jsonrpc_answered(body, '"3"')
    assert not jsonrpc_answered(body[:-2], "3")  # the event is not finished
    assert not jsonrpc_answered(sse({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage"}), "3")
