"""JSON-RPC 2.0 as MCP carries it: newline framing over a pipe, message kinds, cut messages.

Theory of operation
-------------------
MCP over stdio sends one JSON-RPC message per line (UTF-8, ``\\n``-terminated, no
embedded newline). The ``stdio`` source sees the bytes of each read(2)/write(2) of a
traced process, in whatever pieces the calls moved them, and keeps at most
``max_bytes`` of each call (``len`` still counts them all). :class:`LineFramer` turns
one direction of a pipe back into lines:

- pieces are joined until a newline, in any split (a message over several reads, several
  messages in one read);
- a line that cannot be JSON (its first non-blank byte is not ``{`` or ``[``) is not kept,
  only measured; one longer than ``max_line`` is dropped (``oversize``);
- when a call moved more bytes than were captured (``missing``), the line being built is
  returned as *cut* (its prefix, for :func:`scan_prefix`), and the next piece is read
  as the start of a new line only if it starts like one (``{``/``[``); otherwise it is the
  rest of a line whose end was lost, skipped up to its newline (``lost_bytes``);
- a write(2) is reported as *asked*: when the kernel took only part of it, the writer
  writes the rest again and the capture sees those bytes twice. A pipe write of at most
  ``PIPE_BUF`` bytes is atomic, so only a longer one can be partial: a write that is a proper
  suffix of the previous one, when that one was longer than ``PIPE_BUF`` and ended a line, is
  taken for the retry and dropped (``rewritten_bytes``); :class:`LineFramer` does this when
  fed with ``rewrite_check=True``.

:func:`classify` names a decoded message (request, notification, response);
:func:`scan_prefix` reads the top-level scalar members (``jsonrpc``, ``id``, ``method``)
of a message whose end was not captured, and which members it began (``result``...).
No I/O here; every function is total (odd input gives ``None`` or an empty answer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Line", "LineFramer", "classify", "decode_messages", "scan_prefix", "id_key", "PIPE_BUF"]

# Pipe writes up to this size are atomic on Linux (pipe(7)): only longer ones can be partial.
PIPE_BUF = 4096
_BLANK = b" \t\r"


@dataclass(frozen=True, slots=True)
class Line:
    """One newline-terminated line (or the captured start of one, when ``cut``).

    ``data`` is empty when the framer did not keep the line (``kept`` false: not JSON, or
    longer than ``max_line``); ``size`` counts its bytes as far as they were seen.
    """

    data: bytes
    size: int
    kept: bool = True
    cut: bool = False


class LineFramer:
    """Newline-delimited lines from one direction of a pipe, fed piece by piece."""

    def __init__(self, max_line: int = 8 << 20) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._size = 0          # bytes of the current line seen so far
        self._keep = True       # the current line is still buffered
        self._started = False   # its first non-blank byte was seen (and was { or [)
        self._resync = False    # bytes were lost just before: the next piece may end a lost line
        self._last = b""        # the previous complete write (rewrite check)
        self.lost_bytes = 0     # skipped as the rest of a line whose start was lost
        self.rewritten_bytes = 0
        self.oversize = 0

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held or measured so far."""
        return self._size

    def feed(self, data: bytes, missing: int = 0, rewrite_check: bool = False) -> list[Line]:
        """The lines completed by one call's captured ``data``; ``missing`` bytes of it were not captured."""
        out: list[Line] = []
        if rewrite_check and not missing and self._size == 0 and not self._resync:
            last = self._last
            if len(last) > PIPE_BUF and 0 < len(data) < len(last) and last.endswith(data):
                self.rewritten_bytes += len(data)
                self._last = b""
                return out
        self._last = b"" if missing else bytes(data)
        pos = 0
        if self._resync and data:
            self._resync = False
            start = data.lstrip(_BLANK + b"\n")[:1]
            if start not in (b"{", b"["):
                nl = data.find(b"\n")
                if nl < 0:
                    self.lost_bytes += len(data) + missing
                    self._resync = True
                    return out
                self.lost_bytes += nl + 1
                pos = nl + 1
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            end = n if nl < 0 else nl
            self._take(data, pos, end)
            if nl < 0:
                break
            line = self._finish(cut=False)
            if line is not None:
                out.append(line)
            pos = nl + 1
        if missing:
            if self._size:
                self._size += missing
                line = self._finish(cut=True)
                if line is not None:
                    out.append(line)
            self._resync = True
        return out

    def close(self) -> Line | None:
        """The end of the stream: an unterminated last line, returned as cut."""
        if not self._size:
            return None
        return self._finish(cut=True)

    def _take(self, data: bytes, a: int, b: int) -> None:
        if a == b:
            return
        self._size += b - a
        if not self._keep:
            return
        piece = data[a:b]
        if not self._started:
            first = piece.lstrip(_BLANK)[:1]
            if first and first not in (b"{", b"["):
                self._keep = False
                self._buf.clear()
                return
            self._started = bool(first)
        self._buf += piece
        if len(self._buf) > self.max_line:
            self.oversize += 1
            self._keep = False
            self._buf.clear()

    def _finish(self, cut: bool) -> Line | None:
        size, keep, data = self._size, self._keep, bytes(self._buf)
        self._buf.clear()
        self._size = 0
        self._keep = True
        self._started = False
        if not size or (keep and not data.strip(_BLANK)):
            return None  # an empty line
        return Line(data if keep else b"", size, keep, cut)


def _valid_id(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def classify(message: Any) -> str | None:
    """``"request"``, ``"notification"``, ``"response"``, or None for anything that is not JSON-RPC 2.0."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    method = message.get("method")
    if isinstance(method, str):
        if "id" not in message:
            return "notification"
        return "request" if _valid_id(message["id"]) else None
    if "id" in message and ("result" in message) != ("error" in message):
        if message["id"] is None or _valid_id(message["id"]):
            return "response"
    return None


def decode_messages(text: bytes | str) -> list[tuple[str, dict[str, Any]]] | None:
    """The JSON-RPC 2.0 messages in one frame (a message or a batch) as (kind, message); None if it
    is not JSON, or not all JSON-RPC 2.0."""
    if isinstance(text, bytes | bytearray):
        if b'"jsonrpc"' not in text:
            return None
    elif '"jsonrpc"' not in text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        kind = classify(item)
        if kind is None:
            return None
        out.append((kind, item))
    return out or None


def id_key(value: Any) -> str:
    """A request id as a dict key that keeps ``1`` and ``"1"`` apart."""
    return f"s:{value}" if isinstance(value, str) else f"n:{value}"


_SCALAR = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")
_WS = " \t\r\n"


def _string_end(s: str, i: int) -> int:
    """Index just past the JSON string starting at ``s[i] == '"'``, or -1 if it does not end in ``s``."""
    j = i + 1
    n = len(s)
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
        elif c == '"':
            return j + 1
        else:
            j += 1
    return -1


def _nested_end(s: str, i: int) -> int:
    """Index just past the object or array starting at ``s[i]``, or -1 if it does not end in ``s``."""
    depth = 0
    j = i
    n = len(s)
    while j < n:
        c = s[j]
        if c == '"':
            j = _string_end(s, j)
            if j < 0:
                return -1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def scan_prefix(data: bytes) -> tuple[dict[str, Any], list[str]]:
    """The top-level members of a JSON object cut short: (complete scalar values by name, every
    member name begun, in order). ``({}, [])`` when ``data`` does not start an object."""
    s = data.decode("utf-8", "replace")
    i = _skip_ws(s, 0)
    values: dict[str, Any] = {}
    names: list[str] = []
    if i >= len(s) or s[i] != "{":
        return values, names
    i += 1
    n = len(s)
    while True:
        i = _skip_ws(s, i)
        if i < n and s[i] == ",":
            i = _skip_ws(s, i + 1)
        if i >= n or s[i] != '"':
            break
        end = _string_end(s, i)
        if end < 0:
            break
        try:
            name = json.loads(s[i:end])
        except ValueError:
            break
        i = _skip_ws(s, end)
        if i >= n or s[i] != ":":
            break
        i = _skip_ws(s, i + 1)
        if i >= n:
            break
        names.append(name)
        c = s[i]
        if c == '"':
            end = _string_end(s, i)
            if end < 0:
                break
            try:
                values[name] = json.loads(s[i:end])
            except ValueError:
                break
            i = end
        elif c in "{[":
            end = _nested_end(s, i)
            if end < 0:
                break
            i = end
        else:
            m = _SCALAR.match(s, i)
            if m is None or m.end() >= n:  # a number may go on in the bytes not captured
                break
            values[name] = json.loads(m.group())
            i = m.end()
    return values, names
