"""The one event type that flows between every actor.

An event is what a source saw or an analyzer derived: a dotted topic
(``ssl.data``, ``http.request``, ``llm.call``, ``process.exec``...), when it
happened (wall-clock nanoseconds), which source produced it, the process it is
about, and a ``data`` dict whose values are msgpack types (``bytes`` stays
binary). The per-link sequence number is not part of the event: the link
assigns it when the event is sent (see :mod:`agentsight.wire`).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Event", "now_ns", "repair", "INT_MIN", "INT_MAX"]

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1   # the integers msgpack can carry
MAX_DEPTH = 400                                # msgpack refuses nesting past 511


def now_ns() -> int:
    """Wall-clock nanoseconds, the one clock every event timestamp uses."""
    return time.time_ns()


class Event:
    """One observation. Mutable on purpose: analyzers enrich ``data`` in place."""

    __slots__ = ("topic", "ts_ns", "source", "pid", "tid", "comm", "data")

    def __init__(
        self,
        topic: str,
        ts_ns: int,
        source: str,
        pid: int = 0,
        tid: int = 0,
        comm: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.ts_ns = ts_ns
        self.source = source
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.data = data if data is not None else {}

    def as_tuple(self) -> tuple[str, int, str, int, int, str, dict[str, Any]]:
        """The wire order of the fields (see ``wire.EVENT_FIELDS``)."""
        return (self.topic, self.ts_ns, self.source, self.pid, self.tid, self.comm, self.data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "ts_ns": self.ts_ns,
            "source": self.source,
            "pid": self.pid,
            "tid": self.tid,
            "comm": self.comm,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            str(d["topic"]),
            int(d["ts_ns"]),
            str(d.get("source", "")),
            int(d.get("pid", 0)),
            int(d.get("tid", 0)),
            str(d.get("comm", "")),
            dict(d.get("data") or {}),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return (
            f"Event({self.topic!r}, ts_ns={self.ts_ns}, source={self.source!r}, pid={self.pid}, "
            f"tid={self.tid}, comm={self.comm!r}, data={self.data!r})"
        )


def repair(value: Any, depth: int = 0) -> Any:
    """``value`` made msgpack-able: lone surrogates escaped, out-of-range integers as text,
    tuples as lists, other objects as their repr, nesting cut at ``MAX_DEPTH``."""
    if isinstance(value, str):
        try:
            value.encode()
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float | bytes):
        return value
    if isinstance(value, int):
        return value if INT_MIN <= value <= INT_MAX else str(value)
    if depth >= MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        return {_repair_key(k): repair(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repair(v, depth + 1) for v in value]
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return repr(value)


def _repair_key(k: Any) -> Any:
    if isinstance(k, bytes) or (type(k) is int and INT_MIN <= k <= INT_MAX):
        return k
    return repair(k if isinstance(k, str) else repr(k))
