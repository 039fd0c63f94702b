"""JSON-RPC framing over a pipe (agentsight.analysis.jsonrpc): lines in any split, cuts, retries, prefixes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agentsight.analysis.jsonrpc import (
    PIPE_BUF,
    Line,
    LineFramer,
    classify,
    decode_messages,
    id_key,
    scan_prefix,
)
from agentsight.jsonform import event_from_json

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp" / "everything_stdio.jsonl"


def _stream(fd: int, direction: str) -> bytes:
    """One direction of the real everything-server pipe, as the stdio source captured it."""
    events = [event_from_json(line) for line in FIXTURE.read_text().splitlines()]
    return b"".join(e.data["bytes"] for e in events if e.topic == "stdio.data" and e.data["fd"] == fd
                    and e.data["dir"] == direction)


def _lines(pieces: list[bytes]) -> list[Line]:
    f = LineFramer()
    out: list[Line] = []
    for p in pieces:
        out += f.feed(p)
    return out


@pytest.mark.parametrize("fd,direction", [(0, "read"), (1, "write")])
def test_any_split_gives_the_same_lines(fd, direction):
    data = _stream(fd, direction)
    whole = _lines([data])
    assert len(whole) > 10 and all(line.kept and not line.cut for line in whole)
    assert all(decode_messages(line.data) for line in whole)
    assert _lines([data[i:i + 1] for i in range(len(data))]) == whole
    rng = random.Random(15)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), 40))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _lines(pieces) == whole


def test_lines_that_cannot_be_json_are_measured_not_kept():
    f = LineFramer()
    out = f.feed(b"Secure MCP server running\n  \n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\r\n")
    assert out == [Line(b"", 25, kept=False), Line(b'{"jsonrpc":"2.0","method":"x"}\r', 31)]
    assert f.feed(b"progress: 10%") == [] and f.pending == 13
    assert f.feed(b" 20%\n") == [Line(b"", 17, kept=False)]


def test_a_line_longer_than_the_limit_is_dropped_and_counted():
    f = LineFramer(max_line=16)
    assert f.feed(b'{"a": "0123456789abcdef"}\n{"b":1}\n') == [Line(b"", 25, kept=False), Line(b'{"b":1}', 7)]
    assert f.oversize == 1


def test_a_cut_record_gives_the_line_prefix_then_resyncs():
    f = LineFramer()
    # 40 bytes moved, 20 captured: the line is cut; the missing tail held its newline.
    out = f.feed(b'{"ok":1}\n{"jsonrpc":"2.0","id":', missing=20)
    assert out == [Line(b'{"ok":1}', 8), Line(b'{"jsonrpc":"2.0","id":', 22 + 20, cut=True)]
    # The next call starts a new message: taken as is.
    assert f.feed(b'{"next":2}\n') == [Line(b'{"next":2}', 10)]
    # Cut again, and this time the next call goes on with the lost line: skipped to its newline.
    f.feed(b'{"jsonrpc":"2.0","result":{"text":"aaaa', missing=5000)
    assert f.feed(b'aaaa"}}\n{"after":3}\n') == [Line(b'{"after":3}', 11)]
    assert f.lost_bytes == 8
    # A continuation with no newline at all stays lost, and so does the call after it.
    f.feed(b'{"x":"', missing=10)
    assert f.feed(b"yyyy") == [] and f.feed(b'zz"}\n{"y":1}\n') == [Line(b'{"y":1}', 7)]


def test_the_retry_of_a_partial_write_is_dropped():
    f = LineFramer()
    big = b'{"jsonrpc":"2.0","id":1,"result":{"text":"' + b"x" * PIPE_BUF + b'"}}\n'
    assert [line.size for line in f.feed(big, rewrite_check=True)] == [len(big) - 1]
    # The kernel took 3000 bytes; the writer wrote the rest again.
    assert f.feed(big[3000:], rewrite_check=True) == [] and f.rewritten_bytes == len(big) - 3000
    # A write of at most PIPE_BUF is atomic: the same bytes again are a new message.
    small = b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n'
    f.feed(b'{"a":1}\n' + small, rewrite_check=True)
    assert f.feed(small, rewrite_check=True) == [Line(small[:-1], len(small) - 1)]
    # Reads are never taken for retries.
    g = LineFramer()
    g.feed(big)
    assert len(g.feed(big[3000:])) == 1


def test_close_returns_an_unterminated_last_line_as_cut():
    f = LineFramer()
    f.feed(b'{"jsonrpc":"2.0","id":4')
    assert f.close() == Line(b'{"jsonrpc":"2.0","id":4', 23, cut=True)
    assert f.close() is None


def test_scan_prefix_reads_the_members_before_the_cut():
    # Python SDK order: id first.
    values, names = scan_prefix(b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"text":"a \\"}{ b')
    assert values == {"jsonrpc": "2.0", "id": 7} and names == ["jsonrpc", "id", "result"]
    # TypeScript SDK order: the id comes last, after the cut.
    values, names = scan_prefix(b'{"result":{"content":[{"type":"text","text":"xyz"}]},"jsonrpc":"2.0","i')
    assert values == {"jsonrpc": "2.0"} and names == ["result", "jsonrpc"]
    # A number that may go on past the cut is not taken.
    assert scan_prefix(b'{"jsonrpc":"2.0","id":12') == ({"jsonrpc": "2.0"}, ["jsonrpc", "id"])
    assert scan_prefix(b'{"method":"tools/call","id":"a\\u00e9","params":{') == (
        {"method": "tools/call", "id": "a\u00e9"}, ["method", "id", "params"])
    assert scan_prefix(b"not json") == ({}, [])
    assert scan_prefix(b"") == ({}, [])


def test_classify_and_decode():
    assert classify({"jsonrpc": "2.0", "id": 1, "method": "ping"}) == "request"
    assert classify({"jsonrpc": "2.0", "method": "notifications/initialized"}) == "notification"
    assert classify({"jsonrpc": "2.0", "id": "a", "result": {}}) == "response"
    assert classify({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}) == "response"
    for bad in ({"jsonrpc": "1.0", "id": 1, "method": "x"}, {"id": 1, "method": "x"},
                {"jsonrpc": "2.0", "id": True, "method": "x"}, {"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}},
                {"jsonrpc": "2.0", "id": 1}, [], "x"):
        assert classify(bad) is None, bad
    batch = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "a"}, {"jsonrpc": "2.0", "method": "b"}]).encode()
    assert [k for k, _ in decode_messages(batch) or []] == ["request", "notification"]
    assert decode_messages(b'{"jsonrpc":"2.0","id":1}') is None
    assert decode_messages(b'{"id":1,"result":{}}') is None  # no "jsonrpc" member: not read at all
    assert decode_messages(b'{"jsonrpc":"2.0",') is None
    assert id_key(1) != id_key("1")
