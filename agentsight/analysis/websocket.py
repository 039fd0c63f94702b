"""Passive WebSocket (RFC 6455) with permessage-deflate (RFC 7692): frames in, messages out.

Theory of operation
-------------------
After an HTTP/1.1 ``101 Switching Protocols`` that accepted ``Upgrade: websocket``,
each direction of the connection is a stream of frames. A :class:`WsReader` reads one
direction; it is sans-IO (:meth:`WsReader.feed` takes bytes in any split and returns
what they completed) and never raises on bad input. Its states:

=========  ==========================================  =====================================
state      waits for                                   then
=========  ==========================================  =====================================
header     2..14 header bytes (kept across feeds)      valid: payload (or the frame's end
                                                       when it has none); invalid: resync
payload    ``length`` payload bytes, unmasked and      frame end: a control frame or the
           streamed into the message (never buffered   last fragment of a data message is
           whole: a 64-bit length costs no memory)     a :class:`WsMessage`; back to header
resync     a plausible header at the next byte         header (the skipped bytes reported)
=========  ==========================================  =====================================

A header is valid when its opcode is known, RSV2/RSV3 are clear, RSV1 is set only on
the first frame of a data message and only if permessage-deflate was negotiated, the
mask bit says who sent it (client frames are masked, server frames are not), a control
frame is final and at most 125 bytes, the length uses its shortest encoding, and the
frame fits the message sequence (a continuation needs a started message, a new data
frame needs none). Every check looks only at the header's own bytes, so a header cut
across feeds gets the same verdict as a whole one. An invalid header is reported once
(:class:`WsError` with a reason), the message in progress is dropped, and the reader
skips one byte at a time until a valid header starts; the count of skipped bytes follows
in a :class:`WsError` without a reason.

Compressed messages (RSV1) are inflated while they arrive with one ``zlib`` raw-DEFLATE
decompressor per direction, the ``00 00 ff ff`` tail appended at the message end. The
window is kept across messages ("context takeover") unless the 101 negotiated
``client_no_context_takeover`` / ``server_no_context_takeover`` for that direction, or
the sender ended a message with a final block. The negotiated ``*_max_window_bits``
limit the *sender's* window; a 2**15 window decodes any smaller one, so the inflater
always uses 15. A decompression error is reported on the message (``error``) and the
context is dropped. Decoded payloads are kept up to ``max_message`` bytes (``size``
still counts all, ``truncated`` says it was cut); input is never held back, so memory
per direction is bounded by ``max_message`` plus one frame header.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

__all__ = [
    "OP_CONTINUATION", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "Deflate", "WsMessage", "WsError", "WsReader", "negotiated_deflate", "is_websocket_upgrade",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_DATA_OPS = (OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_MAX_FRAME = 1 << 40  # a longer frame is taken for garbage: no peer sends a terabyte in one frame
_INFLATE_STEP = 64 * 1024  # decompress in steps, so a small input that inflates hugely stays bounded


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate as the server accepted it in its 101 (RFC 7692 section 7.1)."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    client_max_window_bits: int = 15
    server_max_window_bits: int = 15


def negotiated_deflate(extensions: str | None) -> Deflate | None:
    """The permessage-deflate of a ``Sec-WebSocket-Extensions`` response value, or None."""
    for offer in (extensions or "").split(","):
        name, *params = (p.strip() for p in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        opts: dict[str, str] = {}
        for p in params:
            key, _, value = p.partition("=")
            opts[key.strip().lower()] = value.strip().strip('"')
        return Deflate("client_no_context_takeover" in opts, "server_no_context_takeover" in opts,
                       _window_bits(opts.get("client_max_window_bits")),
                       _window_bits(opts.get("server_max_window_bits")))
    return None


def _window_bits(value: str | None) -> int:
    """A ``*_max_window_bits`` value (8..15); absent or bad means the default, 15."""
    return int(value) if value and value.isdigit() and 8 <= int(value) <= 15 else 15


def is_websocket_upgrade(upgrade: str | None) -> bool:
    """True when an ``Upgrade`` header value names the websocket protocol."""
    return any(p.strip().lower() == "websocket" for p in (upgrade or "").split(","))


@dataclass(frozen=True, slots=True)
class WsMessage:
    """A complete message: a data message (all its fragments) or one control frame.

    ``payload`` is decoded (inflated when ``compressed``) and at most ``max_message``
    bytes; ``size`` counts every decoded byte, ``wire_size`` the payload bytes on the
    wire. ``error`` says why inflating failed (``payload`` then holds what came out).
    """

    opcode: int
    payload: bytes
    size: int
    wire_size: int
    frames: int
    compressed: bool
    truncated: bool
    error: str | None
    ts_start: int
    ts_end: int


@dataclass(frozen=True, slots=True)
class WsError:
    """Bad frame bytes: ``reason`` starts an episode, ``skipped`` reports the bytes it cost."""

    reason: str
    skipped: int = 0


@dataclass(slots=True)
class _Frame:
    opcode: int
    fin: bool
    rsv1: bool
    length: int
    key: bytes | None
    done: int = 0  # payload bytes read so far (the masking key's phase)


@dataclass(slots=True)
class _Assembly:
    opcode: int
    compressed: bool
    ts_start: int
    payload: bytearray = field(default_factory=bytearray)
    size: int = 0
    wire_size: int = 0
    frames: int = 0
    truncated: bool = False
    error: str | None = None


def _unmask(data: bytes, key: bytes, phase: int) -> bytes:
    """XOR ``data`` with the 4-byte masking key, starting ``phase`` bytes into the key."""
    n = len(data)
    if not n:
        return data
    k = key[phase % 4 :] + key[: phase % 4]
    mask = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


class WsReader:
    """One direction of a WebSocket connection: bytes in any split, :class:`WsMessage` out.

    ``from_client`` says whose frames these are (they must be masked exactly when sent by
    the client); ``deflate`` is the negotiated extension or None.
    """

    def __init__(self, from_client: bool, deflate: Deflate | None = None,
                 max_message: int = 32 * 1024 * 1024) -> None:
        self.from_client = from_client
        self.deflate = deflate
        self.max_message = max_message
        self._no_takeover = bool(deflate and (deflate.client_no_context_takeover if from_client
                                              else deflate.server_no_context_takeover))
        self._buf = b""  # an incomplete frame header, or bytes being scanned while resyncing
        self._frame: _Frame | None = None
        self._msg: _Assembly | None = None  # data message (possibly fragmented)
        self._ctl: _Assembly | None = None  # control frame (may arrive between fragments)
        self._inflater: zlib._Decompress | None = None
        self._resyncing = False
        self._skipped = 0
        self.dropped = 0  # data messages abandoned (bad frame in the middle, or the connection ended)

    def feed(self, data: bytes, ts: int) -> list[WsMessage | WsError]:
        """Read more of this direction; returns the messages and errors it completed."""
        buf = self._buf + data if self._buf else data
        out: list[WsMessage | WsError] = []
        pos, n = 0, len(buf)
        while pos < n:
            frame = self._frame
            if frame is None:
                got = self._header(buf, pos)
                if got is None:
                    break  # need more bytes
                if isinstance(got, str):
                    self._bad(got, out)
                    pos += 1
                    self._skipped += 1
                    continue
                frame, size = got
                pos += size
                self._accept(frame, ts, out)
                if frame.length == 0:
                    self._frame_end(ts, out)
                continue
            take = min(frame.length - frame.done, n - pos)
            chunk = buf[pos : pos + take]
            pos += take
            if frame.key is not None:
                chunk = _unmask(chunk, frame.key, frame.done)
            frame.done += take
            self._deliver(chunk)
            if frame.done == frame.length:
                self._frame_end(ts, out)
        self._buf = buf[pos:]
        return out

    def close(self) -> list[WsError]:
        """The connection ended: a message cut short is dropped, skipped bytes reported."""
        if self._msg is not None:
            self.dropped += 1
        self._msg = self._ctl = self._frame = None
        skipped = self._skipped + (len(self._buf) if self._resyncing else 0)  # bytes still being scanned
        self._skipped, self._buf = 0, b""
        return [WsError("", skipped)] if skipped else []

    # ------------------------------------------------------------------ frames

    def _header(self, buf: bytes, pos: int) -> tuple[_Frame, int] | str | None:
        """Parse the header at ``buf[pos:]``: (frame, header size), a reason it is invalid, or None."""
        avail = len(buf) - pos
        if avail < 1:
            return None
        b0 = buf[pos]
        fin, rsv1, opcode = bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F
        if b0 & 0x30:
            return "RSV2/RSV3 set"
        if opcode not in _DATA_OPS and opcode not in _CONTROL_OPS and opcode != OP_CONTINUATION:
            return f"unknown opcode {opcode}"
        if rsv1 and (self.deflate is None or opcode not in _DATA_OPS):
            return "RSV1 set without a compressed message"
        if opcode in _CONTROL_OPS and not fin:
            return "fragmented control frame"
        if opcode == OP_CONTINUATION and self._msg is None:
            return "continuation frame without a message"
        if opcode in _DATA_OPS and self._msg is not None:
            return "data frame inside a fragmented message"
        if avail < 2:
            return None
        b1 = buf[pos + 1]
        masked, length = bool(b1 & 0x80), b1 & 0x7F
        if masked != self.from_client:
            return "unmasked client frame" if self.from_client else "masked server frame"
        if opcode in _CONTROL_OPS and length > 125:
            return "control frame longer than 125 bytes"
        size = 2
        if length >= 126:
            ext = 2 if length == 126 else 8
            if avail < 2 + ext:
                return None
            length = int.from_bytes(buf[pos + 2 : pos + 2 + ext], "big")
            if length < (126 if ext == 2 else 65536):
                return "length not in its shortest form"
            if length >= _MAX_FRAME:
                return "implausible frame length"
            size += ext
        key = None
        if masked:
            if avail < size + 4:
                return None
            key = bytes(buf[pos + size : pos + size + 4])
            size += 4
        return _Frame(opcode, fin, rsv1, length, key), size

    def _accept(self, frame: _Frame, ts: int, out: list[WsMessage | WsError]) -> None:
        self._frame = frame
        if self._skipped:
            out.append(WsError("", self._skipped))
            self._skipped = 0
        self._resyncing = False
        if frame.opcode in _CONTROL_OPS:
            self._ctl = _Assembly(frame.opcode, False, ts)
            self._ctl.frames = 1
            return
        if frame.opcode != OP_CONTINUATION:
            self._msg = _Assembly(frame.opcode, frame.rsv1, ts)
        assert self._msg is not None
        self._msg.frames += 1

    def _deliver(self, chunk: bytes) -> None:
        frame = self._frame
        assert frame is not None
        msg = self._ctl if frame.opcode in _CONTROL_OPS else self._msg
        if msg is None or not chunk:
            return
        msg.wire_size += len(chunk)
        if msg.compressed:
            self._inflate(msg, chunk)
        else:
            self._keep(msg, chunk)

    def _frame_end(self, ts: int, out: list[WsMessage | WsError]) -> None:
        frame = self._frame
        assert frame is not None
        self._frame = None
        if frame.opcode in _CONTROL_OPS:
            ctl, self._ctl = self._ctl, None
            if ctl is not None:
                out.append(self._message(ctl, ts))
            return
        msg = self._msg
        if msg is None or not frame.fin:
            return
        self._msg = None
        if msg.compressed:
            self._inflate(msg, _DEFLATE_TAIL)
            if self._no_takeover or (self._inflater is not None and self._inflater.eof):
                self._inflater = None
        out.append(self._message(msg, ts))

    def _message(self, m: _Assembly, ts: int) -> WsMessage:
        return WsMessage(m.opcode, bytes(m.payload), m.size, m.wire_size, m.frames, m.compressed, m.truncated,
                         m.error, m.ts_start, ts)

    def _bad(self, reason: str, out: list[WsMessage | WsError]) -> None:
        """An invalid header: report it once per episode and drop what it interrupted."""
        if self._resyncing:
            return
        self._resyncing = True
        out.append(WsError(reason))
        if self._msg is not None:
            self.dropped += 1
            if self._msg.compressed:
                self._inflater = None  # its window is missing the dropped bytes
        self._msg = self._ctl = None

    # ------------------------------------------------------------------ payloads

    def _keep(self, msg: _Assembly, data: bytes) -> None:
        msg.size += len(data)
        room = self.max_message - len(msg.payload)
        if room > 0:
            msg.payload += data[:room]
        if len(data) > room:
            msg.truncated = True

    def _inflate(self, msg: _Assembly, data: bytes) -> None:
        if msg.error is not None:
            return
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        d = self._inflater
        try:
            while True:
                piece = d.decompress(data, _INFLATE_STEP)
                self._keep(msg, piece)
                data = d.unconsumed_tail
                if not data and len(piece) < _INFLATE_STEP:
                    return
        except zlib.error as exc:
            msg.error = f"inflate: {exc}"
            self._inflater = None
            # What inflated before the error depends on how the frames were cut (zlib hands out
            # output as it can): none of it is kept, so every split of the bytes gives one record.
            msg.payload.clear()
            msg.size = 0
            msg.truncated = False
