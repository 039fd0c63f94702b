"""HTTP/2 exchanges observed passively: frames, HPACK, streams, then the LLM record on top."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h2.config
import h2.connection

from agentsight.analysis.httpstream import HttpStreams
from agentsight.event import Event
from tests.chain import run_chain

FX = Path(__file__).parent.parent / "fixtures" / "llm"


def body_of(wire: bytes) -> bytes:
    """The JSON body of a Content-Length fixture request."""
    return wire.split(b"\r\n\r\n", 1)[1]


def sse_body_of(wire: bytes) -> bytes:
    """De-chunk a chunked fixture response."""
    rest = wire.split(b"\r\n\r\n", 1)[1]
    out = b""
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        n = int(size_line, 16)
        if n == 0:
            return out
        out, rest = out + rest[:n], rest[n + 2 :]


def h2_conversation(streams: list[tuple[list[tuple[str, str]], bytes, list[tuple[str, str]], list[bytes]]]
                    ) -> tuple[bytes, list[bytes]]:
    """Client bytes and the server's replies (one piece per DATA send) for several concurrent streams."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    client.initiate_connection()
    server.initiate_connection()
    sids = []
    for req_headers, req_body, _, _ in streams:
        sid = client.get_next_available_stream_id()
        sids.append(sid)
        client.send_headers(sid, req_headers, end_stream=not req_body)
        if req_body:
            client.send_data(sid, req_body, end_stream=True)
    client_bytes = client.data_to_send()
    server.receive_data(client_bytes)
    pieces = [server.data_to_send()]
    for sid, (_, _, resp_headers, _chunks) in zip(sids, streams, strict=True):
        server.send_headers(sid, resp_headers)
        pieces.append(server.data_to_send())
    # interleave the streams' DATA frames, as a multiplexing server does
    for i in range(max(len(s[3]) for s in streams)):
        for sid, s in zip(sids, streams, strict=True):
            if i < len(s[3]):
                server.send_data(sid, s[3][i], end_stream=i == len(s[3]) - 1)
                pieces.append(server.data_to_send())
    return client_bytes, pieces


def run(client_bytes: bytes, server_pieces: list[bytes], cut: int = 0) -> list[Event]:
    records = [("write", client_bytes[:cut]), ("write", client_bytes[cut:])] if cut else [("write", client_bytes)]
    return run_chain(records + [("read", p) for p in server_pieces if p], flush=False)


def test_h2_llm_stream_and_plain_request_on_one_connection() -> None:
    req = (FX / "anthropic_messages_stream.req").read_bytes()
    resp = (FX / "anthropic_messages_stream.resp").read_bytes()
    events = sse_body_of(resp)
    chunks = [events[i : i + 300] for i in range(0, len(events), 300)]
    gz = gzip.compress(b'{"ok":true}')
    client_bytes, pieces = h2_conversation([
        ([(":method", "POST"), (":scheme", "https"), (":authority", "api.anthropic.com"),
          (":path", "/v1/messages?beta=true"), ("content-type", "application/json"),
          ("x-api-key", "sk-ant-api03-Zr8wQk2VnT5yLm1XcB7sPd4FgH9jK0aUeIo3RtYu6WqEzA-xyz12AA")],
         body_of(req), [(":status", "200"), ("content-type", "text/event-stream")], chunks),
        ([(":method", "GET"), (":scheme", "https"), (":authority", "example.com"), (":path", "/health")],
         b"", [(":status", "200"), ("content-encoding", "gzip")], [gz]),
    ])
    for cut in (0, 5, 24, 30, len(client_bytes) - 3):
        out = run(client_bytes, pieces, cut)
        exchanges = [e.data for e in out if e.topic == "http.exchange"]
        assert sorted((x["stream_id"], x["request"]["path"]) for x in exchanges) == [
            (1, "/v1/messages"), (3, "/health")]
        health = next(x for x in exchanges if x["stream_id"] == 3)
        assert health["response"]["body"] == b'{"ok":true}' and health["request"]["http_version"] == "2"
        assert health["host"] == "example.com"
        (call,) = [e.data for e in out if e.topic == "llm.call"]
        assert call["model"] == "claude-opus-4-1-20250805"
        assert call["output_text"] == "The assertion is wrong: `add(2, 2)` is 4. I'll fix the test. ✓"
        assert call["tool_calls"][0]["input"] == {"file_path": "test_math.py", "old": "== 5", "new": "== 4"}
        assert call["usage"]["output_tokens"] == 143
        assert json.dumps(call).find("Zr8wQk2V") == -1
        assert any(e.topic == "http.stream.chunk" for e in out)


def test_h2_reset_stream_reports_incomplete() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/x")],
                        end_stream=True)
    client_bytes = client.data_to_send()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(client_bytes)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"part")
    server.reset_stream(1)
    out = run(client_bytes, [server.data_to_send()])
    (resp,) = [e.data for e in out if e.topic == "http.response"]
    assert resp["complete"] is False and resp["error"] == "stream reset" and resp["body"] == b"part"
    (ex,) = [e.data for e in out if e.topic == "http.exchange"]
    assert ex["request"]["complete"] is True


def test_broken_h2_frames_are_counted_not_raised() -> None:
    http = HttpStreams()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    bad = b"\x00\x00\x04\x04\x00\x00\x00\x00\x01\x00\x00\x00"  # SETTINGS with a 4-byte (invalid) payload
    out = http.feed(Event("ssl.data", 1, "ssl", 1, 1, "x", {"conn": "1:1", "dir": "write", "bytes": preface + bad}))
    out += http.feed(Event("ssl.data", 2, "ssl", 1, 1, "x", {"conn": "1:1", "dir": "write", "bytes": b"more"}))
    assert [e.topic for e in out] == ["http.error"]
    assert http.stats.malformed == 1 and http.stats.skipped_bytes >= 4
