"""Stages ``filter``, ``http_filter`` and ``ssl_filter``: drop or keep events by expression.

The expression language is in docs/filters.md. ``exclude`` drops an event that
matches any of its expressions (what the seed's ``--http-filter`` / ``--ssl-filter``
do: take noise out); ``include``, when set, keeps only events that match one of
its expressions. Both apply only to events whose topic starts with one of
``topics``; every other event passes untouched. Expressions are checked when the
config is validated (a bad one is reported with its position) and can be changed
while running.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.analysis.filters import Filter, FilterError, compile_filter
from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

__all__ = ["EventFilter", "HttpFilter", "SslFilter", "check_expressions"]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check_expressions(value: Any) -> str | None:
    """The Option check: a problem message with the position, or None."""
    items = _as_list(value)
    for text in items:
        if not isinstance(text, str):
            return f"expressions must be strings, got {text!r}"
        try:
            compile_filter(text)
        except FilterError as exc:
            return f"bad filter {text!r} at position {exc.position}: {exc}"
    return None


class EventFilter(Analyzer):
    TYPE = "filter"
    CAPS = Capabilities(batch=True)
    OPTIONS = {
        "exclude": Option((str, list), [], "drop events matching any of these expressions", live=True,
                          check=check_expressions),
        "include": Option((str, list), [], "if set, keep only events matching one of these", live=True,
                          check=check_expressions),
        "topics": Option(list, [""], "topic prefixes the filter applies to (others pass)", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._compile()

    def _compile(self) -> None:
        self._exclude: list[Filter] = [compile_filter(t) for t in _as_list(self.options["exclude"])]
        self._include: list[Filter] = [compile_filter(t) for t in _as_list(self.options["include"])]
        self._topics = tuple(self.options["topics"])

    def apply_options(self, changed: set[str]) -> None:
        self._compile()

    def keep(self, event: Event) -> bool:
        if not event.topic.startswith(self._topics):
            return True
        if any(f.matches(event) for f in self._exclude):
            self.count("excluded")
            return False
        if self._include and not any(f.matches(event) for f in self._include):
            self.count("not_included")
            return False
        return True

    def process(self, event: Event) -> Iterable[Event]:
        return (event,) if self.keep(event) else ()

    def process_batch(self, events: list[Event]) -> list[Event]:
        return [e for e in events if self.keep(e)]


class HttpFilter(EventFilter):
    TYPE = "http_filter"
    OPTIONS = {**EventFilter.OPTIONS,
               "topics": Option(list, ["http.", "sse."], "topic prefixes the filter applies to (others pass)",
                                live=True)}


class SslFilter(EventFilter):
    TYPE = "ssl_filter"
    OPTIONS = {**EventFilter.OPTIONS,
               "topics": Option(list, ["ssl."], "topic prefixes the filter applies to (others pass)", live=True)}
