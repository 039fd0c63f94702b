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

__all__ = ["Event", "now_ns"]


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
