"""A bus subscriber: what `agentsight tap` and the ``bus`` source use.

Connects a SUB socket to a bus (the local ipc one, or a remote ``tcp://`` one
with CURVE keys), subscribes to topic prefixes, decodes frames and counts gaps
in the per-(publisher, topic) sequence numbers: the bus is lossy, so a slow
subscriber loses frames, and this is where that loss is made visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq

from agentsight import wire
from agentsight.event import Event

__all__ = ["Subscriber", "SubscriberStats"]


@dataclass
class SubscriberStats:
    frames: int = 0
    events: int = 0
    lost: int = 0
    bad_frames: int = 0
    publishers: set[str] = field(default_factory=set)


class Subscriber:
    def __init__(self, endpoint: str, prefixes: list[str] | None = None, *,
                 server_key: bytes | None = None, client_keys: tuple[bytes, bytes] | None = None,
                 hwm: int = 1000, ctx: zmq.Context[Any] | None = None) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        if endpoint.startswith("tcp://"):
            if server_key is None or client_keys is None:
                raise ValueError("a tcp:// bus needs --server-key and --client-key (see `agentsight keys`)")
            public, secret = client_keys
            self.sock.curve_serverkey = server_key
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        for p in prefixes or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.sock.connect(endpoint)
        self.stats = SubscriberStats()
        self._next: dict[tuple[str, str], int] = {}

    def recv(self, timeout: float) -> list[Event]:
        """Events of every frame waiting, or of the first to come within ``timeout`` seconds."""
        out: list[Event] = []
        if not self.sock.poll(int(timeout * 1000)):
            return out
        for _ in range(1000):
            try:
                parts = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                header, events = wire.decode_bus(parts)
            except wire.FrameError:
                self.stats.bad_frames += 1
                continue
            key = (header.sender, parts[0].decode(errors="replace"))
            expected = self._next.get(key)
            if expected is not None and header.seq > expected:
                self.stats.lost += header.seq - expected
            self._next[key] = header.seq + header.count
            self.stats.frames += 1
            self.stats.events += len(events)
            self.stats.publishers.add(header.sender)
            out.extend(events)
        return out

    def close(self) -> None:
        self.sock.close(linger=0)
