"""The wire format: msgpack frames between actors, versioned.

Data edges (PUSH/PULL) carry two-part messages::

    part 0  header  msgpack [VERSION, kind, sender, first_seq, count]
    part 1  body    msgpack [event, event, ...]            (DATA only)

    event = [topic, ts_ns, source, pid, tid, comm, data]    (see EVENT_FIELDS)

``kind`` is DATA (a batch of events) or EOS (the sender will send nothing more on
this link: a graceful stop or a removed edge). ``sender`` names the sending actor
instance (``analyzers/http#1``). Sequence numbers count events, per link (one
sender -> one receiving instance): the batch holds events ``first_seq`` ..
``first_seq + count - 1``; the receiver expects the next batch at
``first_seq + count`` and counts any jump as lost events. The header is tiny and
decodes on its own, so a stage can route or count a batch without decoding its
events.

Bus frames (XPUB/XSUB) carry three parts, topic first so that SUB prefix
filtering works::

    [topic (utf-8), header, body]     header kind = BUS, one topic per frame,
                                      sequence per (publisher, topic)

Captured bytes stay msgpack ``bin`` end to end. Anything that does not decode
raises :class:`FrameError`; receivers count those frames and skip them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from agentsight.event import Event

__all__ = [
    "VERSION", "DATA", "EOS", "BUS", "EVENT_FIELDS", "FrameError", "Header",
    "encode_header", "decode_header", "encode_events", "decode_events",
    "data_frames", "eos_frames", "bus_frames", "decode_bus", "pack", "unpack",
]

VERSION = 1
DATA = 0
EOS = 1
BUS = 2
EVENT_FIELDS = ("topic", "ts_ns", "source", "pid", "tid", "comm", "data")


class FrameError(ValueError):
    """A frame that is not a valid agentsight frame of this version."""


@dataclass(frozen=True, slots=True)
class Header:
    kind: int
    sender: str
    seq: int
    count: int


def pack(obj: Any) -> bytes:
    """msgpack with bytes kept as ``bin`` (the control channel uses this too)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable msgpack: {exc}") from None


def encode_header(kind: int, sender: str, seq: int, count: int) -> bytes:
    return msgpack.packb((VERSION, kind, sender, seq, count), use_bin_type=True)


def decode_header(data: bytes) -> Header:
    try:
        version, kind, sender, seq, count = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise FrameError(f"bad frame header: {exc}") from None
    if version != VERSION:
        raise FrameError(f"frame version {version!r}, this agentsight speaks {VERSION}")
    if kind not in (DATA, EOS, BUS) or not isinstance(sender, str) or not isinstance(seq, int) \
            or not isinstance(count, int) or seq < 0 or count < 0:
        raise FrameError("bad frame header fields")
    return Header(kind, sender, seq, count)


def encode_events(events: list[Event]) -> bytes:
    return msgpack.packb(
        [(e.topic, e.ts_ns, e.source, e.pid, e.tid, e.comm, e.data) for e in events],
        use_bin_type=True,
    )


def decode_events(body: bytes, expected: int | None = None) -> list[Event]:
    try:
        items = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise FrameError(f"undecodable event batch: {exc}") from None
    if not isinstance(items, list) or (expected is not None and len(items) != expected):
        raise FrameError("event batch is not a list of the announced length")
    try:
        out = [Event(topic, ts_ns, source, pid, tid, comm, data)
               for topic, ts_ns, source, pid, tid, comm, data in items]
    except (TypeError, ValueError) as exc:
        raise FrameError(f"malformed event: {exc}") from None
    for e in out:
        if type(e.data) is not dict or type(e.topic) is not str or type(e.ts_ns) is not int:
            raise FrameError("event with wrong field types")
    return out


def data_frames(sender: str, seq: int, events: list[Event]) -> list[bytes]:
    return [encode_header(DATA, sender, seq, len(events)), encode_events(events)]


def eos_frames(sender: str, seq: int) -> list[bytes]:
    return [encode_header(EOS, sender, seq, 0)]


def bus_frames(topic: str, publisher: str, seq: int, events: list[Event]) -> list[bytes]:
    return [topic.encode(), encode_header(BUS, publisher, seq, len(events)), encode_events(events)]


def decode_bus(parts: list[bytes]) -> tuple[Header, list[Event]]:
    if len(parts) != 3:
        raise FrameError(f"bus message has {len(parts)} parts, expected 3")
    header = decode_header(parts[1])
    if header.kind != BUS:
        raise FrameError("not a bus frame")
    return header, decode_events(parts[2], header.count)
