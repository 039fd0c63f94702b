"""Passive HTTP/2: frames and HPACK of both directions of one connection.

An observer sees both directions but is neither peer, so it does not run an h2
state machine (which would want to answer SETTINGS and PINGs). It cuts each
direction into frames with hyperframe and decodes header blocks with one HPACK
decoder per direction, kept in step with every header block the peer sent
(HEADERS, CONTINUATION, PUSH_PROMISE), in order. What comes out are small
:class:`H2Headers` / :class:`H2Data` / :class:`H2Reset` events keyed by stream.

HPACK state cannot be rebuilt after a lost or malformed header block, so the
first error on a direction is reported once (:class:`H2Error`) and that
direction's later bytes are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

__all__ = ["PREFACE", "H2Observer", "H2Headers", "H2Data", "H2Reset", "H2Error", "H2Event"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER = 9
_MAX_HEADER_LIST = 1 << 20


@dataclass(frozen=True, slots=True)
class H2Headers:
    """A complete header block on a stream (request/response head, or trailers)."""

    from_client: bool
    stream_id: int
    headers: list[tuple[str, str]]
    end_stream: bool


@dataclass(frozen=True, slots=True)
class H2Data:
    """DATA frame payload (padding removed)."""

    from_client: bool
    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(frozen=True, slots=True)
class H2Reset:
    """RST_STREAM: the stream ends without completing."""

    from_client: bool
    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class H2Error:
    """A direction became unreadable; ``skipped`` bytes were discarded by this call."""

    from_client: bool
    reason: str
    skipped: int


H2Event = H2Headers | H2Data | H2Reset | H2Error


class _Side:
    """Frame reassembly and HPACK decoding for the frames one peer sends."""

    def __init__(self, from_client: bool) -> None:
        self.from_client = from_client
        self.buf = bytearray()
        self.preface_left = len(PREFACE) if from_client else 0
        self.decoder = hpack.Decoder(max_header_list_size=_MAX_HEADER_LIST)
        # (stream id, end_stream, is a PUSH_PROMISE, fragments) of a header block in progress.
        self.block: tuple[int, bool, bool, bytearray] | None = None
        self.broken = False


class H2Observer:
    """Feed the bytes each peer sent; get stream events back. Never raises on bad input."""

    def __init__(self) -> None:
        self._sides = {True: _Side(True), False: _Side(False)}

    def feed(self, from_client: bool, data: bytes) -> list[H2Event]:
        side = self._sides[from_client]
        if side.broken:
            return [H2Error(from_client, "", len(data))] if data else []
        if side.preface_left:
            expected = PREFACE[len(PREFACE) - side.preface_left :]
            take = data[: side.preface_left]
            if not expected.startswith(take):
                return self._break(side, "bad HTTP/2 connection preface", len(data))
            side.preface_left -= len(take)
            data = data[len(take) :]
        side.buf += data
        out: list[H2Event] = []
        while len(side.buf) >= _FRAME_HEADER and not side.broken:
            try:
                frame, length = Frame.parse_frame_header(memoryview(bytes(side.buf[:_FRAME_HEADER])))
            except HyperframeError as exc:
                out.extend(self._break(side, f"bad frame header: {exc}", len(side.buf)))
                break
            if len(side.buf) < _FRAME_HEADER + length:
                break
            body = bytes(side.buf[_FRAME_HEADER : _FRAME_HEADER + length])
            del side.buf[: _FRAME_HEADER + length]
            try:
                frame.parse_body(memoryview(body))
            except (HyperframeError, ValueError) as exc:
                out.extend(self._break(side, f"bad {type(frame).__name__}: {exc}", len(side.buf) + length))
                break
            out.extend(self._frame(side, frame))
        return out

    def _break(self, side: _Side, reason: str, skipped: int) -> list[H2Event]:
        side.broken = True
        side.buf.clear()
        return [H2Error(side.from_client, reason, skipped)]

    def _frame(self, side: _Side, frame: Frame) -> list[H2Event]:
        fc = side.from_client
        if side.block is not None and not isinstance(frame, ContinuationFrame):
            return self._break(side, "header block interrupted before END_HEADERS", 0)
        if isinstance(frame, SettingsFrame):
            size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
            if size is not None:
                # This peer's table size caps what the *other* peer's encoder may use.
                self._sides[not fc].decoder.max_allowed_table_size = size
            return []
        if isinstance(frame, DataFrame):
            return [H2Data(fc, frame.stream_id, bytes(frame.data), "END_STREAM" in frame.flags)]
        if isinstance(frame, RstStreamFrame):
            return [H2Reset(fc, frame.stream_id, frame.error_code)]
        if isinstance(frame, HeadersFrame | PushPromiseFrame):
            end_stream = isinstance(frame, HeadersFrame) and "END_STREAM" in frame.flags
            promised = isinstance(frame, PushPromiseFrame)
            side.block = (frame.stream_id, end_stream, promised, bytearray(frame.data))
            if "END_HEADERS" not in frame.flags:
                return []
            return self._finish_block(side)
        if isinstance(frame, ContinuationFrame):
            if side.block is None or side.block[0] != frame.stream_id:
                return self._break(side, "CONTINUATION without a header block", 0)
            side.block[3].extend(frame.data)
            if "END_HEADERS" not in frame.flags:
                return []
            return self._finish_block(side)
        return []  # PING, WINDOW_UPDATE, PRIORITY, GOAWAY, extensions: nothing to report

    def _finish_block(self, side: _Side) -> list[H2Event]:
        assert side.block is not None
        stream_id, end_stream, promised, block = side.block
        side.block = None
        try:
            headers = side.decoder.decode(bytes(block), raw=False)
        except (hpack.HPACKError, ValueError, IndexError) as exc:
            return self._break(side, f"HPACK decode failed: {exc}", 0)
        if promised:
            return []  # decoded only to keep the HPACK table in step; pushes are not followed
        pairs = [(str(n), str(v)) for n, v in headers]
        return [H2Headers(side.from_client, stream_id, pairs, end_stream)]
