"""Incremental decoding of HTTP content codings (gzip, deflate, br, zstd).

A :class:`ContentDecoder` is fed the body bytes as they arrive and returns the
decoded bytes available so far, so a compressed event stream can still be read
live. A stream that does not decode is not an exception for the caller: the
decoder stops, keeps the reason in :attr:`ContentDecoder.error`, and the caller
keeps the raw bytes instead.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

__all__ = ["ContentDecoder", "SUPPORTED_CODINGS"]

SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "identity"})


class _Stage(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Deflate:
    """``deflate`` is zlib-wrapped by the RFC, raw deflate in many servers: accept both."""

    def __init__(self) -> None:
        self._obj: zlib._Decompress | None = None
        self._head = b""

    def decompress(self, data: bytes) -> bytes:
        if self._obj is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            # A zlib header is two bytes whose big-endian value is a multiple of 31.
            cmf, flg = self._head[0], self._head[1]
            zlib_wrapped = (cmf & 0x0F) == 8 and ((cmf << 8) | flg) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        return self._obj.decompress(data)


class _Gzip:
    """gzip, including several concatenated members (allowed by RFC 1952)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._obj.decompress(data))
            if not self._obj.eof:
                break
            data = self._obj.unused_data
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return b"".join(out)


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._obj.process(data))


class _Zstd:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._obj.decompress(data))


def _stage(coding: str) -> _Stage | None:
    if coding in ("gzip", "x-gzip"):
        return _Gzip()
    if coding == "deflate":
        return _Deflate()
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    return None


class ContentDecoder:
    """Decodes one body encoded with the codings of a ``Content-Encoding`` header value.

    Codings are listed in the order they were applied, so they are undone in
    reverse. An unknown coding sets :attr:`error` at construction and the body
    is passed through unchanged; a coding that fails to decode sets it later and
    the rest of the body is dropped (what was decoded before stays valid).
    """

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        self.codings = [c for c in codings if c != "identity"]
        self.error: str | None = None
        self._stages: list[_Stage] = []
        for coding in reversed(self.codings):
            stage = _stage(coding)
            if stage is None:
                self.error = f"unsupported content-encoding {coding!r}"
                self._stages = []
                break
            self._stages.append(stage)

    @property
    def active(self) -> bool:
        """True when bytes are being transformed (a known, non-identity coding, no error yet)."""
        return bool(self._stages) and self.error is None

    def decode(self, data: bytes) -> bytes:
        """Decode the next piece of the body; returns b"" once an error has occurred."""
        if not self._stages:
            return data  # identity, or an unsupported coding passed through as is
        if self.error is not None:
            return b""
        try:
            for stage in self._stages:
                data = stage.decompress(data)
                if not data:
                    break
        except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
            self.error = f"{'+'.join(self.codings)} decode failed: {exc}"
            return b""
        return data
