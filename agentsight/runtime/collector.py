"""Talking to a running collector: the client side of the ``clients`` sink's socket.

An always-on collector (``agentsight service run``: the shipped pipeline capturing every
agent on the machine) serves its clients on a unix socket, by default
:data:`DEFAULT_SOCKET`. The socket is open to every local user; who asks is known from
the kernel (``SO_PEERCRED``), never from what the client says:

- root sees and records everything;
- any other user sees only events of processes running as that user, and may record
  only a process tree of its own.

Frames are length-prefixed msgpack (4-byte big-endian length, then
``[kind, payload]``), in both directions:

============  =====================================================================
client sends  ``("hello", {})`` -> ``("info", {pipeline, pid, uid, ...})``
              ``("subscribe", {topics, pid, tree, comm})`` -> ``("subscribed", {})``, then
              ``("event", row)`` frames
              ``("record", {pid})``: follow the tree rooted at ``pid`` (the sources look
              at it before it runs) -> ``("followed", {by, late})``, then every event
              of that tree as ``("event", row)``
              ``("finish", {})``: a barrier through the whole pipeline -> the tree's
              remaining events, then ``("done", {events, lost, pipeline_lost})``: ``lost``
              are events this client missed (it read too slowly), ``pipeline_lost`` what the
              collector lost meanwhile (of any process)
server sends  ``("error", {message})`` for a refused request; ``("lost", {n})`` when a
              slow client missed events (its queue was full)
============  =====================================================================

An event row is ``[topic, ts_ns, source, pid, tid, comm, data]`` with bytes as msgpack
``bin`` (as on the wire, see :mod:`agentsight.wire`).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import msgpack

from agentsight.event import Event

__all__ = ["DEFAULT_SOCKET", "CollectorError", "Client", "Subscription", "encode", "FrameReader", "socket_path",
           "running"]

DEFAULT_SOCKET = "/run/agentsight-clients/collector.sock"
MAX_FRAME = 64 << 20
_LEN = struct.Struct(">I")


class CollectorError(RuntimeError):
    """No collector, or it refused or broke off a request (one line for the user)."""


def socket_path() -> str:
    return os.environ.get("AGENTSIGHT_COLLECTOR", DEFAULT_SOCKET)


def encode(kind: str, payload: Any) -> bytes:
    body = msgpack.packb([kind, payload], use_bin_type=True)
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Cuts a byte stream into frames (kind, payload); a frame over MAX_FRAME is an error."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes")
            if len(self.buf) < 4 + n:
                break
            body = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            kind, payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
            out.append((str(kind), payload))
        return out


def running(path: str | None = None) -> bool:
    """Whether a collector answers on its socket."""
    try:
        with Client(path, timeout=1.0) as c:
            c.info()
        return True
    except (CollectorError, OSError):
        return False


class Client:
    """One connection to the collector."""

    def __init__(self, path: str | None = None, timeout: float | None = 5.0) -> None:
        self.path = path or socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise CollectorError(f"no collector at {self.path}: {exc.strerror or exc}") from None
        self.reader = FrameReader()
        self.frames: list[tuple[str, Any]] = []

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, kind: str, payload: Any) -> None:
        self.sock.sendall(encode(kind, payload))

    def next(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next frame from the collector (CollectorError when it closed the connection)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise CollectorError("the collector closed the connection")
            self.frames.extend(self.reader.feed(data))
        kind, payload = self.frames.pop(0)
        if kind == "error":
            raise CollectorError(str(payload.get("message")))
        return kind, payload

    def expect(self, kind: str, timeout: float | None = None) -> Any:
        """Skip to the next frame of ``kind``; events on the way are lost to the caller."""
        while True:
            k, payload = self.next(timeout)
            if k == kind:
                return payload

    def info(self) -> dict[str, Any]:
        self.send("hello", {})
        return dict(self.expect("info"))

    def events(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Frames as they come: ("event", Event), ("lost", n), ("done", {...}), ..."""
        while True:
            kind, payload = self.next(timeout)
            if kind == "event":
                yield kind, Event(*payload)
            else:
                yield kind, payload


class Subscription:
    """Live events from the collector, the way :class:`agentsight.runtime.subscriber.Subscriber` gives
    them from a bus: ``recv(timeout)`` returns what arrived (maybe nothing), ``lost`` counts
    events the collector could not queue for us."""

    def __init__(self, topics: list[str], pid: int = 0, comm: str = "", tree: bool = False,
                 path: str | None = None) -> None:
        self.client = Client(path, timeout=5.0)
        self.client.send("subscribe", {"topics": list(topics), "pid": pid, "tree": tree, "comm": comm})
        self.client.expect("subscribed", timeout=10.0)  # from here on, nothing is missed
        self.client.sock.setblocking(False)
        self.lost = 0

    def recv(self, timeout: float) -> list[Event]:
        import select

        out: list[Event] = []
        ready, _, _ = select.select([self.client.sock], [], [], timeout)
        while ready:
            try:
                data = self.client.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                raise CollectorError("the collector closed the connection")
            for kind, payload in self.client.reader.feed(data):
                if kind == "event":
                    out.append(Event(*payload))
                elif kind == "lost":
                    self.lost += int(payload.get("n") or 0)
                elif kind == "error":
                    raise CollectorError(str(payload.get("message")))
            ready, _, _ = select.select([self.client.sock], [], [], 0)
        return out

    def close(self) -> None:
        self.client.close()
