"""Add fixed fields to every event's data (labels such as host, env, run id).

``fields`` is live: a change in the watched config applies without a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

__all__ = ["Annotate"]


class Annotate(Analyzer):
    TYPE = "annotate"
    CAPS = Capabilities(batch=True)
    OPTIONS = {
        "fields": Option(dict, {}, "fields to set in each event's data", live=True),
        "overwrite": Option(bool, True, "replace a field the event already has", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._items = list(self.options["fields"].items())

    def apply_options(self, changed: set[str]) -> None:
        self._items = list(self.options["fields"].items())

    def process_batch(self, events: list[Event]) -> list[Event]:
        items = self._items
        if self.options["overwrite"]:
            for e in events:
                e.data.update(items)
        else:
            for e in events:
                for k, v in items:
                    e.data.setdefault(k, v)
        return events

    def process(self, event: Event) -> Iterable[Event]:
        data = event.data
        if self.options["overwrite"]:
            data.update(self._items)
        else:
            for k, v in self._items:
                data.setdefault(k, v)
        return (event,)
