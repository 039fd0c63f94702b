"""Credential removal from headers, bodies and raw payloads.

Every secret found is replaced by a marker ``[REDACTED]`` or
``[REDACTED:<kind>]``, where *kind* is a non-secret label of what was there
(``sk-ant``, ``sk``, ``bearer``, ``AIza``, ``jwt``, the header or field name...).
No character of the secret itself is kept: a suffix hint would let two
captures be correlated to one key, which is more than an observer needs.

What is found:

- header values of :data:`SENSITIVE_HEADERS` (whole value, any format);
- ``Authorization``-style schemes anywhere in text (``Bearer x``, ``Basic x``);
- well-known key formats anywhere (OpenAI ``sk-``/``sk-proj-``, Anthropic
  ``sk-ant-``, Google ``AIza``, GitHub, Slack, AWS access key ids, JWTs);
- JSON fields and query-string parameters whose name says they hold a secret
  (``"api_key": "..."``, ``?key=...``, ``&access_token=...``, and a query string
  held alone, ``key=...&alt=sse``);
- PEM private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to
  the end of the text when cut short), raw or JSON-escaped;
- ``Name: value`` header lines inside raw HTTP/1 payload bytes.

Text is redacted whole, after reassembly. Where it arrives in pieces that are each
passed on (TLS records with ``--raw``, stdio writes, streamed response chunks),
:class:`StreamRedactor` holds back the tail of a piece that could be the start of a
secret (a partial match, or a match that reaches the piece's end and may go on)
until the next piece shows how it ends. And where pieces were redacted before being
joined (the deltas of a streamed answer), a marker followed by what can only be the
rest of the same secret swallows it: ``[REDACTED:sk-ant]`` then ``Ij5Kl...`` is
``[REDACTED:sk-ant]``.

Limits: HTTP/2 header values inside raw frames may be Huffman-coded by HPACK
and are not recognised in the raw bytes (the decoded ``http.*`` records are
redacted); a secret in a format not listed above is not found.

Works on ``str`` and ``bytes`` alike; :func:`redact_value` walks dicts and lists.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import ahocorasick_rs
import regex

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SENSITIVE_FIELDS",
    "is_sensitive_header",
    "redact_text",
    "redact_bytes",
    "redact_headers",
    "redact_value",
    "StreamRedactor",
]

REDACTED = "[REDACTED]"

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-csrf-token",
        "openai-api-key",
        "anthropic-api-key",
        "x-anthropic-api-key",
        "x-openai-api-key",
        "ocp-apim-subscription-key",
        "x-functions-key",
    }
)

# JSON field names whose value is a secret whatever it looks like.
SENSITIVE_FIELDS = (
    "api_key|apikey|api-key|x-api-key|x-goog-api-key|access_token|accesstoken|refresh_token|id_token"
    "|client_secret|secret|password|passwd|token|auth_token|session_token|authorization|private_key"
)
# Query-string parameters: the JSON names plus short ones too generic for JSON (Gemini's ``?key=``).
SENSITIVE_PARAMS = SENSITIVE_FIELDS + "|key|sig|signature|code"
_FIELD_NAMES = frozenset(SENSITIVE_FIELDS.split("|"))


def is_sensitive_header(name: str) -> bool:
    """True for a header whose value is a credential."""
    name = name.lower()
    return name in SENSITIVE_HEADERS or name.endswith(("-api-key", "-token", "-secret"))


def _marker(kind: str | None) -> str:
    return f"[REDACTED:{kind}]" if kind else REDACTED


# Known key formats: (kind label, pattern). Order matters: the most specific first.
_KEY_FORMATS: list[tuple[str, str]] = [
    ("sk-ant", r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    ("sk", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),
    ("AIza", r"AIza[0-9A-Za-z_\-]{30,}"),
    ("github", r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ("slack", r"xox[baprs]-[A-Za-z0-9\-]{10,}"),
    ("aws", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
]
# A PEM private key: BEGIN line, body (raw newlines or JSON's \n escapes, never a quote), END line
# when it has arrived. A certificate or public key is not a secret and is left alone.
_PEM_LABEL = r"-----(?:BEGIN|END) (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
_PEM = (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:(?!-----END)[^\"'<>])*"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?")
# What can follow a marker only if the secret went on past the piece it was found in.
_KEY_KINDS = "|".join(re.escape(k) for k, _ in _KEY_FORMATS) + "|bearer|private-key"
_KEY_REST = r"\[REDACTED:(?:" + _KEY_KINDS + r")\]([A-Za-z0-9_\-.+/=~]+)"
_VALUE_REST = r"\[REDACTED:(?!(?:" + _KEY_KINDS + r")\])[a-z0-9_.\-]+\]([^\"'\\\s&#<>,;)\]}]+)"


def _kind_of(value: str) -> str | None:
    for kind, pattern in _KEY_FORMATS:
        if re.search(pattern, value):
            return kind
    return None


# Where a rule's match starts, relative to a hint it must contain (see _Rules.apply).
_AT_HINT, _LINE_START, _QUOTE_BEFORE, _SEPARATOR_BEFORE = range(4)
_NAME_ENDS = ("key", "token", "secret", "password", "passwd", "authorization")  # every secret field name ends so
_LONGEST_NAME = max(len(n) for n in (SENSITIVE_PARAMS + "|" + "|".join(SENSITIVE_HEADERS)).split("|")) + 2


# Text this long (a prompt, a file) has its hints found by Hyperscan: ten times the speed of
# lower-casing it and running the Aho-Corasick automaton (0.05 against 0.5 ms for a 250 KB prompt).
# Below it, the automaton's smaller cost per call wins.
BIG_TEXT = 4096


class BigTextHints:
    """Every hint in a long byte string, case-insensitive (ASCII), in one Hyperscan pass.

    Built on first use (3 ms). Where Hyperscan is not installed (it has wheels for x86-64 only)
    or refuses this CPU, :meth:`find` returns None and the caller uses the automaton.
    """

    def __init__(self, hints: list[str]) -> None:
        self._hints = [h.encode() for h in hints]
        self._lengths = [len(h) for h in self._hints]
        self._db: Any = None  # compiled on first use
        self._new_scratch: Callable[[], Any] | None = None
        self._local = threading.local()  # a scan needs its own scratch space per thread
        self.usable = True

    def _open(self) -> bool:
        try:
            import hyperscan  # noqa: PLC0415  (optional, and 3 ms to import: only once a long text comes)

            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=self._hints, ids=list(range(len(self._hints))),
                       flags=hyperscan.HS_FLAG_CASELESS, literal=True)
        except Exception:  # noqa: BLE001  (not installed, or no engine for this CPU: the automaton it is)
            self.usable = False
            return False
        self._db, self._new_scratch = db, lambda: hyperscan.Scratch(db)
        return True

    def find(self, data: bytes | None) -> list[tuple[int, int]] | None:
        """(hint number, start) of every occurrence of every hint in ``data``; None if this cannot
        search (no Hyperscan, or ``data`` None)."""
        if data is None or not self.usable or (self._db is None and not self._open()):
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            assert self._new_scratch is not None
            scratch = self._local.scratch = self._new_scratch()
        found: list[tuple[int, int]] = []
        lengths = self._lengths

        def hit(i: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            found.append((i, end - lengths[i]))

        self._db.scan(data, match_event_handler=hit, scratch=scratch)
        return found


class _Rules:
    """The redaction regexes, compiled once for ``str`` and once for ``bytes``.

    Finding where to look is the cost on big texts: every rule's match contains a literal *hint*
    (a key prefix, ``bearer``, a secret field name followed by its quote, ``=`` or ``:``...), and
    one Aho-Corasick pass over the lower-cased text finds every hint at once. Most text has none
    and is returned as it is; around each hint found, the rule's regex is tried only where its
    match would have to start (the hint itself, the line start, the opening quote or the
    query separator just before it), so a 250 KB prompt costs one linear scan, not a dozen
    regex searches.
    """

    def __init__(self, as_bytes: bool) -> None:
        enc: Callable[[str], Any] = (lambda s: s.encode()) if as_bytes else (lambda s: s)
        self.enc = enc
        self.as_bytes = as_bytes
        not_redacted = r"(?!\[REDACTED)"
        header_names = "|".join(re.escape(h) for h in sorted(SENSITIVE_HEADERS))
        # "Name: value" lines of a raw HTTP/1 head.
        self.header_line = re.compile(enc(rf"(?im)^((?:{header_names}):[ \t]*+){not_redacted}([^\r\n]+)"))
        # "field": "value" in JSON (or 'field': 'value' as printed by Python), also inside a JSON string
        # (\"field\": \"value\", as tool arguments carry it).
        self.json_field = re.compile(
            enc(rf"""(?i)(\\?["'](?:{SENSITIVE_FIELDS})\\?["']\s*:\s*\\?["']){not_redacted}([^"'\\\r\n]{{4,}})""")
        )
        # ?key=value&... in URLs and form bodies, or a query string on its own (key=value&...).
        self.query = re.compile(enc(rf"(?i)((?:^|[?&;])(?:{SENSITIVE_PARAMS})=){not_redacted}([^&#\s\"'<>]+)"))
        self.pem = re.compile(enc(_PEM))
        self.rest = [re.compile(enc(_KEY_REST)), re.compile(enc(_VALUE_REST))]
        # A bearer token in free text; the digit look-ahead keeps prose ("bearer authentication") intact.
        self.scheme = re.compile(
            enc(rf"(?i)\b(bearer)(\s++){not_redacted}(?=[A-Za-z._~+/=\-]*[0-9])([A-Za-z0-9._~+/=\-]{{12,}})")
        )
        # No look-behind here: the character before a match is checked in the callback instead.
        self.keys = [(kind, re.compile(enc(p))) for kind, p in _KEY_FORMATS]
        # The same rules, in the order they run, for StreamRedactor's partial matching.
        self.sources = [_PEM, self.header_line.pattern, self.json_field.pattern, self.query.pattern,
                        self.scheme.pattern, *(p for _, p in _KEY_FORMATS)]
        # (rule, where its match starts, its hints in lower case); run in this order.
        key_hints = {"sk-ant": ["sk-ant-"], "sk": ["sk-"], "AIza": ["aiza"],
                     "github": ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
                     "slack": ["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"], "aws": ["akia", "asia"], "jwt": ["eyj"]}
        field = self._field
        rules: list[tuple[re.Pattern[Any], Callable[[re.Match[Any]], Any] | None, int, list[str]]] = [
            (self.pem, lambda m: enc(_marker("private-key")), _AT_HINT, ["-----begin "]),
            (self.header_line, field, _LINE_START, [n + ":" for n in _NAME_ENDS[:2] + ("cookie", "authorization")]),
            (self.json_field, field, _QUOTE_BEFORE,
             [o + n + c for n in SENSITIVE_FIELDS.split("|") for o in "\"'" for c in "\"'\\"]),
            (self.query, field, _SEPARATOR_BEFORE,
             [n + "=" for n in (*_NAME_ENDS, "sig", "signature", "code")]),
            (self.scheme, self._scheme, _AT_HINT, ["bearer"]),
            *((rx, None, _AT_HINT, key_hints[kind]) for kind, rx in self.keys),
        ]
        self.rules = rules
        self.rest_rules = [(rx, _AT_HINT) for rx in self.rest]
        hints: list[str] = []
        self.hint_rule: list[int] = []
        for i, (_, _, _, hs) in enumerate(rules):
            for h in hs:
                hints.append(h)
                self.hint_rule.append(i)
        hints.append("[redacted:")
        self.hint_rule.append(len(rules))
        self.hints = hints
        dfa = ahocorasick_rs.Implementation.DFA  # the fastest scan for a few dozen short hints
        self.matcher: Any = (ahocorasick_rs.BytesAhoCorasick([h.encode() for h in hints], implementation=dfa)
                             if as_bytes else ahocorasick_rs.AhoCorasick(hints, implementation=dfa))
        self.big_text = BigTextHints(hints)
        self.key_markers = {id(rx): enc(_marker(kind)) for kind, rx in self.keys}
        self.backslash = enc("\\")
        self.seps = [enc(c) for c in "?&;"]
        # Rules whose match may run on past a line end (the PEM body, "name":<newline>"value",
        # bearer<newline>token): only their hints can make a stream hold back a tail that ends a line.
        self.multiline_rules = {0, 2, 4}
        self.newline = enc("\n")

    def _field(self, m: re.Match[Any]) -> Any:
        return m.group(1) + self.enc(_marker(_kind_of_any(m.group(2)) or "secret"))

    def _scheme(self, m: re.Match[Any]) -> Any:
        kind = _kind_of_any(m.group(3)) or m.group(1).lower()
        if isinstance(kind, bytes):
            kind = kind.decode()
        return m.group(1) + m.group(2) + self.enc(_marker(kind))

    def _hits(self, s: Any) -> list[tuple[int, int]] | None:
        """(rule number, start of the hint) of every hint in ``s``, or None when positions cannot be trusted."""
        if len(s) >= BIG_TEXT:
            found = self.big_text.find(s if self.as_bytes else s.encode("ascii") if s.isascii() else None)
            if found is not None:
                return [(self.hint_rule[i], start) for i, start in found]
        low = s.lower()
        if len(low) != len(s):  # a few non-ASCII letters grow when lower-cased: positions would not line up
            return None
        try:
            found = self.matcher.find_matches_as_indexes(low, overlapping=True)
        except UnicodeEncodeError:  # a lone surrogate (text cut inside an emoji): the slow way
            return None
        return [(self.hint_rule[i], start) for i, start, _ in found]

    def _starts(self, s: Any, where: int, hint_at: int) -> list[int]:
        """Where a match containing a hint at ``hint_at`` can start."""
        if where == _AT_HINT:
            return [hint_at]
        if where == _LINE_START:
            return [s.rfind(self.newline, 0, hint_at) + 1]
        if where == _QUOTE_BEFORE:  # the hint starts at the opening quote, maybe escaped
            return [hint_at - 1, hint_at] if hint_at and s[hint_at - 1:hint_at] == self.backslash else [hint_at]
        lo = max(0, hint_at - _LONGEST_NAME)
        out = [i for i in range(lo, hint_at) if s[i:i + 1] in self.seps]
        if lo == 0:
            out.append(0)
        return sorted(set(out))

    def _run(self, s: Any, rx: re.Pattern[Any], repl: Callable[[re.Match[Any]], Any] | None, where: int,
             at: list[int]) -> Any:
        """``rx`` applied as ``rx.sub`` would, trying it only at the starts the hints allow."""
        starts = sorted({p for h in at for p in self._starts(s, where, h)})
        pieces: list[Any] = []
        last = 0
        for p in starts:
            if p < last:
                continue
            m = rx.match(s, p)
            if m is None or m.end() == m.start():
                continue
            if repl is None:  # a key format: not when glued to a preceding letter or digit
                if p and s[p - 1:p].isalnum():
                    continue
                new = self.key_markers[id(rx)]
            else:
                new = repl(m)
            pieces += [s[last:p], new]
            last = m.end()
        if not pieces:
            return s
        pieces.append(s[last:])
        return s[:0].join(pieces)

    def apply(self, s: Any) -> Any:
        hits = self._hits(s)
        if hits is None:
            return self._apply_everywhere(s)
        if not hits:
            return s
        for i, (rx, repl, where, _) in enumerate(self.rules):
            at = [start for rule, start in hits if rule == i]
            if not at:
                continue
            new = self._run(s, rx, repl, where, at)
            if new is not s:
                s = new
                hits = self._hits(s) or []
        at = [start for rule, start in hits if rule == len(self.rules)]
        if at:
            for rx in self.rest:
                s = self._run(s, rx, lambda m: m.group(0)[: m.start(1) - m.start(0)], _AT_HINT, at)
                at = [start for rule, start in (self._hits(s) or []) if rule == len(self.rules)]
        return s

    def _apply_everywhere(self, s: Any) -> Any:
        """Every rule over the whole text (text whose lower-case form has another length)."""
        s = self.pem.sub(self.enc(_marker("private-key")), s)
        s = self.header_line.sub(self._field, s)
        s = self.json_field.sub(self._field, s)
        s = self.query.sub(self._field, s)
        s = self.scheme.sub(self._scheme, s)
        for kind, rx in self.keys:
            s = rx.sub(_key_replacer(s, self.enc(_marker(kind))), s)
        for rx in self.rest:
            s = rx.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)], s)
        return s


def _key_replacer(s: Any, marker: Any) -> Callable[[re.Match[Any]], Any]:
    """Replace a key match unless it is glued to a preceding letter or digit (part of a longer word)."""

    def sub(m: re.Match[Any]) -> Any:
        i = m.start()
        if i and s[i - 1 : i].isalnum():
            return m.group(0)
        return marker

    return sub


def _kind_of_any(value: str | bytes) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return _kind_of(value)


_STR_RULES = _Rules(as_bytes=False)
_BYTES_RULES = _Rules(as_bytes=True)


def redact_text(text: str) -> str:
    """Return *text* with every recognised secret replaced by a marker."""
    return str(_STR_RULES.apply(text))


def redact_bytes(data: bytes) -> bytes:
    """Return *data* with every recognised secret replaced by a marker (ASCII)."""
    return bytes(_BYTES_RULES.apply(data))


def _redact_header_value(name: str, value: str) -> str:
    if is_sensitive_header(name):
        return _marker(_kind_of(value) or name.lower())
    return redact_text(value)


def redact_headers(headers: list[list[str]]) -> list[list[str]]:
    """Return a copy of ``[[name, value], ...]`` with credential values replaced."""
    return [[name, _redact_header_value(name, value)] for name, value in headers]


def redact_value(value: Any) -> Any:
    """Redact recursively: strings, bytes, dicts (by key name and content), lists.

    A dict entry whose key names a secret (``api_key``, ``authorization``...) is
    replaced whole; a ``[name, value]`` pair whose name is a sensitive header is
    treated as a header.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_bytes(bytes(value))
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and isinstance(v, str | bytes) and v and _is_secret_key(k):
                text = v.decode("latin-1") if isinstance(v, bytes) else v
                if text.startswith(REDACTED[:-1]):  # a marker already (an earlier stage's): kept as it says
                    out[k] = v
                    continue
                marker = _marker(_kind_of(text) or k.lower())
                out[k] = marker.encode() if isinstance(v, bytes) else marker
            else:
                out[k] = redact_value(v)
        return out
    if isinstance(value, list | tuple):
        if (
            len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], str)
            and is_sensitive_header(value[0])
        ):
            return [value[0], _redact_header_value(value[0], value[1])]
        return [redact_value(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return k in _FIELD_NAMES or is_sensitive_header(k) or k.endswith(("_api_key", "apikey", "_secret"))


class StreamRedactor:
    """Redacts a byte stream that arrives in pieces, so a secret split across pieces goes whole.

    :meth:`feed` returns the redacted bytes that are safe to pass on now; the tail that could
    be the start of a secret (a partial match of a rule, or a match reaching the end of what
    has arrived, which may go on) is held back, at most ``hold_max`` bytes, and put in front
    of the next piece. :meth:`flush` returns what is held, redacted, at the stream's end.
    """

    def __init__(self, hold_max: int = 8192) -> None:
        self.hold_max = hold_max
        self._held = b""
        self.held = 0  # bytes held back (len of _held; an attribute: read for every piece)
        self._last = b""  # the last piece found to hold no hint
        self._clean = b""  # a start that pieces share (an event's envelope), known to hold no hint

    def feed(self, data: bytes) -> bytes:
        text = self._held + data if self._held else data
        if text[-1:] in (b"\n", b"\r"):
            # A line end last: only a rule that spans lines (PEM, a JSON field, bearer) can go on past
            # it, and only from its hint. Event streams end every record so: no hint, nothing to do;
            # hints of other rules only, redacted here with nothing held.
            rules = _BYTES_RULES
            clean = self._clean
            if clean and text.startswith(clean):
                # The piece starts as the last ones did: a hint can only start where that start
                # could end in one (the search is what costs, per byte).
                if not rules.matcher.find_matches_as_indexes(text[len(clean) - _HINT_REACH:].lower(), overlapping=True):
                    if self.held:
                        self._held, self.held = b"", 0
                    return text
            hits = rules.matcher.find_matches_as_indexes(text.lower(), overlapping=True)
            if not hits:
                if self.held:
                    self._held, self.held = b"", 0
                self._learn(text)
                return text
            if not any(rules.hint_rule[i] in rules.multiline_rules for i, _, _ in hits):
                self._held, self.held = b"", 0
                return redact_bytes(text)
        cut = _safe_cut(text, self.hold_max)
        self._held = text[cut:]
        self.held = len(self._held)
        return redact_bytes(text[:cut]) if cut else b""

    def flush(self) -> bytes:
        held, self._held, self.held = self._held, b"", 0
        return redact_bytes(held) if held else b""

    def _learn(self, text: bytes) -> None:
        """``text`` holds no hint: the start it shares with the last such piece, when long enough to
        pay, is not searched again in the pieces that begin with it (each event of a stream repeats
        its envelope: ``event: ...\ndata: {"type":...,"delta":{"text":"``)."""
        last, self._last = self._last, text
        if last[:_MIN_CLEAN] != text[:_MIN_CLEAN]:
            return
        lo, hi = 0, min(len(last), len(text))
        while lo < hi:  # the longest common start, by halves
            mid = (lo + hi + 1) // 2
            if text.startswith(last[:mid]):
                lo = mid
            else:
                hi = mid - 1
        # Back to the end of a JSON string's quote: what follows (a word, a number) varies from
        # piece to piece, and a start that took a few of its bytes would soon stop matching.
        lo = text.rfind(b'"', 0, lo) + 1
        if lo >= _MIN_CLEAN:
            self._clean = text[:lo]


_PARTIAL = [regex.compile(p.encode() if isinstance(p, str) else p) for p in _BYTES_RULES.sources]
_HINT_REACH = max(len(h) for h in _BYTES_RULES.hints) - 1  # a hint ending past a clean start began this far in it
_MIN_CLEAN = 2 * _HINT_REACH  # a shorter clean start saves too little search to be worth remembering


def _safe_cut(text: bytes, hold_max: int) -> int:
    """Where ``text`` can be cut so that no secret straddles the cut (everything after it is held)."""
    n = len(text)
    start = max(0, n - hold_max)
    cut = n
    for rx in _PARTIAL:
        for m in rx.finditer(text, start, partial=True):
            if m.end() == n and m.start() < n:
                cut = min(cut, m.start())
                break
    # A complete match of another rule that starts before the cut and ends after it moves it back.
    moved = cut < n
    while moved:
        moved = False
        for rx in _PARTIAL:
            for m in rx.finditer(text, start):
                if m.start() >= cut:
                    break
                if cut < m.end():
                    cut, moved = m.start(), True
                    break
    return max(cut, start)
