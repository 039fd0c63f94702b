"""The event filter language (``--http-filter``, ``--ssl-filter``, ``filter = "..."`` in pipelines).

Grammar (full description with examples in ``docs/filters.md``)::

    expr       := and ( "|" and )*
    and        := unary ( "&" unary )*
    unary      := "!" unary | "(" expr ")" | term
    term       := field op value          e.g.  response.status_code>=400
                | METHOD [path-prefix]    e.g.  GET /health      (HTTP shorthand)
                | word                    e.g.  handshake        (contained in topic/comm/text fields)
    op         := "=" | "!=" | "~" | "!~" | ">" | "<" | ">=" | "<="
    value      := bare-word | "double quoted" | 'single quoted' | /regex/   (regex only after ~ / !~)

``=``/``!=`` compare numbers as numbers when both sides are numbers, else as
strings (exact). ``~`` is "contains", case-insensitive; ``~ /re/`` is a
regular-expression search. ``>`` ``<`` ``>=`` ``<=`` need numbers. A field
the event does not have makes every comparison on it false (``!=`` too); use
``!field=value`` to say "not equal or absent". A field name ending in
``_prefix`` (``request.path_prefix=/v1``) means "starts with".

A bad expression raises :class:`FilterError`, which carries the 0-based
position of the problem; :meth:`FilterError.pointer` draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agentsight.event import Event

__all__ = ["Filter", "FilterError", "compile_filter", "HTTP_METHODS"]

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"})
_OPS = ("!=", ">=", "<=", "!~", "=", "~", ">", "<")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_BARE = re.compile(r"[^\s&|()!=~<>\"']+")
_TEXT_FIELDS = ("topic", "comm")


class FilterError(ValueError):
    """A filter expression that does not parse; ``position`` is where (0-based)."""

    def __init__(self, message: str, expression: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.expression = expression
        self.position = position

    def pointer(self) -> str:
        """The expression with a caret under the problem, for one-screen error messages."""
        return f"{self.expression}\n{' ' * self.position}^ {self.message}"


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class _Or:
    parts: tuple[Any, ...]

    def match(self, ev: _View) -> bool:
        return any(p.match(ev) for p in self.parts)


@dataclass(frozen=True, slots=True)
class _And:
    parts: tuple[Any, ...]

    def match(self, ev: _View) -> bool:
        return all(p.match(ev) for p in self.parts)


@dataclass(frozen=True, slots=True)
class _Not:
    part: Any

    def match(self, ev: _View) -> bool:
        return not self.part.match(ev)


@dataclass(frozen=True, slots=True)
class _Compare:
    field: str
    op: str
    value: str
    number: float | None
    regex: re.Pattern[str] | None
    prefix: bool

    def match(self, ev: _View) -> bool:
        found, actual = ev.get(self.field)
        if not found or actual is None:
            return False
        if isinstance(actual, bytes | bytearray):
            actual = bytes(actual).decode("utf-8", "replace")
        if self.prefix:
            ok = str(actual).startswith(self.value)
            return ok if self.op == "=" else not ok
        if self.op in ("~", "!~"):
            text = str(actual)
            ok = bool(self.regex.search(text)) if self.regex else self.value.lower() in text.lower()
            return ok if self.op == "~" else not ok
        num = _number(actual)
        if self.op in ("=", "!="):
            if self.number is not None and num is not None:
                ok = num == self.number
            else:
                ok = _scalar_text(actual) == self.value
            return ok if self.op == "=" else not ok
        if num is None or self.number is None:
            return False
        return {">": num > self.number, "<": num < self.number, ">=": num >= self.number,
                "<=": num <= self.number}[self.op]


@dataclass(frozen=True, slots=True)
class _Http:
    """``GET /health``: method equality and path prefix."""

    method: str
    path: str | None

    def match(self, ev: _View) -> bool:
        found, method = ev.get("request.method")
        if not found or str(method).upper() != self.method:
            return False
        if self.path is None:
            return True
        found, path = ev.get("request.path")
        if not found:
            found, path = ev.get("request.target")
        return found and str(path).startswith(self.path)


@dataclass(frozen=True, slots=True)
class _Word:
    word: str

    def match(self, ev: _View) -> bool:
        w = self.word.lower()
        return any(w in t.lower() for t in ev.texts())


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --------------------------------------------------------------------------- field access


class _View:
    """Field lookup on an event: top-level fields, dotted paths into ``data``, a few derived ones."""

    __slots__ = ("top", "data")

    def __init__(self, event: Event | dict[str, Any]) -> None:
        if isinstance(event, Event):
            self.top = {"topic": event.topic, "ts_ns": event.ts_ns, "source": event.source, "pid": event.pid,
                        "tid": event.tid, "comm": event.comm}
            self.data = event.data
        else:
            self.top = {k: v for k, v in event.items() if k != "data"}
            self.data = event.get("data") or {}

    def get(self, name: str) -> tuple[bool, Any]:
        if name in self.top:
            return True, self.top[name]
        parts = name.split(".")
        candidates = [parts]
        if parts[0] == "data":
            candidates = [parts[1:]]
        elif parts[0] in ("request", "response") and len(parts) > 1:
            # http.request / http.response records keep their fields at top level of data
            candidates.append(parts[1:])
        for path in candidates:
            found, value = _walk(self.data, path)
            if found:
                return True, value
            if path == ["type"]:
                return self._payload_type()
        return False, None

    def _payload_type(self) -> tuple[bool, Any]:
        """``data.type`` of an ``ssl.data`` event: ``text`` when the payload is UTF-8, else ``binary``."""
        payload = self.data.get("bytes")
        if not isinstance(payload, bytes | bytearray):
            return False, None
        try:
            bytes(payload[:4096]).decode("utf-8")
        except UnicodeDecodeError as exc:
            cut = len(payload) > 4096 and exc.start >= 4096 - 4  # a multi-byte char cut by the sample
            if not cut:
                return True, "binary"
        return True, "text"

    def texts(self) -> list[str]:
        out = [str(self.top.get(f, "")) for f in _TEXT_FIELDS]
        for v in self.data.values():
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, dict):
                out += [x for x in v.values() if isinstance(x, str)]
        return out


def _walk(d: Any, path: list[str]) -> tuple[bool, Any]:
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        else:
            return False, None
    return True, d


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> FilterError:
        return FilterError(message, self.text, self.pos if pos is None else pos)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def parse(self) -> Any:
        if not self.text.strip():
            raise self.error("empty filter")
        node = self.parse_or()
        if self.peek():
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def parse_or(self) -> Any:
        parts = [self.parse_and()]
        while self.peek() == "|":
            self.pos += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else _Or(tuple(parts))

    def parse_and(self) -> Any:
        parts = [self.parse_unary()]
        while self.peek() == "&":
            self.pos += 1
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else _And(tuple(parts))

    def parse_unary(self) -> Any:
        c = self.peek()
        if c == "!":
            self.pos += 1
            return _Not(self.parse_unary())
        if c == "(":
            start = self.pos
            self.pos += 1
            node = self.parse_or()
            if self.peek() != ")":
                raise self.error(f"missing ')' for the '(' at position {start}")
            self.pos += 1
            return node
        if c == "":
            raise self.error("expected a condition, found the end of the filter")
        if c in ")&|":
            raise self.error(f"expected a condition, found {c!r}")
        return self.parse_term()

    def parse_term(self) -> Any:
        start = self.pos
        m = _FIELD.match(self.text, self.pos)
        if m is None:
            raise self.error("expected a field name or word")
        name = m.group(0)
        self.pos = m.end()
        after = self.pos
        self.skip()
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if op is None:
            self.pos = after
            if name.upper() == name and name in HTTP_METHODS:
                return self.parse_http(name)
            return _Word(name)
        self.pos += len(op)
        return self.parse_comparison(name, op, start)

    def parse_http(self, method: str) -> _Http:
        self.skip()
        if self.text.startswith("/", self.pos):
            m = _BARE.match(self.text, self.pos)
            assert m is not None
            self.pos = m.end()
            return _Http(method, m.group(0))
        return _Http(method, None)

    def parse_comparison(self, name: str, op: str, start: int) -> _Compare:
        self.skip()
        vpos = self.pos
        regex: re.Pattern[str] | None = None
        c = self.text[self.pos : self.pos + 1]
        if c in ("'", '"'):
            end = self.text.find(c, self.pos + 1)
            if end == -1:
                raise self.error("unterminated quoted value", vpos)
            value = self.text[self.pos + 1 : end]
            self.pos = end + 1
        elif c == "/" and op in ("~", "!~"):
            end = self.text.find("/", self.pos + 1)
            while end != -1 and self.text[end - 1] == "\\":
                end = self.text.find("/", end + 1)
            if end == -1:
                raise self.error("unterminated /regex/", vpos)
            value = self.text[self.pos + 1 : end].replace("\\/", "/")
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise self.error(f"bad regular expression: {exc}", vpos + 1 + (exc.pos or 0)) from None
            self.pos = end + 1
        else:
            m = _BARE.match(self.text, self.pos)
            if m is None:
                raise self.error(f"expected a value after {op!r}", vpos)
            value = m.group(0)
            self.pos = m.end()
        prefix = name.endswith("_prefix")
        if prefix:
            name = name[: -len("_prefix")]
            if op not in ("=", "!="):
                raise self.error(f"{name}_prefix takes '=' or '!=', not {op!r}", start)
        number = _number(value)
        if op in (">", "<", ">=", "<=") and number is None:
            raise self.error(f"{op!r} needs a number, got {value!r}", vpos)
        return _Compare(name, op, value, number, regex, prefix)


class Filter:
    """A compiled filter expression; :meth:`matches` tests an :class:`Event` or an event dict."""

    __slots__ = ("text", "_root")

    def __init__(self, text: str) -> None:
        self.text = text
        self._root = _Parser(text).parse()

    def matches(self, event: Event | dict[str, Any]) -> bool:
        return bool(self._root.match(_View(event)))

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def compile_filter(text: str) -> Filter:
    """Parse *text*; raises :class:`FilterError` (with a position) if it is not a valid filter."""
    return Filter(text)
