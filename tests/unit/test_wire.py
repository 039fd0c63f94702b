"""The wire format: round trips, binary kept binary, one error type for bad frames."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight import wire
from agentsight.event import Event


def ev(i: int, payload: bytes = b"\x00\xffraw") -> Event:
    return Event("ssl.data", 1_700_000_000_000_000_000 + i, "ssl", 42, 43, "python3",
                 {"bytes": payload, "n": i, "nested": {"k": [1, "two", b"\x01"]}})


def test_batch_round_trip_keeps_bytes_binary():
    events = [ev(i) for i in range(5)]
    header, body = wire.data_frames("sources/ssl", 10, events)
    h = wire.decode_header(header)
    assert (h.kind, h.sender, h.seq, h.count) == (wire.DATA, "sources/ssl", 10, 5)
    assert wire.decode_events(body, 5) == events
    # Captured bytes are msgpack bin on the wire (0xc4..0xc6), never text or base64.
    raw = msgpack.unpackb(body, raw=True)
    assert isinstance(raw[0][6][b"bytes"], bytes)
    assert b"\xc4\x05\x00\xffraw" in body


def test_bus_frames_carry_topic_first_for_prefix_filtering():
    parts = wire.bus_frames("llm.call", "analyzers/llm", 7, [ev(1)])
    assert parts[0] == b"llm.call"
    header, events = wire.decode_bus(parts)
    assert header.seq == 7 and events == [ev(1)]


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", msgpack.packb([99, 0, "x", 0, 1]), msgpack.packb([1, 9, "x", 0, 1]),
    msgpack.packb([1, 0, "x", -1, 1]), msgpack.packb("hello"), msgpack.packb([1, 0, 5, 0, 1]),
])
def test_bad_headers_raise_frame_error(frame):
    with pytest.raises(wire.FrameError):
        wire.decode_header(frame)


@pytest.mark.parametrize("body", [
    b"\x93", msgpack.packb({"a": 1}), msgpack.packb([[1, 2]]), msgpack.packb([["t", "notint", "s", 1, 1, "c", {}]]),
    msgpack.packb([["t", 1, "s", 1, 1, "c", []]]),
])
def test_bad_bodies_raise_frame_error(body):
    with pytest.raises(wire.FrameError):
        wire.decode_events(body)


def test_announced_count_must_match():
    _, body = wire.data_frames("x", 0, [ev(1), ev(2)])
    with pytest.raises(wire.FrameError):
        wire.decode_events(body, 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_frame_error(data):
    for decode in (wire.decode_header, wire.decode_events):
        try:
            decode(data)
        except wire.FrameError:
            pass
