"""Stage ``redact``: remove credentials from every event before sinks and the bus see it.

Headers (authorization, x-api-key, cookies...), bearer tokens, ``sk-...`` style
keys and api keys in JSON or query strings, in text fields and in captured bytes
(``ssl.data``, ``stdio.data``) alike; see :mod:`agentsight.analysis.redact`.
``enabled = false`` (``--disable-auth-removal``) passes events untouched.

Captured byte streams (``ssl.data`` with ``--raw``, ``stdio.data``) are redacted as
streams, per (process, connection or fd, direction): a record's tail that may be
the start of a secret is held back and goes out at the front of the stream's next
record, so a header or key split across two writes is redacted whole. What is held
goes out on its own (same stream, ``"held": true``) when the stream is idle for
``hold_ms``, and at a stop. Nothing is held across a record the capture cut short
(``truncated``): the next one does not continue it.

``redacted_upstream`` names topic prefixes whose events an earlier stage already redacted with
the same rules (the ``http`` stage: ``http.``, ``sse.``; ``llm``: ``llm.``; ``mcp``: ``mcp.``):
they pass untouched, so each byte is redacted once. ``record`` and ``debug`` set it for the
stages they run with redaction on; a pipeline.toml that leaves it empty redacts everything again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from agentsight.analysis.redact import StreamRedactor, redact_value
from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

# Byte-stream records: their topic -> the field that holds the bytes.
STREAMS = {"ssl.data": "bytes", "stdio.data": "bytes"}
MAX_STREAMS = 4096

__all__ = ["Redact"]


class Redact(Analyzer):
    TYPE = "redact"
    CAPS = Capabilities(batch=True, tick=True)
    OPTIONS = {
        "enabled": Option(bool, True, "redact (false: pass everything as captured)", live=True),
        "hold_ms": Option(int, 300, "longest a stream's held-back tail waits for the stream's next record",
                          live=True),
        "redacted_upstream": Option(list, [], "topic prefixes an earlier stage already redacted (passed untouched)",
                                    live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        # stream key -> (its redactor, the last record seen, when its tail was held)
        self._streams: OrderedDict[tuple[Any, ...], tuple[StreamRedactor, Event, float]] = OrderedDict()

    def process(self, event: Event) -> Iterable[Event]:
        if not self.options["enabled"]:
            return (event,)
        field = STREAMS.get(event.topic)
        data = event.data
        if field is None or not isinstance(data.get(field), bytes):
            if not self._upstream(event.topic):
                event.data = redact_value(data)
            return (event,)
        key = (event.topic, event.pid, data.get("conn"), data.get("fd"), data.get("dir"))
        entry = self._streams.pop(key, None)
        redactor = entry[0] if entry is not None else StreamRedactor()
        raw = data[field]
        event.data = redact_value({k: v for k, v in data.items() if k != field})
        event.data[field] = redactor.feed(raw)
        if data.get("truncated"):
            # The capture cut this record: what follows is not its continuation, so nothing is
            # held across the gap (and a capped record keeps every byte it captured).
            event.data[field] += redactor.flush()
        if redactor.held:
            self._streams[key] = (redactor, event, time.monotonic())
            self.count("held_back")
            if len(self._streams) > MAX_STREAMS:
                return [event, *self._release(next(iter(self._streams)))]
        return (event,)

    def process_batch(self, events: list[Event]) -> list[Event]:
        if not self.options["enabled"]:
            return events
        out: list[Event] = []
        for e in events:
            if e.topic in STREAMS:
                out.extend(self.process(e))
            else:
                if not self._upstream(e.topic):
                    e.data = redact_value(e.data)
                out.append(e)
        return out

    def _upstream(self, topic: str) -> bool:
        """An earlier stage redacted this topic's events already."""
        prefixes = self.options["redacted_upstream"]
        return bool(prefixes) and topic.startswith(tuple(prefixes))

    def _release(self, key: tuple[Any, ...]) -> list[Event]:
        redactor, last, _ = self._streams.pop(key)
        tail = redactor.flush()
        if not tail:
            return []
        field = STREAMS[last.topic]
        data = {**last.data, field: tail, "held": True}
        if "len" in data:
            data["len"] = len(tail)
        return [Event(last.topic, last.ts_ns, last.source, last.pid, last.tid, last.comm, data)]

    def tick(self, now_ns: int) -> Iterable[Event]:
        if not self._streams:
            return ()
        due = time.monotonic() - self.options["hold_ms"] / 1000
        out: list[Event] = []
        for key in [k for k, (_, _, since) in self._streams.items() if since <= due]:
            out += self._release(key)
        return out

    def flush(self) -> Iterable[Event]:
        out: list[Event] = []
        for key in list(self._streams):
            out += self._release(key)
        return out
