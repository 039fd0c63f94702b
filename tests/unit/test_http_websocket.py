"""WebSocket in the HTTP stream layer: the upgrade exchange, then one ``http.ws`` per message."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight.analysis.httpstream import HttpStreams
from agentsight.event import Event
from tests.unit.test_websocket import KEY, OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, deflate, frame

SECRET = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"
UPGRADE = (
    "GET /backend-api/codex/responses HTTP/1.1\r\nHost: chatgpt.com\r\nConnection: Upgrade\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    f"Authorization: Bearer {SECRET}\r\nUser-Agent: codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64)\r\n\r\n"
).encode()
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
)


def run(records: list[tuple[str, bytes]], *, close: bool = True, **kw: Any) -> tuple[list[Event], HttpStreams]:
    h = HttpStreams(**kw)
    out: list[Event] = []
    for i, (direction, data) in enumerate(records):
        out += h.feed(Event("ssl.data", 100 + i, "ssl", 7, 7, "codex", {"conn": "7:ab", "dir": direction,
                                                                      "bytes": data}))
    if close:
        out += h.flush()
    return out, h


def byte_records(records: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(d, data[i : i + 1]) for d, data in records for i in range(len(data))]


def ws(events: list[Event]) -> list[dict[str, Any]]:
    """The http.ws records without what depends on record boundaries."""
    return [{k: v for k, v in e.data.items() if k not in ("ts_start_ns",)} for e in events if e.topic == "http.ws"]


def conversation() -> list[tuple[str, bytes]]:
    create = json.dumps({"type": "response.create", "model": "gpt-5-codex", "input": f"use {SECRET}"}).encode()
    events = [json.dumps({"type": "response.output_text.delta", "delta": w}).encode() for w in ("Hi", " there")]
    server = deflate(events, takeover=False)
    (client,) = deflate([create])
    return [
        ("write", UPGRADE),
        ("read", SWITCH + frame(OP_TEXT, b'{"type":"codex.rate_limits"}')),
        ("write", frame(OP_TEXT, client, rsv1=True, key=KEY)),
        ("read", b"".join(frame(OP_TEXT, p, rsv1=True) for p in server) + frame(OP_PING, b"")),
        ("write", frame(OP_BINARY, b"\x01\x02", key=KEY) + frame(OP_CLOSE, b"\x03\xe8done", key=KEY)),
        ("read", frame(OP_CLOSE, b"\x03\xe8")),
    ]


def test_upgrade_then_messages_both_directions() -> None:
    out, h = run(conversation())
    topics = [e.topic for e in out]
    assert topics[:4] == ["http.request", "http.stream.head", "http.response", "http.exchange"]
    ex = out[3].data
    assert ex["response"]["status_code"] == 101 and ex["request"]["path"] == "/backend-api/codex/responses"
    assert ["authorization", "[REDACTED:sk]"] in ex["request"]["headers"]
    got = ws(out)
    assert [(m["dir"], m["index"], m["opcode"], m["compressed"]) for m in got] == [
        ("read", 0, OP_TEXT, False), ("write", 0, OP_TEXT, True), ("read", 1, OP_TEXT, True),
        ("read", 2, OP_TEXT, True), ("write", 1, OP_BINARY, False), ("write", 2, OP_CLOSE, False),
        ("read", 3, OP_CLOSE, False)]
    create = json.loads(got[1]["text"])
    assert create["input"] == "use [REDACTED:sk]" and SECRET not in repr(out)
    assert [json.loads(m["text"])["delta"] for m in got[2:4]] == ["Hi", " there"]
    assert got[4]["data"] == b"\x01\x02" and got[4]["text"] is None
    assert (got[5]["close_code"], got[5]["text"], got[6]["close_code"], got[6]["text"]) == (1000, "done", 1000, "")
    assert all(m["seq"] == 0 and m["host"] == "chatgpt.com" and m["path"] == "/backend-api/codex/responses"
               for m in got)
    (end,) = [e.data for e in out if e.topic == "http.ws.end"]
    assert (end["sent"], end["received"], end["dropped"]) == (3, 4, 0)
    s = h.stats
    assert (s.ws_connections, s.ws_messages, s.ws_control, s.malformed, s.skipped_bytes) == (1, 7, 1, 0, 0)


def test_one_byte_records_give_the_same_messages() -> None:
    records = conversation()
    whole, _ = run(records)
    split, _ = run(byte_records(records))
    assert ws(split) == ws(whole)
    assert [e.topic for e in split if not e.topic.startswith("http.stream")] == \
        [e.topic for e in whole if not e.topic.startswith("http.stream")]


def test_unredacted_when_asked() -> None:
    out, _ = run(conversation(), redact=False)
    assert SECRET in ws(out)[1]["text"]


def test_a_refused_upgrade_leaves_the_connection_http() -> None:
    refused = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope"
    nxt = b"POST /v1/responses HTTP/1.1\r\nHost: chatgpt.com\r\nContent-Length: 2\r\n\r\n{}"
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    # The client writes its next request before the refusal is read: it is held, then parsed.
    for records in ([("write", UPGRADE), ("write", nxt), ("read", refused), ("read", answer)],
                    byte_records([("write", UPGRADE + nxt), ("read", refused + answer)])):
        out, h = run(records)
        exchanges = [e.data for e in out if e.topic == "http.exchange"]
        assert [(x["seq"], x["request"]["method"], x["response"]["status_code"]) for x in exchanges] == [
            (0, "GET", 426), (1, "POST", 200)]
        assert ws(out) == [] and h.stats.malformed == 0


def test_a_101_to_another_protocol_is_not_read() -> None:
    h2c = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    out, h = run([("write", UPGRADE), ("read", h2c + b"\x00\x00\x12\x04"), ("write", b"PRI * HTTP/2.0\r\n")])
    assert [e.data["response"]["status_code"] for e in out if e.topic == "http.exchange"] == [101]
    assert ws(out) == [] and h.stats.malformed == 0 and h.stats.ws_connections == 0


def test_garbage_frames_are_counted_reported_and_skipped() -> None:
    records = [("write", UPGRADE), ("read", SWITCH + b"\x3f" * 10 + frame(OP_TEXT, b"still here"))]
    out, h = run(records)
    errors = [e.data for e in out if e.topic == "http.error"]
    assert [(e["dir"], e["error"]) for e in errors] == [("read", "websocket: RSV2/RSV3 set")]
    assert (h.stats.malformed, h.stats.skipped_bytes) == (1, 10)
    assert [m["text"] for m in ws(out)] == ["still here"]


def test_a_message_cut_by_the_process_exit_is_counted() -> None:
    out, h = run([("write", UPGRADE), ("read", SWITCH + frame(OP_TEXT, b"x" * 50)[:20])], close=False)
    out = h.close_pid(7, 999)
    (end,) = [e for e in out if e.topic == "http.ws.end"]
    assert (end.ts_ns, end.data["received"], end.data["dropped"]) == (999, 0, 1)
    assert h.stats.ws_dropped == 1


def test_messages_past_max_body_are_truncated_and_counted() -> None:
    text = "é" * 100  # two bytes each: the cut falls inside a character
    out, h = run([("write", UPGRADE), ("read", SWITCH + frame(OP_TEXT, text.encode()))], max_body=51)
    (m,) = ws(out)
    assert (m["text"], m["size"], m["truncated"]) == ("é" * 25, 200, True)
    assert h.stats.ws_truncated == 1


def test_a_message_that_does_not_inflate_keeps_its_bytes_and_is_counted() -> None:
    out, h = run([("write", UPGRADE), ("read", SWITCH + frame(OP_TEXT, b"\xff\xfe not deflate", rsv1=True))])
    (m,) = ws(out)
    assert m["text"] is None and m["decode_error"].startswith("inflate:") and h.stats.ws_decode_errors == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "read"]), st.binary(max_size=120)), max_size=12),
       st.integers(1, 9))
def test_fuzz_after_the_upgrade_never_raises_and_splits_agree(records: list[tuple[str, bytes]], step: int) -> None:
    """Garbage in either direction after a 101: counted and skipped, never raised, any cut the same."""
    head = [("write", UPGRADE), ("read", SWITCH)]
    whole, h = run(head + records, max_body=64)
    cut = [(d, data[i : i + step]) for d, data in records for i in range(0, len(data), step)]
    split, _ = run(head + cut, max_body=64)
    assert ws(split) == ws(whole)
    assert all(len(m["text"] or m["data"] or b"") <= 64 for m in ws(whole))
    assert h.stats.ws_connections == 1
