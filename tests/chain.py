"""The http -> sse -> llm analysis chain in one process, wired as the http, sse and llm actors wire it.

Tests feed it TLS records, as ``(dir, bytes)`` pairs or as ``ssl.data`` events, and read what
the last two stages emit: the sse stage's output (the http events it passes on, ``sse.event``)
followed, event by event, by what the llm stage makes of each.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentsight.analysis.httpstream import HttpStreams
from agentsight.analysis.llm import LlmCalls
from agentsight.analysis.sse import SseMerge
from agentsight.event import Event

Records = list[tuple[str, bytes]]


def ssl_events(records: Records, *, conn: str = "7:7f00aa", pid: int = 7, comm: str = "claude",
               ts0: int = 1_000_000) -> list[Event]:
    """One ``ssl.data`` event per ``(dir, bytes)`` record, one nanosecond apart from ``ts0``."""
    return [Event("ssl.data", ts0 + i, "ssl", pid, pid, comm, {"conn": conn, "dir": d, "bytes": b, "len": len(b)})
            for i, (d, b) in enumerate(records)]


class Chain:
    """HttpStreams -> SseMerge -> LlmCalls with the actors' default options."""

    def __init__(self) -> None:
        self.http = HttpStreams()
        self.sse = SseMerge()
        self.llm = LlmCalls()

    def feed(self, event: Event) -> list[Event]:
        """What one ``ssl.data`` event makes the sse and llm stages emit."""
        return self._downstream(self.http.feed(event))

    def flush(self) -> list[Event]:
        """End of input: every connection closes."""
        return self._downstream(self.http.flush())

    def run(self, events: Iterable[Event], *, flush: bool = True) -> list[Event]:
        out: list[Event] = []
        for e in events:
            out += self.feed(e)
        return out + self.flush() if flush else out

    def _downstream(self, http_events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for h in http_events:
            for s in self.sse.feed(h):
                out.append(s)
                out += self.llm.feed(s)
        return out


def run_chain(records: Records, *, flush: bool = True) -> list[Event]:
    """Records of one connection through a fresh chain (another connection: ``Chain().run(ssl_events(...))``)."""
    return Chain().run(ssl_events(records), flush=flush)


def llm_calls(events: list[Event]) -> list[Event]:
    return [e for e in events if e.topic == "llm.call"]
