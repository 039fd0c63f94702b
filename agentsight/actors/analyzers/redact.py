"""Stage ``redact``: remove credentials from every event before sinks and the bus see it.

Headers (authorization, x-api-key, cookies...), bearer tokens, ``sk-...`` style
keys and api keys in JSON or query strings, in text fields and in captured bytes
(``ssl.data``, ``stdio.data``) alike; see :mod:`agentsight.analysis.redact`.
``enabled = false`` (``--disable-auth-removal``) passes events untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentsight.actor import Analyzer, Option
from agentsight.analysis.redact import redact_value
from agentsight.event import Event

__all__ = ["Redact"]


class Redact(Analyzer):
    TYPE = "redact"
    OPTIONS = {
        "enabled": Option(bool, True, "redact (false: pass everything as captured)", live=True),
    }

    def process(self, event: Event) -> Iterable[Event]:
        if self.options["enabled"]:
            event.data = redact_value(event.data)
        return (event,)

    def process_batch(self, events: list[Event]) -> list[Event]:
        if self.options["enabled"]:
            for e in events:
                e.data = redact_value(e.data)
        return events
