"""A bus subscriber: what `agentsight tap` and the ``bus`` source use.

Connects a SUB socket to a bus (the local ipc one, or a remote ``tcp://`` one
with CURVE keys), subscribes to topic prefixes, decodes frames and counts gaps
in the per-(publisher, topic) sequence numbers: the bus is lossy, so a slow
subscriber loses frames, and this is where that loss is made visible. Sync frames
(no events, just where a (topic, publisher) numbering stands) come from a publisher
when a subscription reaches it and when it stops, and from the bus every second, so
losses right after subscribing and at the tail show up too, not only between two
frames received.

Over TCP, a monitor on the socket reports why a CURVE handshake failed (the bus
refused the client key, or the server key is wrong) in :attr:`SubscriberStats.refused`.
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
    syncs: int = 0
    publishers: set[str] = field(default_factory=set)
    refused: str = ""   # why the bus refused us (CURVE handshake), if it did


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
        self.monitor: zmq.Socket[bytes] | None = None
        if endpoint.startswith("tcp://"):
            self.monitor = self.sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for p in prefixes or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.sock.connect(endpoint)
        self.stats = SubscriberStats()
        self._next: dict[tuple[str, str], int] = {}

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        assert self.monitor is not None
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.stats.refused = ""
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.stats.refused = (f"the bus refused this client's key (CURVE authentication failed, "
                                      f"code {event['value']}): is its public key in the bus's authorized_keys?")
            else:
                self.stats.refused = ("the CURVE handshake with the bus failed: check --server-key "
                                      "(the bus's public key) and that the bus listens with CURVE")

    def recv(self, timeout: float) -> list[Event]:
        """Events of every frame waiting, or of the first to come within ``timeout`` seconds."""
        out: list[Event] = []
        if self.monitor is not None:
            self._read_monitor()
        if not self.sock.poll(int(timeout * 1000)):
            if self.monitor is not None:
                self._read_monitor()
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
            if header.count == 0:  # a sync frame: where the topic's numbering stands
                self.stats.syncs += 1
                if expected is None or header.seq > expected:
                    if expected is not None:
                        self.stats.lost += header.seq - expected
                    self._next[key] = header.seq
                continue
            if expected is not None and header.seq > expected:
                self.stats.lost += header.seq - expected
            self._next[key] = header.seq + header.count
            self.stats.frames += 1
            self.stats.events += len(events)
            self.stats.publishers.add(header.sender)
            out.extend(events)
        return out

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        self.sock.close(linger=0)
