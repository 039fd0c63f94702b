"""The bus: an XSUB/XPUB proxy that every stage can publish to.

Binds:    XSUB ``<run>/bus-in`` (publishing stages connect their XPUB here),
          XPUB ``<run>/bus``    (local subscribers: `agentsight tap`, sinks elsewhere),
          XPUB ``[bus] listen`` (optional, TCP for other machines, CURVE-encrypted; a
          client key must be in ``authorized_keys`` or the connection is refused).
Connects: a DEALER to the supervisor's control socket.

Frames are forwarded as they are (see :mod:`agentsight.wire` for the layout);
subscriptions from both XPUB sides go upstream to the publishers, so nothing is
encoded for a topic nobody wants. The bus is lossy by design: an XPUB drops
frames for a subscriber that does not keep up, and subscribers see the gap in the
per-(publisher, topic) sequence numbers. So that a gap at the tail shows too (a
subscriber that fell behind as the stream ended has no later frame to see it by),
the bus remembers where each (topic, publisher) numbering stands and says it every
``SYNC_EVERY`` seconds in a sync frame (no events), for a minute after its last frame.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from agentsight import wire
from agentsight.pipeline.config import BusSpec
from agentsight.runtime import control

__all__ = ["BusProxy", "load_secret_key", "load_public_key"]

log = logging.getLogger("agentsight.runtime.bus")

SYNC_EVERY = 1.0   # seconds between the bus's sync frames
SYNC_FOR = 60.0    # a numbering is said this long after its last frame


def load_secret_key(path: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file made by `agentsight keys`."""
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def load_public_key(path_or_key: str) -> bytes:
    """A public key from a ``.key`` file, or the Z85 text itself."""
    if os.path.exists(path_or_key):
        public, _ = zmq.auth.load_certificate(path_or_key)
        return public
    if len(path_or_key) == 40:
        return path_or_key.encode()
    raise ValueError(f"{path_or_key!r} is neither a key file nor a 40-character Z85 key")


class BusProxy:
    def __init__(self, ctx: zmq.Context[Any], spec: BusSpec, bus_in: str, bus_out: str) -> None:
        self.ctx = ctx
        self.xsub = ctx.socket(zmq.XSUB)
        self.xsub.setsockopt(zmq.RCVHWM, spec.hwm)
        self.xsub.bind(bus_in)
        self.outs = []
        local = ctx.socket(zmq.XPUB)
        local.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription goes on to the publishers
        local.setsockopt(zmq.SNDHWM, spec.hwm)
        local.bind(bus_out)
        self.outs.append(local)
        self.auth: ThreadAuthenticator | None = None
        if spec.listen:
            self.auth = ThreadAuthenticator(ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=spec.authorized_keys)
            remote = ctx.socket(zmq.XPUB)
            public, secret = load_secret_key(spec.secret_key)
            remote.curve_secretkey = secret
            remote.curve_publickey = public
            remote.curve_server = True
            remote.setsockopt(zmq.XPUB_VERBOSER, 1)
            remote.setsockopt(zmq.SNDHWM, spec.hwm)
            remote.bind(spec.listen)
            self.outs.append(remote)
        for s in (self.xsub, *self.outs):
            s.setsockopt(zmq.LINGER, 0)
        self.frames = 0
        self.bad = 0
        # (topic, publisher) -> (next sequence number, when last seen)
        self.numbering: dict[tuple[bytes, str], tuple[int, float]] = {}
        self.next_sync = 0.0

    def pump(self, poller: zmq.Poller, timeout_ms: int) -> None:
        ready = dict(poller.poll(timeout_ms))
        for out in self.outs:
            if out in ready:
                # A (un)subscription from a subscriber: pass it to the publishers.
                while True:
                    try:
                        self.xsub.send(out.recv(flags=zmq.NOBLOCK))
                    except zmq.Again:
                        break
        if self.xsub in ready:
            for _ in range(1000):
                try:
                    parts = self.xsub.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if len(parts) != 3:
                    self.bad += 1
                    continue
                try:
                    header = wire.decode_header(parts[1].bytes)
                except wire.FrameError:
                    self.bad += 1
                    continue
                self.frames += 1
                self.numbering[(parts[0].bytes, header.sender)] = (header.seq + header.count, time.monotonic())
                for out in self.outs:
                    try:
                        out.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        pass
        self.sync()

    def sync(self) -> None:
        """Every SYNC_EVERY seconds: where each recent (topic, publisher) numbering stands."""
        now = time.monotonic()
        if now < self.next_sync:
            return
        self.next_sync = now + SYNC_EVERY
        for key, (seq, seen) in list(self.numbering.items()):
            if now - seen > SYNC_FOR:
                del self.numbering[key]
                continue
            frames = [key[0], wire.encode_header(wire.BUS, key[1], seq, 0), b"\x90"]
            for out in self.outs:
                try:
                    out.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        for s in (self.xsub, *self.outs):
            s.close(linger=0)


def main(spec: dict[str, Any], run: Any, control_id: str) -> int:
    """Bus process entry (called from agentsight.runtime.actor's main for component ``bus``)."""
    from agentsight.pipeline.config import spec_from_dict

    pipeline = spec_from_dict(spec["pipeline"])
    ctx: zmq.Context[Any] = zmq.Context()
    ctl = ctx.socket(zmq.DEALER)
    ctl.setsockopt(zmq.IDENTITY, control_id.encode())
    ctl.setsockopt(zmq.LINGER, 1000)
    ctl.connect(run.control)
    try:
        proxy = BusProxy(ctx, pipeline.bus, run.bus_in, run.bus_out)
    except (zmq.ZMQError, ValueError, OSError) as exc:
        msg = f"bus cannot start: {exc}"
        ctl.send(wire.pack(control.Failure(msg, fatal=True).to_wire()))
        print(f"agentsight[bus]: {msg}", file=sys.stderr)
        ctx.destroy(linger=1000)
        return control.EXIT_FATAL
    ctl.send(wire.pack(control.Ready(os.getpid()).to_wire()))
    poller = zmq.Poller()
    for s in (proxy.xsub, *proxy.outs, ctl):
        poller.register(s, zmq.POLLIN)
    next_hb = 0.0
    stopping = False
    while not stopping:
        proxy.pump(poller, 100)
        while True:
            try:
                req = control.parse(wire.unpack(ctl.recv(flags=zmq.NOBLOCK)))
            except zmq.Again:
                break
            except (wire.FrameError, control.ControlError):
                continue
            if isinstance(req, control.Stop):
                stopping = True
        now = time.monotonic()
        if now >= next_hb or stopping:
            next_hb = now + pipeline.supervisor.heartbeat_interval
            counters = {"received": proxy.frames, "sent": proxy.frames, "dropped": 0, "errors": proxy.bad}
            ctl.send(wire.pack(control.Heartbeat(counters, {"frames": proxy.frames}).to_wire()))
    ctl.send(wire.pack(control.Stopped().to_wire()))
    proxy.close()
    ctx.destroy(linger=1000)
    return 0

