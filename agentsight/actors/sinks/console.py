"""Print events to stdout: readable (coloured on a terminal) or JSON lines."""

from __future__ import annotations

import sys
from typing import Any

from agentsight.commands.render import pretty
from agentsight.event import Event
from agentsight.jsonform import event_to_json
from agentsight.pipeline.component import Option, Sink

__all__ = ["ConsoleSink"]


class ConsoleSink(Sink):
    TYPE = "console"
    OPTIONS = {
        "format": Option(str, "auto", "pretty, json, or auto (pretty on a terminal, json when piped)",
                         choices=("auto", "pretty", "json"), live=True),
        "color": Option(str, "auto", "colour pretty output: auto, always, never",
                        choices=("auto", "always", "never"), live=True),
        "topics": Option(list, [], "only print topics starting with one of these (empty: all)", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._out = sys.stdout

    def write(self, events: list[Event]) -> None:
        o = self.options
        tty = self._out.isatty()
        as_json = o["format"] == "json" or (o["format"] == "auto" and not tty)
        color = o["color"] == "always" or (o["color"] == "auto" and tty)
        prefixes = tuple(o["topics"])
        lines = []
        for e in events:
            if prefixes and not e.topic.startswith(prefixes):
                continue
            lines.append(event_to_json(e) if as_json else pretty(e, color))
        if lines:
            self._out.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            self.count("broken_pipe")
