"""Stage ``sse``: Server-Sent Events per response stream, merged per exchange.

Wraps :class:`agentsight.analysis.sse.SseMerge`: live ``sse.event`` records as a
stream arrives (``live``), and each ``http.exchange`` whose response is an event
stream gains ``response.sse`` (all events, their data joined, ``[DONE]`` seen).
Every other event passes through. Place it after ``http`` and before ``llm``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.analysis.sse import SseMerge
from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

__all__ = ["Sse"]


class Sse(Analyzer):
    TYPE = "sse"
    CAPS = Capabilities(tick=True)
    DEFAULT_PARTITION = "pid"
    OPTIONS = {
        "live": Option(bool, True, "emit each sse.event as it completes (the merge happens either way)", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.merge = SseMerge(live=self.options["live"], source=name)

    def apply_options(self, changed: set[str]) -> None:
        self.merge.live = self.options["live"]

    def process(self, event: Event) -> Iterable[Event]:
        return self.merge.feed(event)

    def tick(self, now_ns: int) -> Iterable[Event]:
        self.stats["sse_events"] = self.merge.events
        return ()
