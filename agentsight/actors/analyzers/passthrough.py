"""Forward events unchanged.

With ``decode = false`` the runtime forwards whole frames without decoding the
events in them (only the small header is read and re-stamped): the baseline the
pipeline benchmark compares real stages against.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

__all__ = ["Passthrough"]


class Passthrough(Analyzer):
    TYPE = "passthrough"
    CAPS = Capabilities(raw_frames=True, batch=True)
    OPTIONS = {
        "decode": Option(bool, True, "decode events (false: forward frames as they are)"),
    }

    def process(self, event: Event) -> Iterable[Event]:
        return (event,)

    def process_batch(self, events: list[Event]) -> list[Event]:
        return events
