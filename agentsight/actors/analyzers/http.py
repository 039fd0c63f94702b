"""Stage ``http``: HTTP/1.x and HTTP/2 exchanges from TLS plaintext (``ssl.data``).

Wraps :class:`agentsight.analysis.httpstream.HttpStreams` (records in
docs/analyzers.md). Other topics pass through unchanged; a ``process.exit``
also closes that process's connections, so a body delimited by connection close
completes. Workers partition by pid, which keeps every connection (its key is
``"<pid>:<SSL*>"``) and its process's exit on one worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.actor import Analyzer, Option
from agentsight.analysis.httpstream import HttpStreams
from agentsight.event import Event

__all__ = ["Http"]


class Http(Analyzer):
    TYPE = "http"
    DEFAULT_PARTITION = "pid"
    OPTIONS = {
        "redact": Option(bool, True, "replace credentials in headers and bodies", live=True),
        "max_body": Option(int, 32 * 1024 * 1024, "decoded body bytes kept per message (body_size still counts all)",
                           check=lambda v: None if v > 0 else "must be positive"),
        "stream_chunks": Option(str, "streaming", "emit http.stream.head/chunk: none, streaming responses, or all",
                                choices=("none", "streaming", "all")),
        "messages": Option(bool, True, "emit http.request and http.response as well as http.exchange"),
        "raw": Option(bool, False, "pass the ssl.data records on too (debug --http-raw-data)", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        o = self.options
        self.streams = HttpStreams(source=name, redact=o["redact"], max_body=o["max_body"],
                                   stream_chunks=o["stream_chunks"], emit_messages=o["messages"])

    def apply_options(self, changed: set[str]) -> None:
        self.streams.redact = self.options["redact"]

    def process(self, event: Event) -> Iterable[Event]:
        if event.topic == "ssl.data":
            out = self.streams.feed(event)
            return [event, *out] if self.options["raw"] else out
        if event.topic == "process.exit":
            return [event, *self.streams.close_pid(event.pid, event.ts_ns)]
        return (event,)

    def tick(self, now_ns: int) -> Iterable[Event]:
        self.stats.update(self.streams.stats.as_dict())
        return ()

    def flush(self) -> Iterable[Event]:
        out = self.streams.flush()
        self.stats.update(self.streams.stats.as_dict())
        return out
