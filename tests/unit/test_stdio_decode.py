"""Decoding stdio.bpf.c records, without bcc."""

from __future__ import annotations

import pytest

from agentsight.actors.sources.stdio import RECORD, decode_stdio


def record(payload: bytes, length: int, direction: int = 1, fd: int = 1) -> bytes:
    return RECORD.pack(42, 43, 0, fd, 100, b"mcp-server", length, direction, len(payload)) + payload


def test_write_whole() -> None:
    ev = decode_stdio(record(b'{"jsonrpc":"2.0"}\n', 18), lambda t: t + 1, "stdio")
    assert (ev.topic, ev.pid, ev.tid, ev.comm, ev.ts_ns) == ("stdio.data", 42, 43, "mcp-server", 101)
    assert ev.data == {"fd": 1, "dir": "write", "bytes": b'{"jsonrpc":"2.0"}\n', "len": 18, "truncated": False}


def test_read_cut() -> None:
    ev = decode_stdio(record(b"abc", 10, direction=0, fd=0), lambda t: t, "stdio")
    assert ev.data["dir"] == "read" and ev.data["truncated"] is True and ev.data["len"] == 10


def test_short_record_is_rejected() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_stdio(record(b"abcdef", 6)[:-2], lambda t: t, "stdio")
