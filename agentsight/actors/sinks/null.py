"""Count events and drop them: the end of a benchmark chain."""

from __future__ import annotations

from agentsight.event import Event
from agentsight.pipeline.component import Option, Sink

__all__ = ["NullSink"]


class NullSink(Sink):
    TYPE = "null"
    OPTIONS = {
        "decode": Option(bool, True, "decode events (false: count from frame headers only)"),
    }

    @property
    def raw(self) -> bool:
        return not self.options["decode"]

    def write(self, events: list[Event]) -> None:
        self.count("events", len(events))

    def write_raw(self, count: int) -> None:
        self.count("events", count)
