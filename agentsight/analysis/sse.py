"""Server-Sent Events: an incremental parser and the per-response merge stage.

:class:`SseParser` follows the WHATWG "event stream interpretation" rules:
lines end in CRLF, LF or CR (a CRLF split across two feeds is one line end);
a leading BOM is dropped; ``:`` starts a comment; ``data`` lines are joined
with LF; ``event`` sets the type (default ``message``); ``id`` sets the last
event id unless it contains NUL; ``retry`` is taken only when all ASCII
digits; unknown fields are ignored; a blank line dispatches the event, unless
no data was buffered. At end of stream a half-built event is discarded, as the
spec says; :attr:`SseParser.discarded_tail` tells how many bytes that was.

:class:`SseMerge` is the stage logic: it emits ``sse.event`` live from ``http.stream.chunk``
records. The http stage parses an event stream once, as it arrives (it needs the events to
know where an LLM stream ends): the events ride on each chunk (``events``) and on the
exchange (``response["sse"]``), so this stage only reformats them. Records that do not carry
them (an older recording replayed) are parsed here, as before.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any, NamedTuple

from agentsight.event import Event

__all__ = ["SseEvent", "SseParser", "SseMerge", "parse_sse", "stamp", "merged_message", "merged_dicts",
           "is_event_stream", "DONE", "as_bytes", "clean_timeline"]

DONE = "[DONE]"  # OpenAI-style end-of-stream sentinel carried in a data field
# One whole event of the most common shape (an optional type, one data line), LF-only: read in one match.
_ONE_EVENT = re.compile(rb"(?:event: ?([^\n:]+)\n)?data: ?([^\n]*)\n\n")


class SseEvent(NamedTuple):
    """One dispatched event. ``end`` is the stream offset just past the CR or LF ending it.

    A named tuple: a long stream makes thousands, and a tuple is the cheapest immutable record.
    """

    event: str
    data: str
    id: str | None
    retry: int | None
    end: int
    ts_ns: int | None = None

    @property
    def done(self) -> bool:
        return self.data == DONE

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "data": self.data, "id": self.id, "retry": self.retry, "end": self.end,
                "ts_ns": self.ts_ns}


class SseParser:
    """Incremental parser: :meth:`feed` bytes in any split, get the events they complete."""

    def __init__(self, as_dicts: bool = False) -> None:
        self._as_dicts = as_dicts  # events in their record form (SseEvent.as_dict), as the http stage wants
        self._buf = b""
        self._offset = 0  # stream offset of _buf[0]
        self._started = False
        self._skip_lf = False  # the previous feed ended in CR: a leading LF belongs to it
        self._data: list[str] = []
        self._type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending_bytes = 0  # bytes of lines consumed into the event being built
        self._between = False  # in record form, past the start, and nothing of the next event read yet
        self.comments = 0

    def feed(self, data: bytes, ts_ns: int | None = None) -> list[SseEvent]:
        """Parse more of the stream; returns the events completed by it, stamped with ``ts_ns``."""
        out: list[SseEvent] = []
        if self._between and b"\r" not in data:
            # Between events (nothing of the next one read yet): whole events of the common shape
            # (a type, one data line, LF-only), one match each (the usual record is one event);
            # what is left takes the general path.
            pos, n, match = 0, len(data), _ONE_EVENT.match
            while pos < n:
                m = match(data, pos)
                if m is None:
                    break
                pos = m.end()
                kind = m.group(1)
                out.append({"event": kind.decode("utf-8", "replace") if kind else "message",  # type: ignore[arg-type]
                            "data": m.group(2).decode("utf-8", "replace"), "id": self._last_id,
                            "retry": self._retry, "end": self._offset + pos, "ts_ns": ts_ns})
            if pos:
                self._offset += pos
                if pos == n:
                    return out
                data = data[pos:]
        self._feed(data, ts_ns, out)
        self._between = (self._as_dicts and self._started and not self._pending_bytes and not self._buf
                         and not self._skip_lf)
        return out

    def _feed(self, data: bytes, ts_ns: int | None, out: list[SseEvent]) -> None:
        """:meth:`feed` for any text: line by line."""
        if self._skip_lf and data[:1] == b"\n":
            data = data[1:]
            self._offset += 1
            self._pending_bytes += 1
        self._skip_lf = False
        buf = self._buf + data
        if not self._started:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
                self._offset += 3
        if b"\r" not in buf:
            self._lf_only(buf, ts_ns, out)
            return
        pos = 0
        n = len(buf)
        # Searched once, then again only once passed: an LF-only stream (what OpenAI and Anthropic
        # send) has no CR, and looking for one from every line to the end would be quadratic.
        cr = buf.find(b"\r")
        while pos < n:
            if cr != -1 and cr < pos:
                cr = buf.find(b"\r", pos)
            lf = buf.find(b"\n", pos)
            if cr == -1 and lf == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
                else:
                    nxt = cr + 1
                    self._skip_lf = True  # a LF may follow in the next feed
            else:
                end, nxt = lf, lf + 1
            line = buf[pos:end]
            self._pending_bytes += nxt - pos
            pos = nxt
            # An event ends just past the first byte of its blank line's terminator: the same
            # offset whether or not the LF of a CRLF has arrived yet.
            ev = self._line(line, self._offset + end + 1, ts_ns)
            if ev is not None:
                out.append(ev)
        self._buf = buf[pos:]
        self._offset += pos

    def _lf_only(self, buf: bytes, ts_ns: int | None, out: list[SseEvent]) -> None:
        """:meth:`feed` for text without CR (what OpenAI and Anthropic send): the same rules, with
        the two common fields read inline."""
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        pos = 0
        data = self._data
        for raw in lines:
            end = pos + len(raw)
            if not raw:
                self._pending_bytes += 1
                ev = self._dispatch(self._offset + end + 1, ts_ns)
                data = self._data
                if ev is not None:
                    out.append(ev)
            elif raw.startswith(b"data:"):
                self._pending_bytes += len(raw) + 1
                data.append(raw[6 if raw[5:6] == b" " else 5:].decode("utf-8", "replace"))
            elif raw.startswith(b"event:"):
                self._pending_bytes += len(raw) + 1
                self._type = raw[7 if raw[6:7] == b" " else 6:].decode("utf-8", "replace")
            else:
                self._pending_bytes += len(raw) + 1
                self._line(raw, self._offset + end + 1, ts_ns)
            pos = end + 1
        self._offset += pos

    @property
    def discarded_tail(self) -> int:
        """Bytes of an event not terminated by a blank line (dropped at end of stream)."""
        return self._pending_bytes + len(self._buf) if (self._data or self._buf) else 0

    def _line(self, raw: bytes, end: int, ts_ns: int | None) -> SseEvent | None:
        if not raw:
            return self._dispatch(end, ts_ns)
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            self.comments += 1
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self, end: int, ts_ns: int | None) -> Any:
        self._pending_bytes = 0
        if not self._data:
            self._type = ""
            return None
        ev: Any
        if self._as_dicts:
            ev = {"event": self._type or "message", "data": "\n".join(self._data), "id": self._last_id,
                  "retry": self._retry, "end": end, "ts_ns": ts_ns}
        else:
            ev = SseEvent(self._type or "message", "\n".join(self._data), self._last_id, self._retry, end, ts_ns)
        self._data, self._type = [], ""
        return ev


def as_bytes(value: Any) -> bytes:
    """A body field as bytes: bytes as they are, text encoded, anything else (a forged record) empty."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    return b""


def clean_timeline(timeline: Any) -> list[list[int]]:
    """The ``[[size, ts_ns], ...]`` pairs of a timeline field, without the entries that are not two integers."""
    if not isinstance(timeline, list):
        return []
    return [[p[0], p[1]] for p in timeline
            if isinstance(p, list | tuple) and len(p) >= 2 and type(p[0]) is int and type(p[1]) is int]


def _key(d: dict[str, Any]) -> tuple[str, int]:
    seq = d.get("seq")
    return str(d.get("conn")), seq if type(seq) is int else 0


def stamp(events: list[SseEvent], timeline: Any) -> list[SseEvent]:
    """Give each event the timestamp of the record that delivered its last byte.

    ``timeline`` is the response's ``[[cumulative decoded size, ts_ns], ...]``.
    """
    timeline = clean_timeline(timeline)
    if not timeline:
        return events
    out: list[SseEvent] = []
    i = 0
    for ev in events:
        while i < len(timeline) - 1 and timeline[i][0] < ev.end:
            i += 1
        out.append(SseEvent(ev.event, ev.data, ev.id, ev.retry, ev.end, timeline[i][1]))
    return out


def parse_sse(body: bytes, timeline: Any = None) -> list[SseEvent]:
    """Parse a whole event-stream body, events stamped from ``timeline`` when given."""
    return stamp(SseParser().feed(body), timeline)


def is_event_stream(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).lower().startswith("text/event-stream")


def merged_message(events: list[SseEvent], discarded_tail: int = 0) -> dict[str, Any]:
    """One record for a whole stream: the event list plus what a reader usually wants first."""
    return merged_dicts([e.as_dict() for e in events], discarded_tail)


def merged_dicts(events: list[dict[str, Any]], discarded_tail: int = 0) -> dict[str, Any]:
    """:func:`merged_message` of events already in their record form (``SseEvent.as_dict``)."""
    datas = list(map(itemgetter("data"), events))
    done = DONE in datas
    return {
        "events": events,
        "count": len(events),
        "types": sorted(set(map(itemgetter("event"), events))),
        "done": done,
        "data": "\n".join([d for d in datas if d != DONE] if done else datas),
        "last_event_id": events[-1]["id"] if events else None,
        "discarded_tail": discarded_tail,
    }


class SseMerge:
    """Stage logic between ``http`` and ``llm``: live ``sse.event``s and merged streams.

    - ``http.stream.head`` with an event-stream type opens a parser for (conn, seq).
    - ``http.stream.chunk`` feeds it; each completed event goes out as ``sse.event``
      when ``live`` is on.
    - ``http.exchange`` with an event-stream response gets ``response["sse"]`` (see
      :func:`merged_message`) and is passed on; other events pass through unchanged.
    """

    def __init__(self, *, live: bool = True, source: str = "sse", max_streams: int = 4096) -> None:
        self.live = live
        self.source = source
        self.max_streams = max_streams
        self._streams: dict[tuple[str, int], SseParser] = {}
        self.events = 0

    def feed(self, event: Event) -> list[Event]:
        d = event.data
        if event.topic == "http.stream.chunk":
            parsed = d.get("events")
            if isinstance(parsed, list):  # the http stage parsed the stream: its events travel on
                if self._streams:  # the parser its head opened is not needed
                    self._streams.pop(_key(d), None)
                if not self.live or not parsed:
                    return [event]
                out = [event]
                for ev in parsed:
                    if isinstance(ev, dict):
                        self.events += 1
                        out.append(Event("sse.event", event.ts_ns, self.source, event.pid, event.tid, event.comm,
                                         {"conn": d.get("conn"), "seq": d.get("seq"), **ev}))
                return out
            parser = self._streams.get(_key(d))
            if parser is None or not self.live:
                return [event]
            out = [event]
            for sev in parser.feed(as_bytes(d.get("data")), event.ts_ns):
                self.events += 1
                out.append(Event("sse.event", event.ts_ns, self.source, event.pid, event.tid, event.comm,
                                 {"conn": d.get("conn"), "seq": d.get("seq"), **sev.as_dict()}))
            return out
        if event.topic == "http.stream.head":
            if is_event_stream(d.get("content_type")):
                if len(self._streams) >= self.max_streams:
                    self._streams.pop(next(iter(self._streams)))
                self._streams[_key(d)] = SseParser()
            return [event]
        if event.topic == "http.exchange":
            self._streams.pop(_key(d), None)
            resp = d.get("response")
            if isinstance(resp, dict) and is_event_stream(resp.get("content_type")) and "sse" not in resp:
                parser = SseParser()
                events = stamp(parser.feed(as_bytes(resp.get("body"))), resp.get("timeline"))
                resp["sse"] = merged_message(events, parser.discarded_tail)
        return [event]
