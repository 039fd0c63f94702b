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


def data_frames(sender: str, seq: int, events: list[Event]) -> list[bytes]:
    """A data frame as an actor sends one: its header, then the batch."""
    enc = wire.encode_batch(events)
    return [wire.encode_header(wire.DATA, sender, seq, enc.count), enc.body]


def test_batch_round_trip_keeps_bytes_binary():
    events = [ev(i) for i in range(5)]
    header, body = data_frames("sources/ssl", 10, events)
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
    _, body = data_frames("x", 0, [ev(1), ev(2)])
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


def test_an_unencodable_event_is_repaired_or_dropped_alone_and_the_batch_still_encodes():
    good = [ev(i) for i in range(3)]
    surrogate = Event("llm.call", 1, "llm", 1, 1, "node", {"prompt": "cut inside an emoji \ud83d", "\ud800k": 1})
    huge = Event("llm.call", 1, "llm", 1, 1, "node", {"max_tokens": 2 ** 64, "n": [-(2 ** 70)]})
    odd = Event("llm.call", 1, "llm", 1, 1, "node", {"set": {1, 2}, "t": (1, 2)})
    enc = wire.encode_batch([good[0], surrogate, good[1], huge, odd, good[2]])
    assert (enc.count, enc.repaired, enc.dropped) == (6, 3, 0)
    out = wire.decode_events(enc.body, enc.count)
    assert [out[0], out[2], out[5]] == good
    assert out[1].data == {"prompt": "cut inside an emoji \\ud83d", "\\ud800k": 1}
    assert out[3].data == {"max_tokens": str(2 ** 64), "n": [str(-(2 ** 70))]}
    assert out[4].data == {"set": "{1, 2}", "t": [1, 2]}


def test_forged_events_with_wrong_field_types_are_refused():
    def body(row: list) -> bytes:
        return msgpack.packb([row], use_bin_type=True)

    good = ["ssl.data", 1, "ssl", 1, 2, "node", {}]
    assert wire.decode_events(body(good), 1)[0].comm == "node"
    for i, bad in enumerate(([1], "ts", 5, "pid", 2.0, b"comm", [1, 2])):
        row = list(good)
        row[i] = bad
        with pytest.raises(wire.FrameError):
            wire.decode_events(body(row), 1)


@pytest.mark.parametrize("header", [
    (wire.VERSION, wire.DATA, "s", 2 ** 64 - 1, 1),   # an impossible sequence number
    (wire.VERSION, wire.DATA, "s", 1, 2 ** 40),       # an impossible count
    (wire.VERSION, wire.DATA, "", 1, 1),              # no sender
    (wire.VERSION, wire.DATA, "s" * 1000, 1, 1),
    (wire.VERSION, wire.EOS, "s", 1, 3),
    (wire.VERSION, wire.DATA, "s", True, 1),
])
def test_impossible_headers_are_frame_errors(header):
    with pytest.raises(wire.FrameError):
        wire.decode_header(msgpack.packb(header))
