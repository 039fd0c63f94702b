"""Stage ``http``: HTTP/1.x and HTTP/2 exchanges from TLS plaintext (``ssl.data``).

Wraps :class:`agentsight.analysis.httpstream.HttpStreams` (records in
docs/analyzers.md). Other topics pass through unchanged; a ``process.exit``
also closes that process's connections (so a body delimited by connection close
completes) after ``exit_grace_ms``: the exit comes from another source and can
overtake the process's last TLS records on their way here. Workers partition by pid, which keeps every connection (its key is
``"<pid>:<SSL*>"``) and its process's exit on one worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

if TYPE_CHECKING:
    from agentsight.analysis.httpstream import HttpStreams

__all__ = ["Http"]


class Http(Analyzer):
    TYPE = "http"
    CAPS = Capabilities(tick=True, settle=True)
    DEFAULT_PARTITION = "pid"
    OPTIONS = {
        "redact": Option(bool, True, "replace credentials in headers and bodies", live=True),
        "max_body": Option(int, 32 * 1024 * 1024, "decoded body bytes kept per message (body_size still counts all)",
                           check=lambda v: None if v > 0 else "must be positive"),
        "stream_chunks": Option(str, "streaming", "emit http.stream.head/chunk: none, streaming responses, or all",
                                choices=("none", "streaming", "all")),
        "messages": Option(bool, True, "emit http.request and http.response as well as http.exchange"),
        "raw": Option(bool, False, "pass the ssl.data records on too (debug --http-raw-data)", live=True),
        "exit_grace_ms": Option(int, 1000, "wait this long after a process exits before closing its connections",
                                live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        o = self.options
        # Imported here: an upstream actor imports this module only for DEFAULT_PARTITION.
        from agentsight.analysis.httpstream import HttpStreams

        self.streams: HttpStreams = HttpStreams(source=name, redact=o["redact"], max_body=o["max_body"],
                                   stream_chunks=o["stream_chunks"], emit_messages=o["messages"])
        # pid -> (deadline on tick's clock, None until the first tick after the exit; exit ts_ns)
        self._closing: dict[int, tuple[int | None, int]] = {}

    def apply_options(self, changed: set[str]) -> None:
        self.streams.redact = self.options["redact"]

    def process(self, event: Event) -> Iterable[Event]:
        if event.topic == "ssl.data":
            out = self.streams.feed(event)
            return [event, *out] if self.options["raw"] else out
        if event.topic == "process.exit":
            self._closing[event.pid] = (None, event.ts_ns)
        return (event,)

    def tick(self, now_ns: int) -> Iterable[Event]:
        self.stats.update(self.streams.stats.as_dict())
        if not self._closing:
            return ()
        grace_ns = self.options["exit_grace_ms"] * 1_000_000
        out: list[Event] = []
        for pid, (deadline, exit_ts) in list(self._closing.items()):
            if deadline is None:  # the grace period runs from the first tick that sees the exit
                deadline = now_ns + grace_ns
                self._closing[pid] = (deadline, exit_ts)
            if deadline <= now_ns:
                del self._closing[pid]
                out += self.streams.close_pid(pid, exit_ts)
        return out

    def settle(self, pids: list[int]) -> Iterable[Event]:
        """A barrier passes (every TLS record and exit of these processes is ahead of it): the
        connections of those that exited close now instead of after the grace period."""
        out: list[Event] = []
        for pid in [p for p in pids if p in self._closing]:
            out += self.streams.close_pid(pid, self._closing.pop(pid)[1])
        return out

    def flush(self) -> Iterable[Event]:
        self._closing.clear()
        out = self.streams.flush()
        self.stats.update(self.streams.stats.as_dict())
        return out
