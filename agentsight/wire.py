"""The wire format: msgpack frames between actors, versioned.

Data edges (PUSH/PULL) carry two-part messages::

    part 0  header  msgpack [VERSION, kind, sender, first_seq, count]
    part 1  body    msgpack [event, event, ...]            (DATA only)

    event = [topic, ts_ns, source, pid, tid, comm, data]    (see EVENT_FIELDS)

``kind`` is DATA (a batch of events), EOS (the sender will send nothing more on
this link: a graceful stop or a removed edge) or MARK (a barrier: everything the
sender had before it is ahead of it on the link; part 1 is msgpack ``{"id": str,
"pids": [int]}``, see ``runtime``'s marks). ``sender`` names the sending actor
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
raises :class:`FrameError`; receivers count those frames and skip them. A header
is checked field by field (version, kind, a sender name of at most
``MAX_SENDER`` characters, ``0 <= seq < 2**63``, ``0 <= count <= MAX_COUNT``), and
so is every event (each of the seven fields has its type), so a forged frame is
refused as a whole instead of reaching a component or a recording.

Encoding never raises: :func:`encode_batch` packs a batch in one call and, only if
that fails, event by event, repairing what msgpack refuses (a lone surrogate in a
string, as ``JSON.parse`` yields for a string cut inside an emoji, becomes its
``\\udXXX`` escape; an integer outside 64 bits becomes its decimal text) and
dropping alone, counted, an event that still does not encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from agentsight.event import INT_MAX as _INT_MAX
from agentsight.event import INT_MIN as _INT_MIN
from agentsight.event import Event, repair

__all__ = [
    "VERSION", "DATA", "EOS", "BUS", "MARK", "EVENT_FIELDS", "FrameError", "Header", "Encoded",
    "encode_header", "decode_header", "encode_events", "encode_batch", "repair", "decode_events",
    "eos_frames", "mark_frames", "decode_mark", "bus_frames", "decode_bus", "pack", "unpack",
]

VERSION = 1
DATA = 0
EOS = 1
BUS = 2
MARK = 3
EVENT_FIELDS = ("topic", "ts_ns", "source", "pid", "tid", "comm", "data")
MAX_SEQ = 1 << 63          # sequence numbers never get near this; a header past it is forged or corrupt
MAX_COUNT = 1 << 20        # events per frame (senders cut batches at 512)
MAX_SENDER = 256           # characters of a sender name


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
    if kind not in (DATA, EOS, BUS, MARK) or type(sender) is not str or type(seq) is not int \
            or type(count) is not int or not 0 <= seq < MAX_SEQ or not 0 <= count <= MAX_COUNT \
            or not sender or len(sender) > MAX_SENDER:
        raise FrameError("bad frame header fields")
    if kind in (EOS, MARK) and count:
        raise FrameError("end-of-stream or mark frame with a count")
    return Header(kind, sender, seq, count)


def _row(e: Event) -> tuple[Any, ...]:
    return (e.topic, e.ts_ns, e.source, e.pid, e.tid, e.comm, e.data)


def encode_events(events: list[Event]) -> bytes:
    """Pack a batch; raises (TypeError, ValueError, OverflowError...) if an event is not msgpack-able."""
    return msgpack.packb([_row(e) for e in events], use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A batch body and what it took: ``count`` events in it, ``repaired`` of them fixed, ``dropped`` left out."""

    body: bytes
    count: int
    repaired: int
    dropped: int


def _repair_event(e: Event) -> None:
    """Repair an event in place (so every output and the bus carry the same repaired event)."""
    e.topic = repair(e.topic) if isinstance(e.topic, str) else str(e.topic)
    e.source = repair(e.source) if isinstance(e.source, str) else str(e.source)
    e.comm = repair(e.comm) if isinstance(e.comm, str) else str(e.comm)
    for name in ("ts_ns", "pid", "tid"):
        v = getattr(e, name)
        if type(v) is not int or not _INT_MIN <= v <= _INT_MAX:
            setattr(e, name, 0)
    e.data = repair(e.data) if isinstance(e.data, dict) else {"value": repair(e.data)}


def encode_batch(events: list[Event]) -> Encoded:
    """Pack a batch without ever raising: repair what does not encode, drop alone what still does not."""
    try:
        return Encoded(encode_events(events), len(events), 0, 0)
    except Exception:  # msgpack raises several unrelated types
        pass
    parts: list[bytes] = []
    repaired = dropped = 0
    for e in events:
        try:
            parts.append(msgpack.packb(_row(e), use_bin_type=True))
            continue
        except Exception:
            pass
        try:
            _repair_event(e)
            parts.append(msgpack.packb(_row(e), use_bin_type=True))
            repaired += 1
        except Exception:
            dropped += 1
    head = msgpack.Packer().pack_array_header(len(parts))
    return Encoded(head + b"".join(parts), len(parts), repaired, dropped)


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
        if type(e.data) is not dict or type(e.topic) is not str or type(e.ts_ns) is not int \
                or type(e.source) is not str or type(e.pid) is not int or type(e.tid) is not int \
                or type(e.comm) is not str or not e.topic:
            raise FrameError("event with wrong field types")
    return out


def eos_frames(sender: str, seq: int) -> list[bytes]:
    return [encode_header(EOS, sender, seq, 0)]


def mark_frames(sender: str, seq: int, mark_id: str, pids: list[int]) -> list[bytes]:
    return [encode_header(MARK, sender, seq, 0), pack({"id": mark_id, "pids": list(pids)})]


def decode_mark(body: bytes) -> tuple[str, list[int]]:
    """(id, pids) of a MARK frame's body."""
    m = unpack(body)
    if not isinstance(m, dict) or type(m.get("id")) is not str or not isinstance(m.get("pids"), list) \
            or not all(type(p) is int for p in m["pids"]):
        raise FrameError("bad mark frame")
    return m["id"], m["pids"]


def bus_frames(topic: str, publisher: str, seq: int, events: list[Event]) -> list[bytes]:
    enc = encode_batch(events)
    return [topic.encode(errors="backslashreplace"), encode_header(BUS, publisher, seq, enc.count), enc.body]


def decode_bus(parts: list[bytes]) -> tuple[Header, list[Event]]:
    if len(parts) != 3:
        raise FrameError(f"bus message has {len(parts)} parts, expected 3")
    header = decode_header(parts[1])
    if header.kind != BUS:
        raise FrameError("not a bus frame")
    return header, decode_events(parts[2], header.count)
