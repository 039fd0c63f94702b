"""TLS records sealed and opened at the AEAD layer, turned back into connection plaintext.

Where no ``SSL_write``/``SSL_read`` can be probed (rustls on aws-lc, as in Codex), the
ssl source probes the AEAD functions instead: every TLS record passes through one seal
(outgoing) or open (incoming) call, whose plaintext is the record's content. This module
is the pure logic that turns those calls into what ``SSL_write``/``SSL_read`` would have
shown: the application data of each connection, in order, keyed like any ``ssl.data``.

- **Content type.** The AAD tells the record's version: a 5-byte AAD is the TLS 1.3
  record header, and the real content type is the last non-zero byte of the plaintext
  (RFC 8446 5.2: content, type, zero padding); a 13-byte AAD is TLS 1.2's seq + header,
  with the type at offset 8. Only application data (23) is passed on; handshake (22),
  alert (21) and change-cipher-spec (20) records are counted and dropped; a call with any
  other AAD is not a TLS record (counted as ``aead_not_tls``).
- **Connection.** Each direction of a connection has its own AEAD context, so the context
  cannot pair them. The kernel does: an open is tied to the socket its thread last read
  (``fd`` in the record), a sealing context to the socket its thread next writes to (a
  ``bind``). Records of a context not bound yet wait (at most ``hold_s``, then go out
  under a key of their own, counted as ``aead_unbound``). The connection key is
  ``"<pid>:fd<fd>.<n>"``: ``n`` counts the TLS connections that socket number carried,
  bumped when a sealing context's first record is a handshake record (the client's
  Finished: a new connection's first encrypted record).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AeadStreams", "content_of", "APPLICATION_DATA", "HANDSHAKE"]

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
_TYPE_NAMES = {CHANGE_CIPHER_SPEC: "aead_ccs", ALERT: "aead_alerts", HANDSHAKE: "aead_handshake"}
_MAX_CONTEXTS = 8192


def content_of(aad: bytes, aad_len: int, plaintext: bytes) -> tuple[int, bytes] | None:
    """(content type, content) of one record's plaintext, or None when it is not a TLS record."""
    if aad_len == 5 and aad[:1] == b"\x17" and aad[1:3] == b"\x03\x03":
        inner = plaintext.rstrip(b"\0")
        if not inner:
            return None
        return inner[-1], inner[:-1]
    if aad_len == 13 and aad[9:10] == b"\x03":
        return aad[8], plaintext
    return None


@dataclass
class _Context:
    """One AEAD context of one process (one direction of one connection)."""

    first_type: int | None = None
    fd: int | None = None
    held: list[tuple[bytes, Any, float]] = field(default_factory=list)


class AeadStreams:
    """Seal/open records in, (connection key, plaintext, meta) out. No I/O; see the module doc.

    ``meta`` is whatever the caller passes with a record (the source's record header),
    handed back with its plaintext so the caller can build its event.
    """

    def __init__(self, hold_s: float = 1.0) -> None:
        self.hold_s = hold_s
        self._contexts: OrderedDict[tuple[int, int], _Context] = OrderedDict()
        self._generation: dict[tuple[int, int], int] = {}
        self.stats: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def _context(self, pid: int, ctx: int) -> _Context:
        key = (pid, ctx)
        state = self._contexts.get(key)
        if state is None:
            state = self._contexts[key] = _Context()
            if len(self._contexts) > _MAX_CONTEXTS:
                self._contexts.popitem(last=False)
        return state

    def conn(self, pid: int, fd: int) -> str:
        return f"{pid}:fd{fd}.{self._generation.get((pid, fd), 0)}"

    def sealed(self, pid: int, ctx: int, aad: bytes, aad_len: int, plaintext: bytes, meta: Any,
               now: float | None = None) -> list[tuple[str, bytes, Any]]:
        """An outgoing record (its plaintext read at seal time)."""
        found = content_of(aad, aad_len, plaintext)
        if found is None:
            self._count("aead_not_tls")
            return []
        kind, content = found
        state = self._context(pid, ctx)
        if state.first_type is None:
            state.first_type = kind
            if kind == HANDSHAKE and state.fd is not None:
                self._new_connection(pid, state.fd)
        if kind != APPLICATION_DATA:
            self._count(_TYPE_NAMES.get(kind, "aead_other_types"))
            return []
        if state.fd is None:
            state.held.append((content, meta, time.monotonic() if now is None else now))
            return []
        return [(self.conn(pid, state.fd), content, meta)]

    def opened(self, pid: int, ctx: int, fd: int, aad: bytes, aad_len: int, plaintext: bytes,
               meta: Any) -> list[tuple[str, bytes, Any]]:
        """An incoming record (its plaintext read when the open returned) read from ``fd``."""
        found = content_of(aad, aad_len, plaintext)
        if found is None:
            self._count("aead_not_tls")
            return []
        kind, content = found
        if kind != APPLICATION_DATA:
            self._count(_TYPE_NAMES.get(kind, "aead_other_types"))
            return []
        if fd < 0:
            self._count("aead_unbound")
            return [(f"{pid}:aead{ctx:x}", content, meta)]
        return [(self.conn(pid, fd), content, meta)]

    def bound(self, pid: int, ctx: int, fd: int) -> list[tuple[str, bytes, Any]]:
        """A sealing context's records went out on socket ``fd``: release what it held."""
        state = self._context(pid, ctx)
        if state.fd == fd:
            return []
        state.fd = fd
        if state.first_type == HANDSHAKE:
            self._new_connection(pid, fd)
        held, state.held = state.held, []
        return [(self.conn(pid, fd), content, meta) for content, meta, _ in held]

    def expire(self, now: float | None = None, everything: bool = False) -> list[tuple[str, bytes, Any]]:
        """Records held longer than ``hold_s`` (or all, at the end) go out unbound."""
        now = time.monotonic() if now is None else now
        out: list[tuple[str, bytes, Any]] = []
        for (pid, ctx), state in self._contexts.items():
            if not state.held or not (everything or now - state.held[0][2] >= self.hold_s):
                continue
            self._count("aead_unbound", len(state.held))
            out.extend((f"{pid}:aead{ctx:x}", content, meta) for content, meta, _ in state.held)
            state.held = []
        return out

    def _new_connection(self, pid: int, fd: int) -> None:
        self._generation[(pid, fd)] = self._generation.get((pid, fd), 0) + 1
