"""HTTP exchanges reassembled from TLS plaintext (``ssl.data`` events).

Theory of operation
-------------------
Each TLS connection (``data["conn"]``) has two byte streams: what the traced
process wrote (``dir == "write"``: for an agent, its requests) and what it read
(the responses). :class:`HttpStreams` keeps one :class:`_Conn` per connection:

- The first bytes written decide the protocol: the HTTP/2 preface selects
  :class:`~agentsight.analysis.http2.H2Observer`; anything else is HTTP/1.x.
- HTTP/1.x: each direction has an :class:`_H1Reader`. Heads are validated by h11 (a fresh
  ``h11.Connection`` fed exactly one head); bodies are framed by the reader itself
  (Content-Length, chunked, until close), a few slices per TLS record, so a stream of
  thousands of small chunks costs what its bytes cost. Requests queue up per connection;
  each response head takes the oldest unanswered request (FIFO, which is what HTTP/1.1
  pipelining guarantees). The request method is handed to the response parser so a reply
  to HEAD has no body.
- Malformed bytes never raise out of :meth:`HttpStreams.feed`: the reader
  drops the broken message, scans forward from where it broke to the next plausible start line
  (``GET ``, ``POST ``... or ``HTTP/1.x ``), counts the bytes skipped, emits an
  ``http.error`` event for the connection, and carries on.
- Bodies are decoded while they arrive (gzip/deflate/br/zstd by
  :mod:`~agentsight.analysis.content_coding`).
- WebSocket: once a request offering ``Upgrade: websocket`` has ended, the bytes
  the client writes next are held until its response head: a ``101`` that accepts
  the upgrade turns the connection into two
  :class:`~agentsight.analysis.websocket.WsReader` (the held bytes and what
  follows the 101 are frames), any other status releases them to HTTP again.

Emitted event topics (fields in ``docs/analyzers.md``):

=====================  ======================================================
``http.stream.head``   a response head arrived (first-byte time), before body
``http.stream.chunk``  decoded body bytes of a streaming response, per record
``http.request``       a complete (or abandoned) request
``http.response``      a complete (or abandoned) response
``http.exchange``      request and response paired, with the timestamps
``http.error``         malformed bytes on a connection (reason, bytes skipped)
``http.ws``            a complete WebSocket message (text, binary or close)
``http.ws.end``        a WebSocket connection ended (its message counts)
=====================  ======================================================
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import h11

from agentsight.analysis.content_coding import ContentDecoder
from agentsight.analysis.dialects import END_DATA, END_EVENTS, stream_ended
from agentsight.analysis.http2 import PREFACE, H2Data, H2Error, H2Headers, H2Observer, H2Reset
from agentsight.analysis.redact import StreamRedactor, redact_bytes, redact_headers, redact_text
from agentsight.analysis.sse import SseParser, merged_dicts
from agentsight.analysis.websocket import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsError,
    WsMessage,
    WsReader,
    is_websocket_upgrade,
    negotiated_deflate,
)
from agentsight.event import Event

__all__ = ["HttpStreams", "HttpStats", "StreamChunks", "STREAMING_CONTENT_TYPES", "header_value", "jsonrpc_request_id",
           "jsonrpc_answered"]

StreamChunks = Literal["none", "streaming", "all"]

# Content types whose body is worth surfacing chunk by chunk while it arrives.
STREAMING_CONTENT_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")

_REQUEST_START = re.compile(rb"(?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS|CONNECT|TRACE) ")
_RESPONSE_START = re.compile(rb"HTTP/1\.[01] ")
_HOLD = 8  # bytes kept while scanning: a start token cut at a record boundary is not missed
_BYTES = (bytes, bytearray, memoryview)
_SEQUENCES = (list, tuple)
_MAX_HEAD = 256 * 1024
_MAX_HELD = 1 << 20  # client bytes held while a websocket upgrade waits for its answer


@dataclass(slots=True)
class HttpStats:
    """Counters for the heartbeat; ``malformed`` counts parse errors, ``skipped_bytes`` what they cost."""

    records: int = 0
    bytes: int = 0
    requests: int = 0
    responses: int = 0
    exchanges: int = 0
    malformed: int = 0
    skipped_bytes: int = 0
    connections: int = 0
    capture_gap_bytes: int = 0
    ws_connections: int = 0  # upgrades to websocket seen
    ws_messages: int = 0  # http.ws records (text, binary, close)
    ws_control: int = 0  # ping/pong frames (counted, not emitted)
    ws_dropped: int = 0  # data messages cut short by a bad frame or the connection's end
    ws_truncated: int = 0  # messages longer than max_body (kept up to it)
    ws_decode_errors: int = 0  # compressed messages that did not inflate

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- HTTP/1 reader

# What a reader reports, as (op, arg): ("head", _Head) | ("end", None) | ("abort", reason)
# | ("error", reason) | ("skip", nbytes) | ("switch", (101 _Head, bytes after it)).
# Reported through a callback, at once, so the owner pairs a response head before the reader starts
# parsing the next response. Body bytes, the most frequent by far, go straight to the reader's
# ``body`` callable (the message's ``add``, set by the owner when it takes the head).
_Sink = Callable[[str, Any], None]
_Body = Callable[[bytes, int], None]
_BLANK_LINE = re.compile(rb"\n\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_MAX_CHUNK_LINE = 4096
_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(slots=True)
class _Head:
    """A parsed request or response head (names lower case, values as sent, latin-1)."""

    method: str
    target: str
    http_version: str
    headers: list[list[str]]
    status_code: int = 0
    reason: str = ""


# Reader states: where the next byte goes.
_HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _SCAN, _SWITCHED = range(9)


class _H1Reader:
    """One direction of an HTTP/1 connection: bytes in, message events out, with resync.

    Heads are validated by h11 (one fresh ``h11.Connection`` per head, fed exactly its bytes), so
    what h11 refuses is refused here, with h11's reason. Bodies are framed here (Content-Length,
    chunked, until close, none for a response to HEAD, 1xx, 204, 304), which costs a few slices per
    TLS record instead of h11's per-event machinery, and knows exactly where a framing error is:
    resync starts there.
    """

    def __init__(self, is_request: bool, next_request: Callable[[], tuple[str, bool]]) -> None:
        self._is_request = is_request
        self._next_request = next_request  # (method, offered a websocket upgrade) of the request answered next
        self._state = _HEAD
        self._buf = b""  # head bytes so far, a partial chunk line, or the tail kept while scanning
        self._searched = 0  # how far _buf was searched for the head's end
        self._left = 0  # body or chunk bytes still to come
        self._held: bytearray | None = None  # bytes kept unparsed while a protocol switch is pending
        self._method = "GET"  # of the request the response being read answers
        self.message_ts = 0  # ts of the record that delivered the current message's first byte
        self.in_message = False
        self.body: _Body | None = None  # where the current message's body bytes go (None: nowhere)

    def hold(self) -> None:
        """Keep the bytes that follow unparsed (a websocket upgrade waits for its answer)."""
        if self._held is None:
            self._held = bytearray()

    def release(self) -> bytes:
        """Stop holding; returns the bytes held."""
        held, self._held = self._held, None
        return bytes(held or b"")

    def whole_chunk(self, data: bytes) -> bytes | None:
        """The payload of ``data`` when it is exactly one whole non-empty chunk of the body being
        read, between chunks, its size line plain hex: a streamed answer's usual TLS record (the
        server flushed one event), read with a find, no regex. None for anything else, which
        :meth:`feed` reads (the reader's state is left as it was either way: between chunks)."""
        if self._state != _CHUNK_LINE or self._buf or self._held is not None:
            return None
        eol = data.find(b"\r\n", 0, 18)
        if eol > 0 and not data[:eol].strip(_HEX_DIGITS):
            start = eol + 2
            stop = start + int(data[:eol], 16)
            if stop > start and stop + 2 == len(data) and data.endswith(b"\r\n"):
                return data[start:stop]
        return None

    def feed(self, data: bytes, ts: int, out: _Sink) -> None:
        piece = self.whole_chunk(data)
        if piece is not None:
            if self.body is not None:
                self.body(piece, ts)
            return
        if self._held is not None:
            self._hold(data, out)
            return
        if self._buf:
            data, self._buf = self._buf + data, b""
        pos, n = 0, len(data)
        while pos < n:
            if self._held is not None:
                self._hold(data[pos:], out)
                return
            state = self._state
            if state == _CHUNK_LINE:  # between chunks: the most frequent state of a stream
                m = _CHUNK_SIZE.match(data, pos)
                if m is not None:
                    # The common case first: a whole chunk and its CRLF in this record.
                    size = int(m.group(1), 16)
                    start = m.end()
                    stop = start + size
                    if size and data.startswith(b"\r\n", stop):
                        if self.body is not None:
                            self.body(data[start:stop], ts)
                        pos = stop + 2
                        continue
                if m is None:
                    if n - pos < _MAX_CHUNK_LINE and b"\n" not in data[pos:pos + _MAX_CHUNK_LINE]:
                        self._buf = data[pos:]
                        return
                    pos = self._fail("bad chunk header", data, pos, ts, out)
                    continue
                pos = m.end()
                self._left = int(m.group(1), 16)
                self._state = _CHUNK_DATA if self._left else _TRAILERS
            elif state == _LENGTH or state == _CHUNK_DATA:
                take = min(self._left, n - pos)
                if self.body is not None:
                    self.body(data[pos:pos + take], ts)
                pos += take
                self._left -= take
                if not self._left:
                    if state == _LENGTH:
                        self._end(out)
                    else:
                        self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if data[pos:pos + 2] == b"\r\n"[: n - pos] and n - pos < 2:
                    self._buf = data[pos:]
                    return
                if data.startswith(b"\r\n", pos):
                    pos += 2
                elif data.startswith(b"\n", pos):
                    pos += 1
                else:
                    pos = self._fail("missing CRLF after a chunk", data, pos, ts, out)
                    continue
                self._state = _CHUNK_LINE
            elif state == _TRAILERS:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    if n - pos > _MAX_HEAD:
                        pos = self._fail("trailers too long", data, pos, ts, out)
                        continue
                    self._buf = data[pos:]
                    return
                line, pos = data[pos:eol], eol + 1
                if line in (b"", b"\r"):
                    self._end(out)
            elif state == _UNTIL_CLOSE:
                if self.body is not None:
                    self.body(data[pos:], ts)
                return
            elif state == _SCAN:
                self._state = _HEAD
                pos = self._resync(data, pos, ts, out)
            elif state == _SWITCHED:
                return
            else:  # _HEAD
                pos = self._head(data, pos, ts, out)

    def _hold(self, data: bytes, out: _Sink) -> None:
        held = self._held
        assert held is not None
        room = _MAX_HELD - len(held)
        held += data[:room]
        if len(data) > room:
            out("skip", len(data) - max(room, 0))

    def close(self, ts: int, out: _Sink) -> None:
        """The connection ended: a body delimited by close completes, anything else is abandoned."""
        state, self._state = self._state, _SWITCHED
        if state == _UNTIL_CLOSE:
            self.in_message = False
            out("end", None)
        elif self.in_message:
            self.in_message = False
            if state in (_CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS):
                why = "peer closed connection without sending complete message body (incomplete chunked read)"
            elif state == _LENGTH:
                why = f"peer closed connection without sending complete message body ({self._left} bytes short)"
            else:
                why = "peer closed connection without sending complete message body"
            out("abort", why)
            out("error", why)
        elif state == _HEAD and self._buf:
            out("error", "peer closed connection mid-head")
        self._buf = b""

    def _end(self, out: _Sink) -> None:
        self._state, self.in_message = _HEAD, False
        out("end", None)

    def _head(self, data: bytes, pos: int, ts: int, out: _Sink) -> int:
        """Parse a head at ``data[pos:]``; returns where the body (or what follows) starts."""
        if pos == len(data):
            return pos
        if self._searched == 0:
            self.message_ts = ts
        m = _BLANK_LINE.search(data, pos + max(0, self._searched - 2))
        if m is None:
            self._searched = len(data) - pos
            if self._searched > _MAX_HEAD:
                self._searched = 0
                out("error", "head too long")
                return self._resync(data, pos + 1, ts, out)
            self._buf = data[pos:]
            return len(data)
        self._searched = 0
        end = m.end()
        try:
            head = self._parse_head(data[pos:end])
        except h11.RemoteProtocolError as exc:
            out("error", str(exc) or type(exc).__name__)
            return self._resync(data, pos + 1, ts, out)
        if head is None:  # 1xx: the final head follows
            return end
        if head.status_code == 101:
            self._state = _SWITCHED
            out("switch", (head, data[end:]))
            return len(data)
        self.in_message = True
        out("head", head)
        length = self._framing(head)
        if length is None:
            self._state = _CHUNK_LINE
        elif length == -1:
            self._state = _UNTIL_CLOSE
        elif length:
            self._state, self._left = _LENGTH, length
        else:
            self._end(out)
        return end

    def _parse_head(self, raw: bytes) -> _Head | None:
        """h11's reading of one head; None for an informational (1xx, not 101) response."""
        if self._is_request:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
            header_pairs: list[tuple[str, str]]
        else:
            # h11 parses a response only after "sending" its request; the method decides
            # whether a body follows (HEAD), an Upgrade header lets a 101 switch protocols.
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
            self._method, upgrade = self._next_request()
            header_pairs = [("Host", "observed")]
            if upgrade:
                header_pairs += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
            conn.send(h11.Request(method=self._method, target="/", headers=header_pairs))
            conn.send(h11.EndOfMessage())
        conn.receive_data(raw)
        ev = conn.next_event()
        if not isinstance(ev, h11.Request | h11.Response | h11.InformationalResponse):
            raise h11.RemoteProtocolError(f"unexpected {type(ev).__name__}")
        headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in ev.headers]
        version = ev.http_version.decode()
        if isinstance(ev, h11.Request):
            return _Head(ev.method.decode("latin-1"), ev.target.decode("latin-1"), version, headers)
        if isinstance(ev, h11.InformationalResponse) and ev.status_code != 101:
            return None
        return _Head("", "", version, headers, ev.status_code, ev.reason.decode("latin-1"))

    def _framing(self, head: _Head) -> int | None:
        """Body length; None for chunked, -1 for until close."""
        te = cl = None
        for name, value in head.headers:
            if name == "transfer-encoding":
                te = value
            elif name == "content-length":
                cl = value
        if not self._is_request and (self._method == "HEAD" or head.status_code in (204, 304)):
            return 0
        if te is not None:
            return None  # h11 refused any transfer coding but chunked
        if cl is not None:
            return int(cl.split(",")[0])
        return 0 if self._is_request else -1

    def _fail(self, reason: str, data: bytes, pos: int, ts: int, out: _Sink) -> int:
        """A body's framing broke at ``data[pos]``: abandon the message, resync from there."""
        self._state = _HEAD
        if self.in_message:
            out("abort", reason)
            self.in_message = False
        out("error", reason)
        return self._resync(data, pos, ts, out)

    def _resync(self, data: bytes, start: int, ts: int, out: _Sink) -> int:
        """Skip to the next start line in ``data[start:]``, or keep a short tail to search later."""
        self._searched = 0
        rx = _REQUEST_START if self._is_request else _RESPONSE_START
        m = rx.search(data, start)
        if m is not None:
            if m.start() > start:
                out("skip", m.start() - start)
            return m.start()
        keep = max(start, len(data) - _HOLD)
        if keep > start:
            out("skip", keep - start)
        self._buf = data[keep:]
        self._state = _SCAN
        return len(data)


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class _Message:
    """A request or response being assembled."""

    is_request: bool
    head: dict[str, Any]
    headers: list[list[str]]
    ts_start: int
    decoder: ContentDecoder
    max_body: int
    stream_chunks: bool = False
    body: bytearray = field(default_factory=bytearray)
    wire_size: int = 0
    truncated: bool = False
    complete: bool = False
    error: str | None = None
    ts_end: int = 0
    timeline: list[list[int]] = field(default_factory=list)
    pending_chunk: list[bytes] = field(default_factory=list)  # decoded pieces of this record, not yet out
    chunk_offset: int = 0
    decoded_size: int = 0
    out: dict[str, Any] | None = None
    event_stream: bool = False
    redactor: StreamRedactor | None = None  # streamed chunks: a secret split across them goes whole
    sse: SseParser | None = None  # an event stream, parsed as it arrives
    sse_events: list[dict[str, Any]] = field(default_factory=list)
    body_redacted: bool = False  # the body was assembled from redacted chunks
    content_type: str | None = None
    direct: bool = False  # streamed and not content-coded: a record's body bytes go out as they came

    def __post_init__(self) -> None:
        self.direct = (self.stream_chunks or self.event_stream) and not self.decoder.codings

    @property
    def streamed(self) -> bool:
        """Decoded bytes go out per TLS record (chunks, events) before the body is whole."""
        return self.stream_chunks or self.event_stream

    def add(self, data: bytes, ts: int) -> None:
        """Body bytes as they came on the wire (a few times per TLS record: kept lean)."""
        if self.out is not None:  # finished (a stream's end event came first): what follows is framing
            return
        self.wire_size += len(data)
        if self.decoder.codings:
            data = self.decoder.decode(data)
            if not data:
                return
        self.count(data, ts)
        if self.stream_chunks or self.event_stream:
            self.pending_chunk.append(data)  # the body grows at the record's end, from what goes out
        else:
            self.keep(data)

    def count(self, data: bytes, ts: int) -> None:
        """Decoded bytes arrived with the record at ``ts``: the size and the timeline."""
        size = self.decoded_size = self.decoded_size + len(data)
        timeline = self.timeline
        if timeline and timeline[-1][1] == ts:
            timeline[-1][0] = size
        else:
            timeline.append([size, ts])

    def keep(self, data: bytes) -> None:
        """Add to the body, up to ``max_body``."""
        room = self.max_body - len(self.body)
        if room > 0:
            self.body += data[:room]
        if len(data) > room:
            self.truncated = True


@dataclass(slots=True)
class _Exchange:
    seq: int
    stream_id: int | None = None
    request: _Message | None = None
    response: _Message | None = None
    emitted: bool = False
    upgrade: bool = False  # the request offered Upgrade: websocket
    rpc_id: str | None = None  # the request is one JSON-RPC request (MCP): its id, as JSON
    rpc_read: bool = False  # rpc_id was looked for (when an event first looked like a JSON-RPC message)


@dataclass(slots=True)
class _WsLink:
    """A connection upgraded to WebSocket: one frame reader per direction, and its upgrade request."""

    seq: int
    host: str | None
    path: str | None
    ts_open: int
    client: WsReader
    server: WsReader
    sent: int = 0  # client -> server messages so far
    received: int = 0  # server -> client messages so far


def jsonrpc_request_id(body: bytes | bytearray) -> str | None:
    """The id (as JSON text) of a body that is one JSON-RPC 2.0 request, else None."""
    if not body[:1] == b"{" or b'"jsonrpc"' not in body:
        return None
    try:
        msg = json.loads(bytes(body))
    except (ValueError, RecursionError):
        return None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
        return None
    rid = msg.get("id")
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        return None
    return json.dumps(rid)


def _answers(data: str, rpc_id: str) -> bool:
    """Whether an event's data is the JSON-RPC response to request ``rpc_id``."""
    if '"jsonrpc"' not in data:
        return False
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and "method" not in msg
            and ("result" in msg or "error" in msg) and json.dumps(msg.get("id")) == rpc_id)


def jsonrpc_answered(body: bytes | bytearray, rpc_id: str) -> bool:
    """Whether an event stream's last complete event is the JSON-RPC response to request ``rpc_id``.

    An MCP server answers a POSTed request on an event stream that ends with the response;
    clients stop reading there, so the chunked terminator may never be read (or captured).
    """
    if not body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
        return False
    tail = bytes(body[-(256 << 10):]).replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n")
    event = tail.rsplit(b"\n\n", 1)[-1]
    data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
    if b'"jsonrpc"' not in data:
        return False
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and "method" not in msg
            and ("result" in msg or "error" in msg) and json.dumps(msg.get("id")) == rpc_id)


def header_value(headers: Any, name: str) -> str | None:
    """The first value of header ``name`` (lower case) in a list of [name, value] pairs.

    Tolerates anything as ``headers`` (records may come from a replayed file), so the
    LLM extractor uses it on exchange dicts as well.
    """
    if not isinstance(headers, _SEQUENCES):
        return None
    for pair in headers:
        if isinstance(pair, _SEQUENCES) and len(pair) == 2:
            key = pair[0]
            if key == name or (type(key) is not str or not key.islower()) and str(key).lower() == name:
                return str(pair[1])
    return None


def _alone(message: dict[str, Any]) -> dict[str, Any]:
    """A message's record as ``http.request``/``http.response`` carry it: a body cut at max_body
    is left to the exchange, so it travels once."""
    if message["body_truncated"]:
        return {**message, "body": b""}
    return message


def _text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _utf8_prefix(body: bytes) -> str | None:
    """A cut UTF-8 text: decoded without the partial character the cut may have left at its end."""
    for cut in range(4):
        text = _text(body[: len(body) - cut])
        if text is not None:
            return text
    return None


class _Conn:
    """State of one TLS connection."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.proto: str | None = None  # None (undecided), "h1", "h2", "ws" (after a 101), "upgraded" (unread)
        self.probe = b""  # first written bytes, until they rule the HTTP/2 preface in or out
        self.early_reads: list[tuple[bytes, int]] = []
        self.awaiting: deque[_Exchange] = deque()
        self.seq = 0
        self.requests = _H1Reader(True, lambda: ("GET", False))
        self.responses = _H1Reader(False, self._next_request)
        self.req_ex: _Exchange | None = None  # exchange whose request is being read
        self.resp_ex: _Exchange | None = None  # exchange whose response is being read
        self.h2: H2Observer | None = None
        self.h2_streams: dict[int, _Exchange] = {}
        self.ws: _WsLink | None = None
        self.malformed = 0
        self.skipped = 0
        self.ended_early = False  # the response being read was finished at its stream's end event
        self.pid = self.tid = 0
        self.comm = ""
        self.last_ts = 0

    def _next_request(self) -> tuple[str, bool]:
        for ex in self.awaiting:
            if ex.request is not None:
                return str(ex.request.head["method"]), ex.upgrade
        return "GET", False

    def new_exchange(self, stream_id: int | None = None) -> _Exchange:
        ex = _Exchange(self.seq, stream_id)
        self.seq += 1
        return ex


class HttpStreams:
    """Reassembles HTTP exchanges from ``ssl.data`` events of any number of connections.

    Sans-IO: :meth:`feed` takes one event and returns the derived events; it
    never raises on bad bytes. Call :meth:`close_connection` when a connection
    ends (or :meth:`close_pid` when its process exits) and :meth:`flush` at
    the end of a run, so bodies delimited by connection close complete and
    half-received messages are reported as incomplete.
    """

    def __init__(
        self,
        *,
        source: str = "http",
        redact: bool = True,
        max_body: int = 32 * 1024 * 1024,
        stream_chunks: StreamChunks = "streaming",
        emit_messages: bool = True,
        max_connections: int = 8192,
        stream_end: Callable[[str, str], bool] = stream_ended,
    ) -> None:
        self.source = source
        # Which event ends an event stream (clients stop reading there): the LLM dialects know.
        self.stream_end = stream_end
        self.redact = redact
        self.max_body = max_body
        self.stream_chunks = stream_chunks
        self.emit_messages = emit_messages
        self.max_connections = max_connections
        self.stats = HttpStats()
        self._conns: dict[str, _Conn] = {}

    # ------------------------------------------------------------------ public API

    def feed(self, event: Event) -> list[Event]:
        """Take one ``ssl.data`` event; return ``http.*`` events it completed (other topics: [])."""
        if event.topic != "ssl.data":
            return []
        data = event.data
        payload = data.get("bytes")
        key = data.get("conn")
        if type(payload) is not bytes:
            if not isinstance(payload, _BYTES):
                return []
            payload = bytes(payload)
        if key is None:
            return []
        gap = data.get("truncated")
        if gap and isinstance(gap, int) and gap > 0:
            # The capture cut this call short: stand NUL bytes in for the missing ones so the
            # message framing (Content-Length) still lines up with what follows on the connection.
            self.stats.capture_gap_bytes += gap
            payload += bytes(gap)
        stats = self.stats
        stats.records += 1
        stats.bytes += len(payload)
        if type(key) is not str:
            key = str(key)
        conn = self._conns.get(key)
        out: list[Event] = []
        if conn is None:
            if len(self._conns) >= self.max_connections:  # forget the least recently created one
                out += self.close_connection(next(iter(self._conns)), event.ts_ns)
            conn = self._conns[key] = _Conn(key)
            stats.connections = len(self._conns)
        ts = event.ts_ns
        conn.pid, conn.tid, conn.comm, conn.last_ts = event.pid, event.tid, event.comm, ts
        is_write = data.get("dir") == "write"
        proto = conn.proto
        if proto == "h1":  # the usual: straight on
            if is_write:
                self._feed_h1_requests(conn, payload, ts, out)
            else:
                self._feed_h1_responses(conn, payload, ts, out)
            return out
        if proto is None and not self._decide(conn, payload, is_write, ts, out):
            return out
        if conn.proto == "h2":
            self._feed_h2(conn, is_write, payload, ts, out)
        elif conn.proto == "ws":
            self._feed_ws(conn, is_write, payload, ts, out)
        elif conn.proto == "upgraded":
            pass  # switched to a protocol other than websocket: nothing here reads it
        elif is_write:
            self._feed_h1_requests(conn, payload, ts, out)
        else:
            self._feed_h1_responses(conn, payload, ts, out)
        return out

    def close_connection(self, key: str, ts_ns: int | None = None) -> list[Event]:
        """The connection ended: finish what close delimits, report the rest as incomplete."""
        conn = self._conns.pop(key, None)
        self.stats.connections = len(self._conns)
        if conn is None:
            return []
        ts = ts_ns if ts_ns is not None else conn.last_ts
        out: list[Event] = []
        if conn.proto == "h1":
            conn.requests.close(ts, lambda op, arg: self._h1_request_op(conn, op, arg, ts, out))
            conn.responses.close(ts, lambda op, arg: self._h1_response_op(conn, op, arg, ts, out))
        if conn.ws is not None:
            self._end_ws(conn, conn.ws, ts, out)
        pending = list(conn.awaiting) + list(conn.h2_streams.values())
        for ex in (conn.req_ex, conn.resp_ex, *pending):
            if ex is None:
                continue
            if ex.request is not None and not ex.request.complete and ex.request.out is None:
                self._finish_request(conn, ex, ts, out, error="connection closed mid-request")
            if ex.response is not None and not ex.response.complete and ex.response.out is None:
                self._finish_response(conn, ex, ts, out, error="connection closed mid-response")
            if ex.request is not None and ex.response is None:
                self._emit_exchange(conn, ex, ts, out)  # a request that never got an answer
        return out

    def close_pid(self, pid: int, ts_ns: int | None = None) -> list[Event]:
        """The process exited: close every connection it owned."""
        out: list[Event] = []
        for key in [k for k, c in self._conns.items() if c.pid == pid or k.startswith(f"{pid}:")]:
            out += self.close_connection(key, ts_ns)
        return out

    def flush(self) -> list[Event]:
        """End of input: close every connection."""
        out: list[Event] = []
        for key in list(self._conns):
            out += self.close_connection(key)
        return out

    # ------------------------------------------------------------------ protocol choice

    def _decide(self, conn: _Conn, payload: bytes, is_write: bool, ts: int, out: list[Event]) -> bool:
        """Pick h1 or h2 from the first written bytes; False while undecided (bytes are kept)."""
        if not is_write:
            if conn.probe and PREFACE.startswith(conn.probe):
                conn.early_reads.append((payload, ts))
                return False
            conn.proto = "h1"
            return True
        probe = conn.probe + payload
        if len(probe) < len(PREFACE) and PREFACE.startswith(probe):
            conn.probe = probe
            return False
        conn.probe = b""
        if probe.startswith(PREFACE):
            conn.proto, conn.h2 = "h2", H2Observer()
            self._feed_h2(conn, True, probe, ts, out)
            for data, rts in conn.early_reads:
                self._feed_h2(conn, False, data, rts, out)
        else:
            conn.proto = "h1"
            self._feed_h1_requests(conn, probe, ts, out)
            for data, rts in conn.early_reads:
                self._feed_h1_responses(conn, data, rts, out)
        conn.early_reads = []
        return False

    # ------------------------------------------------------------------ HTTP/1

    def _feed_h1_requests(self, conn: _Conn, payload: bytes, ts: int, out: list[Event]) -> None:
        conn.requests.feed(payload, ts, lambda op, arg: self._h1_request_op(conn, op, arg, ts, out))

    def _feed_h1_responses(self, conn: _Conn, payload: bytes, ts: int, out: list[Event]) -> None:
        ex = conn.resp_ex
        if ex is not None:
            # A streamed answer's usual record, one whole chunk of an uncompressed body: straight out.
            resp = ex.response
            if resp is not None and resp.direct and resp.out is None and not resp.pending_chunk:
                piece = conn.responses.whole_chunk(payload)
                if piece is not None:
                    resp.wire_size += len(piece)
                    resp.count(piece, ts)
                    self._chunk_out(conn, ex, resp, piece, ts, out, False)
                    return
        conn.responses.feed(payload, ts, lambda op, arg: self._h1_response_op(conn, op, arg, ts, out))
        ex = conn.resp_ex
        if ex is not None and ex.response is not None:
            self._flush_chunk(conn, ex, ts, out)

    def _h1_request_op(self, conn: _Conn, op: str, arg: Any, ts: int, out: list[Event]) -> None:
        ex = conn.req_ex
        if op == "head":
            ex = conn.req_ex = conn.new_exchange()
            ex.request = self._request_message(arg.method, arg.target, arg.http_version, arg.headers,
                                               conn.requests.message_ts)
            ex.upgrade = is_websocket_upgrade(header_value(ex.request.headers, "upgrade"))
            conn.awaiting.append(ex)
            conn.requests.body = ex.request.add
        elif op in ("end", "abort") and ex is not None:
            conn.requests.body = None
            self._finish_request(conn, ex, ts, out, error=arg if op == "abort" else None)
            conn.req_ex = None
            if op == "end" and ex.upgrade:
                conn.requests.hold()  # frames may follow, if the answer is 101
        else:
            self._error_op(conn, "write", op, arg, ts, out)

    def _h1_response_op(self, conn: _Conn, op: str, arg: Any, ts: int, out: list[Event]) -> None:
        ex = conn.resp_ex
        if op == "switch":
            self._switch(conn, arg[0], arg[1], ts, out)
        elif op == "head":
            ex = conn.awaiting.popleft() if conn.awaiting else conn.new_exchange()
            conn.resp_ex, conn.ended_early = ex, False
            ex.response = self._response_message(arg.status_code, arg.reason, arg.http_version, arg.headers,
                                                 conn.responses.message_ts)
            conn.responses.body = ex.response.add
            self._emit_head(conn, ex, out)
            if ex.upgrade:  # the upgrade was refused: what the client wrote next is HTTP after all
                self._feed_h1_requests(conn, conn.requests.release(), ts, out)
        elif op in ("end", "abort") and ex is not None:
            conn.responses.body = None
            self._finish_response(conn, ex, ts, out, error=arg if op == "abort" else None)
            conn.resp_ex = None
        elif op == "error" and conn.ended_early:
            conn.ended_early = False  # the connection closed before the terminator we no longer need
        else:
            self._error_op(conn, "read", op, arg, ts, out)

    def _error_op(self, conn: _Conn, direction: str, op: str, arg: Any, ts: int, out: list[Event]) -> None:
        if op == "skip":
            conn.skipped += arg
            self.stats.skipped_bytes += arg
        elif op == "error":
            conn.malformed += 1
            self.stats.malformed += 1
            self._emit(conn, "http.error", ts, out, {"conn": conn.key, "dir": direction,
                                                     "error": redact_text(arg) if self.redact else arg,
                                                     "malformed": conn.malformed})

    # ------------------------------------------------------------------ HTTP/2

    def _feed_h2(self, conn: _Conn, from_client: bool, payload: bytes, ts: int, out: list[Event]) -> None:
        assert conn.h2 is not None
        touched: set[int] = set()
        for ev in conn.h2.feed(from_client, payload):
            if isinstance(ev, H2Error):
                conn.skipped += ev.skipped
                self.stats.skipped_bytes += ev.skipped
                if ev.reason:
                    self._error_op(conn, "write" if from_client else "read", "error", ev.reason, ts, out)
                continue
            ex = conn.h2_streams.get(ev.stream_id)
            if isinstance(ev, H2Headers):
                if from_client and ex is None:
                    ex = conn.h2_streams[ev.stream_id] = conn.new_exchange(ev.stream_id)
                    pseudo = dict(h for h in ev.headers if h[0].startswith(":"))
                    headers = [[n, v] for n, v in ev.headers if not n.startswith(":")]
                    if ":authority" in pseudo and not header_value(headers, "host"):
                        headers.insert(0, ["host", pseudo[":authority"]])
                    ex.request = self._request_message(
                        pseudo.get(":method", ""), pseudo.get(":path", ""), "2", headers, ts
                    )
                elif not from_client and ex is not None and ex.response is None:
                    status = dict(ev.headers).get(":status", "0")
                    if status.startswith("1"):
                        continue  # informational head; the final one follows
                    headers = [[n, v] for n, v in ev.headers if not n.startswith(":")]
                    ex.response = self._response_message(int(status) if status.isdigit() else 0, "", "2",
                                                         headers, ts)
                    self._emit_head(conn, ex, out)
                # any other HEADERS is trailers: only its END_STREAM matters
            elif isinstance(ev, H2Data) and ex is not None:
                msg = ex.request if from_client else ex.response
                if msg is not None:
                    msg.add(ev.data, ts)
                    touched.add(ev.stream_id)
            elif isinstance(ev, H2Reset) and ex is not None:
                self._h2_end(conn, ex, True, ts, out, "stream reset")
                self._h2_end(conn, ex, False, ts, out, "stream reset")
                continue
            if ex is not None and getattr(ev, "end_stream", False):
                self._h2_end(conn, ex, from_client, ts, out, None)
        for sid in touched:
            ex = conn.h2_streams.get(sid)
            if ex is not None and ex.response is not None and not ex.response.complete:
                self._flush_chunk(conn, ex, ts, out)

    def _h2_end(self, conn: _Conn, ex: _Exchange, request: bool, ts: int, out: list[Event],
                error: str | None) -> None:
        msg = ex.request if request else ex.response
        if msg is None or msg.out is not None:
            return
        if request:
            self._finish_request(conn, ex, ts, out, error)
        else:
            self._finish_response(conn, ex, ts, out, error)
            conn.h2_streams.pop(ex.stream_id or 0, None)

    # ------------------------------------------------------------------ WebSocket

    def _switch(self, conn: _Conn, head: _Head, rest: bytes, ts: int, out: list[Event]) -> None:
        """A 101 arrived: finish the upgrade exchange, then read both directions as frames."""
        ex = conn.awaiting.popleft() if conn.awaiting else conn.new_exchange()
        headers = head.headers
        ex.response = self._response_message(101, head.reason, head.http_version, headers,
                                             conn.responses.message_ts)
        self._emit_head(conn, ex, out)
        self._finish_response(conn, ex, ts, out, error=None)
        held = conn.requests.release()
        if not is_websocket_upgrade(header_value(headers, "upgrade")):
            conn.proto = "upgraded"
            return
        deflate = negotiated_deflate(header_value(headers, "sec-websocket-extensions"))
        req = ex.request.head if ex.request is not None else {}
        path = req.get("path")
        if self.redact and path:
            path = redact_text(path)
        conn.ws = _WsLink(ex.seq, req.get("host"), path, ex.request.ts_start if ex.request else ts,
                          WsReader(True, deflate, self.max_body), WsReader(False, deflate, self.max_body))
        conn.proto = "ws"
        self.stats.ws_connections += 1
        if rest:
            self._feed_ws(conn, False, rest, ts, out)
        if held:
            self._feed_ws(conn, True, held, ts, out)

    def _feed_ws(self, conn: _Conn, from_client: bool, payload: bytes, ts: int, out: list[Event]) -> None:
        link = conn.ws
        assert link is not None
        reader = link.client if from_client else link.server
        dropped = reader.dropped
        self._ws_items(conn, link, from_client, reader.feed(payload, ts), ts, out)
        self.stats.ws_dropped += reader.dropped - dropped

    def _ws_items(self, conn: _Conn, link: _WsLink, from_client: bool, items: list[WsMessage | WsError],
                  ts: int, out: list[Event]) -> None:
        direction = "write" if from_client else "read"
        for item in items:
            if isinstance(item, WsError):
                self._error_op(conn, direction, "skip", item.skipped, ts, out)
                if item.reason:
                    self._error_op(conn, direction, "error", f"websocket: {item.reason}", ts, out)
            elif item.opcode in (OP_PING, OP_PONG):
                self.stats.ws_control += 1
            else:
                self._emit_ws(conn, link, from_client, item, out)

    def _emit_ws(self, conn: _Conn, link: _WsLink, from_client: bool, msg: WsMessage, out: list[Event]) -> None:
        if from_client:
            index, link.sent = link.sent, link.sent + 1
        else:
            index, link.received = link.received, link.received + 1
        self.stats.ws_messages += 1
        self.stats.ws_truncated += msg.truncated
        self.stats.ws_decode_errors += msg.error is not None
        payload, text, data, close_code = msg.payload, None, None, None
        if msg.opcode == OP_CLOSE:
            close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            text = payload[2:].decode("utf-8", "replace")
        elif msg.opcode == OP_TEXT and msg.error is None:
            text = _utf8_prefix(payload) if msg.truncated else _text(payload)
        if text is None and msg.opcode != OP_CLOSE:
            data = payload  # binary, or a text message that is not UTF-8 / did not inflate
        if self.redact:
            text = redact_text(text) if text is not None else None
            data = redact_bytes(data) if data is not None else None
        self._emit(conn, "http.ws", msg.ts_end, out, {
            "conn": conn.key,
            "seq": link.seq,
            "index": index,
            "dir": "write" if from_client else "read",
            "opcode": msg.opcode,
            "text": text,
            "data": data,
            "close_code": close_code,
            "size": msg.size,
            "wire_size": msg.wire_size,
            "compressed": msg.compressed,
            "frames": msg.frames,
            "truncated": msg.truncated,
            "decode_error": msg.error,
            "host": link.host,
            "path": link.path,
            "ts_start_ns": msg.ts_start,
        })

    def _end_ws(self, conn: _Conn, link: _WsLink, ts: int, out: list[Event]) -> None:
        """The connection is gone: report bytes skipped at the end, messages cut short, the totals."""
        for from_client, reader in ((True, link.client), (False, link.server)):
            dropped = reader.dropped
            self._ws_items(conn, link, from_client, list(reader.close()), ts, out)
            self.stats.ws_dropped += reader.dropped - dropped
        self._emit(conn, "http.ws.end", ts, out, {
            "conn": conn.key,
            "seq": link.seq,
            "host": link.host,
            "path": link.path,
            "sent": link.sent,
            "received": link.received,
            "dropped": link.client.dropped + link.server.dropped,
            "ts_open_ns": link.ts_open,
        })

    # ------------------------------------------------------------------ messages

    def _request_message(self, method: str, target: str, version: str, headers: list[list[str]],
                         ts: int) -> _Message:
        split = urlsplit(target)
        host = header_value(headers, "host") or split.netloc or ""
        head = {"method": method, "target": target, "path": split.path or target, "query": split.query,
                "host": host, "http_version": version}
        return _Message(True, head, headers, ts, ContentDecoder(header_value(headers, "content-encoding")),
                        self.max_body)

    def _response_message(self, status: int, reason: str, version: str, headers: list[list[str]],
                          ts: int) -> _Message:
        ctype = (header_value(headers, "content-type") or "").lower()
        streaming = self.stream_chunks == "all" or (
            self.stream_chunks == "streaming" and ctype.startswith(STREAMING_CONTENT_TYPES)
        )
        head = {"status_code": status, "reason": reason, "http_version": version}
        event_stream = ctype.startswith("text/event-stream")
        return _Message(False, head, headers, ts, ContentDecoder(header_value(headers, "content-encoding")),
                        self.max_body, stream_chunks=streaming, event_stream=event_stream,
                        sse=SseParser(as_dicts=True) if event_stream else None,
                        content_type=header_value(headers, "content-type"))

    def _message_dict(self, msg: _Message) -> dict[str, Any]:
        """The record of a finished message (computed once, redacted if asked)."""
        if msg.out is not None:
            return msg.out
        body = bytes(msg.body)
        headers = msg.headers
        head = dict(msg.head)
        if self.redact:
            headers = redact_headers(headers)
            if not msg.body_redacted:  # a streamed body was redacted chunk by chunk, as it went out
                body = redact_bytes(body)
            if "target" in head:
                head["target"] = redact_text(head["target"])
                head["query"] = redact_text(head["query"])
                head["path"] = redact_text(head["path"])
        d: dict[str, Any] = {
            **head,
            "headers": headers,
            "content_type": header_value(msg.headers, "content-type"),
            "content_encoding": header_value(msg.headers, "content-encoding"),
            "body": body,
            # A body cut at max_body is carried once, as bytes (its text form would double it).
            "body_text": None if msg.truncated else _text(body),
            "body_size": msg.decoded_size,
            "wire_size": msg.wire_size,
            "body_truncated": msg.truncated,
            "decode_error": msg.decoder.error,
            "complete": msg.complete,
            "error": msg.error,
        }
        if msg.is_request:
            d.update(ts_start_ns=msg.ts_start, ts_end_ns=msg.ts_end)
        else:
            d.update(ts_first_byte_ns=msg.ts_start, ts_end_ns=msg.ts_end, timeline=msg.timeline)
        msg.out = d
        return d

    def _finish_request(self, conn: _Conn, ex: _Exchange, ts: int, out: list[Event], error: str | None) -> None:
        msg = ex.request
        if msg is None or msg.out is not None:
            return
        msg.complete, msg.error, msg.ts_end = error is None, error, ts
        d = self._message_dict(msg)
        self.stats.requests += 1
        if self.emit_messages:
            self._emit(conn, "http.request", ts, out, {"conn": conn.key, "seq": ex.seq,
                                                      "stream_id": ex.stream_id, **_alone(d)})
        if ex.response is not None and ex.response.out is not None:
            self._emit_exchange(conn, ex, ts, out)

    def _finish_response(self, conn: _Conn, ex: _Exchange, ts: int, out: list[Event], error: str | None) -> None:
        msg = ex.response
        if msg is None or msg.out is not None:
            return
        self._flush_chunk(conn, ex, ts, out, final=True)
        msg.complete, msg.error, msg.ts_end = error is None, error, ts
        d = self._message_dict(msg)
        self.stats.responses += 1
        if self.emit_messages:
            self._emit(conn, "http.response", ts, out, {"conn": conn.key, "seq": ex.seq,
                                                       "stream_id": ex.stream_id, **_alone(d)})
        # The exchange goes out when both halves are done; a response with no request seen
        # (capture started mid-connection) goes out alone.
        if ex.request is None or ex.request.out is not None:
            self._emit_exchange(conn, ex, ts, out)

    def _emit_exchange(self, conn: _Conn, ex: _Exchange, ts: int, out: list[Event]) -> None:
        if ex.emitted:
            return
        ex.emitted = True
        req = self._message_dict(ex.request) if ex.request is not None else None
        resp = self._message_dict(ex.response) if ex.response is not None else None
        if resp is not None and ex.response is not None and ex.response.sse is not None:
            resp = {**resp, "sse": merged_dicts(ex.response.sse_events, ex.response.sse.discarded_tail)}
        self.stats.exchanges += 1
        start = req["ts_start_ns"] if req else (resp["ts_first_byte_ns"] if resp else ts)
        end = resp["ts_end_ns"] if resp else ts
        self._emit(conn, "http.exchange", ts, out, {
            "conn": conn.key,
            "seq": ex.seq,
            "stream_id": ex.stream_id,
            "host": req["host"] if req else None,
            "request": req,
            "response": resp,
            "ts_request_start_ns": start,
            "ts_response_first_byte_ns": resp["ts_first_byte_ns"] if resp else None,
            "ts_response_end_ns": end,
            "duration_ns": end - start,
            "redacted": self.redact,
        })

    def _emit_head(self, conn: _Conn, ex: _Exchange, out: list[Event]) -> None:
        resp = ex.response
        if resp is None or self.stream_chunks == "none":
            return
        req = ex.request
        headers = redact_headers(resp.headers) if self.redact else resp.headers
        self._emit(conn, "http.stream.head", resp.ts_start, out, {
            "conn": conn.key,
            "seq": ex.seq,
            "stream_id": ex.stream_id,
            "method": req.head["method"] if req else None,
            "host": req.head["host"] if req else None,
            "path": (redact_text(req.head["path"]) if self.redact else req.head["path"]) if req else None,
            **resp.head,
            "headers": headers,
            "content_type": header_value(resp.headers, "content-type"),
            "streaming": resp.stream_chunks,
            "ts_request_start_ns": req.ts_start if req else None,
            "ts_first_byte_ns": resp.ts_start,
        })

    def _flush_chunk(self, conn: _Conn, ex: _Exchange, ts: int, out: list[Event], final: bool = False) -> None:
        """What this record added to a streamed response: redacted (as one stream: the tail that may
        start a secret waits for the next record), parsed as events if it is an event stream, kept in
        the body, sent on as ``http.stream.chunk``; the response ends at its stream's end event.

        Runs once per TLS record of a streamed answer (thousands per call): kept lean."""
        resp = ex.response
        if resp is None or resp.out is not None or not (resp.stream_chunks or resp.event_stream):
            return
        pending = resp.pending_chunk
        redactor = resp.redactor
        if pending:
            chunk = b"".join(pending)  # (one piece, the usual: that piece itself)
            pending.clear()
        elif final and redactor is not None and redactor.held:
            chunk = b""
        else:
            return
        self._chunk_out(conn, ex, resp, chunk, ts, out, final)

    def _chunk_out(self, conn: _Conn, ex: _Exchange, resp: _Message, chunk: bytes, ts: int, out: list[Event],
                   final: bool) -> None:
        """:meth:`_flush_chunk` once the record's decoded bytes (``chunk``) are known."""
        redactor = resp.redactor
        raw_len = len(chunk)
        if self.redact:
            if redactor is None:
                redactor = resp.redactor = StreamRedactor()
            held = redactor.held
            data = redactor.feed(chunk)
            if final:
                data += redactor.flush()
            if held or redactor.held:  # the chunk's raw bytes out: what was held before in, what is held now not
                raw_len += held - redactor.held
            resp.body_redacted = True
            if not data:
                return
        else:
            data = chunk
        if len(resp.body) + len(data) <= resp.max_body:
            resp.body += data
        else:
            resp.keep(data)
        ended = False
        events: list[dict[str, Any]] | None = None
        if resp.sse is not None:
            events = resp.sse.feed(data, ts)  # type: ignore[assignment]  # as_dicts: the record form
            if events:
                resp.sse_events += events
                if ex.stream_id is None and not final:
                    if self.stream_end is stream_ended:  # the dialects' markers, inline
                        for e in events:
                            text = e["data"]
                            if (e["event"] in END_EVENTS or text in END_DATA
                                    or '"jsonrpc"' in text and self._answers_request(ex, text)):
                                ended = True
                    else:
                        ended = self._stream_ends(ex, events)
        offset = resp.chunk_offset
        resp.chunk_offset = offset + raw_len
        if resp.stream_chunks:
            chunk_record: dict[str, Any] = {
                "conn": conn.key,
                "seq": ex.seq,
                "stream_id": ex.stream_id,
                "offset": offset,
                "data": data,
                "content_type": resp.content_type,
            }
            if events is not None:
                chunk_record["events"] = events
            out.append(Event("http.stream.chunk", ts, self.source, conn.pid, conn.tid, conn.comm, chunk_record))
        if ended:  # clients stop reading here: the chunked terminator may never be read (or captured)
            self._finish_response(conn, ex, ts, out, error=None)
            conn.ended_early = True

    def _stream_ends(self, ex: _Exchange, events: list[dict[str, Any]]) -> bool:
        """Whether one of these events ends its stream (an LLM API's last event, or the JSON-RPC
        answer to the request the stream answers)."""
        end = self.stream_end
        for e in events:
            if end(e["event"], e["data"]) or '"jsonrpc"' in e["data"] and self._answers_request(ex, e["data"]):
                return True
        return False

    @staticmethod
    def _answers_request(ex: _Exchange, data: str) -> bool:
        """Whether an event's data is the JSON-RPC response to the exchange's request (MCP's
        streamable HTTP). The request is read for its id only when an event looks like JSON-RPC:
        an LLM call's big body is not searched at all."""
        if not ex.rpc_read:
            ex.rpc_read = True
            ex.rpc_id = jsonrpc_request_id(ex.request.body) if ex.request is not None else None
        return ex.rpc_id is not None and _answers(data, ex.rpc_id)

    def _emit(self, conn: _Conn, topic: str, ts: int, out: list[Event], data: dict[str, Any]) -> None:
        out.append(Event(topic, ts, self.source, conn.pid, conn.tid, conn.comm, data))
