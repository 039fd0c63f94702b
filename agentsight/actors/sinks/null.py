"""Count events and drop them: the end of a benchmark chain."""

from __future__ import annotations

from agentsight.event import Event
from agentsight.pipeline.component import Capabilities, Option, Sink

__all__ = ["NullSink"]


class NullSink(Sink):
    TYPE = "null"
    CAPS = Capabilities(raw_frames=True)
    OPTIONS = {
        "decode": Option(bool, True, "decode events (false: count from frame headers only)"),
    }

    def write(self, events: list[Event]) -> None:
        self.count("events", len(events))

    def write_raw(self, count: int) -> None:
        self.count("events", count)
