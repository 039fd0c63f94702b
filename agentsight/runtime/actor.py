"""One actor process: the sockets and the loop around a component's hooks.

Started by the supervisor as ``python -m agentsight.runtime.actor SPEC.json``, one
process per source, per analyzer worker, per sink. It

- binds   its PULL input ``<run>/in/<name>.<worker>`` (analyzers and sinks);
- connects a DEALER to the supervisor's control ROUTER (ready, heartbeat with
  counters, reconfigure, stop), a PUSH to every instance of every downstream
  component, and an XPUB to the bus's XSUB when it publishes.

Theory of operation. Events arrive in batches (see :mod:`agentsight.wire`).
Each input link has an expected next sequence number; a jump is counted as
lost. The component's hook turns the batch into output events, the router
splits them per downstream instance (by a stable hash of the partition key when
the downstream has several workers), numbers them per link, records the new
link state (which survives kill -9, see :mod:`agentsight.runtime.linkstate`) and only
then sends. A graceful stop is a cascade of end-of-stream (EOS) frames: sources
stop and send EOS on every link; a stage that has EOS from every upstream
instance flushes its component, sends EOS downstream and exits; sinks flush and
exit. Sends block (backpressure) rather than drop, except when stopping past the
deadline, where what could not be sent is counted as dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import zmq

from agentsight import wire
from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Component, FatalStartError, Sink, Source
from agentsight.pipeline.config import ComponentSpec, PipelineSpec, spec_from_dict
from agentsight.pipeline.registry import component_class
from agentsight.runtime import control
from agentsight.runtime.endpoints import RunDir, instance_id
from agentsight.runtime.linkstate import LinkState

__all__ = ["main", "ActorRuntime", "partition_key", "stable_hash"]

log = logging.getLogger("agentsight.runtime.actor")

MAX_BATCH = 512          # events per frame on a data edge
MAX_GAP = 1 << 32        # a sequence jump past this is a bad frame, not a loss
DROPPED = "count:dropped"  # the link state slot of the instance's lost-event count
HELD = "count:held"        # events held for a downstream being restarted
HOLD_MAX = 64 * MAX_BATCH  # held events past which we stop taking input until the hold ends
DATA_HWM = 64            # frames queued per link, each side
BUS_COMPONENT = "bus"     # the bus process's component name and instance id


def stable_hash(value: Any) -> int:
    """A hash that is the same in every process (Python's str hash is salted per process)."""
    if isinstance(value, int):
        return value & 0x7FFFFFFF
    if isinstance(value, str):
        return zlib.crc32(value.encode())
    if isinstance(value, bytes):
        return zlib.crc32(value)
    if value is None:
        return 0
    return zlib.crc32(repr(value).encode())


def partition_key(field: str) -> Callable[[Event], Any]:
    """The function that extracts a partition key: ``pid``, ``tid``, ``comm`` or ``data.FIELD``."""
    if field == "pid":
        return lambda e: e.pid
    if field == "tid":
        return lambda e: e.tid
    if field == "comm":
        return lambda e: e.comm
    if field.startswith("data."):
        name = field[5:]
        return lambda e: e.data.get(name)
    raise ValueError(f"bad partition field {field!r}")


class Output:
    """The links to every instance of one downstream component."""

    def __init__(self, rt: ActorRuntime, target: ComponentSpec, partition: str) -> None:
        self.target = target.name
        self.workers = target.workers
        self.signature = (target.name, target.workers, partition)
        self.key = partition_key(partition) if self.workers > 1 else None
        self.links = [f"{rt.id}->{instance_id(target.kind, target.name, w, target.workers)}"
                      for w in range(self.workers)]
        self.sockets: list[zmq.Socket[bytes]] = []
        for w in range(self.workers):
            s = rt.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, DATA_HWM)
            s.setsockopt(zmq.LINGER, -1)
            s.connect(rt.run.input(target.name, w))
            self.sockets.append(s)
        self.batches: list[list[Event]] = [[] for _ in range(self.workers)]

    def add(self, events: list[Event]) -> None:
        if self.key is None:
            self.batches[0].extend(events)
            return
        n, key, batches = self.workers, self.key, self.batches
        for e in events:
            batches[stable_hash(key(e)) % n].append(e)


class ActorRuntime:
    """Runs one component instance until it is told to stop (or its source finishes)."""

    def __init__(self, pipeline: PipelineSpec, name: str, worker: int, run: RunDir) -> None:
        self.pipeline = pipeline
        self.spec = pipeline.components[name]
        self.worker = worker
        self.run = run
        self.id = instance_id(self.spec.kind, name, worker, self.spec.workers)
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.counters = {"received": 0, "sent": 0, "dropped": 0, "errors": 0}
        self.runtime_stats: dict[str, int] = {}
        self._encode_warnings = 0
        # A sink's input consumed but not yet durable: link -> next sequence, acknowledged at flush.
        self._unacked: dict[str, int] = {}
        self._unacked_events = 0
        self._sink_at = 0       # the sink's position at its last acknowledged flush
        self.state = LinkState(run.state_file(self.id))
        self.counters["dropped"] = self.state.get(DROPPED)
        self.outputs: list[Output] = []
        self.retired: list[Output] = []          # ended outputs whose sockets stay open until pruned
        self.held: dict[str, list[Event]] = {}   # downstream being restarted -> what we produced for it
        self.expected: set[str] = set()
        self.eos_from: set[str] = set()
        self.marks: dict[str, set[str]] = {}      # barrier id -> the upstream instances it came from so far
        self.pending_marks: list[tuple[str, list[int]]] = []  # a source's marks to send after its next drain
        self.stopping = False
        self.stop_deadline = 0.0
        self.hb_interval = pipeline.supervisor.heartbeat_interval
        self.next_hb = 0.0
        self.component: Component = component_class(self.spec.kind, self.spec.type)(name, self.spec.options)
        self.caps = self.component.CAPS
        self.raw = self.component.raw
        self.publisher: Publisher | None = None
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, self.id.encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        self.control.connect(run.control)
        self.input: zmq.Socket[bytes] | None = None

    # ---------------------------------------------------------------- wiring
    def wire_up(self, hold: Iterable[str] = ()) -> None:
        """(Re)compute outputs, expected senders and publishing from the pipeline spec.

        An output that is no longer wanted is retired: it gets its end of stream and its sockets
        stay open (closing them could drop the tail still queued) until the supervisor says
        ``prune``. A downstream named in ``hold`` is being restarted: what we produce for it is
        kept here (see :meth:`emit`) until a later reconfigure brings it back, then sent to the
        new instances, so a restart loses nothing.
        """
        wanted: dict[tuple[Any, ...], ComponentSpec] = {}
        for d in self.pipeline.downstream(self.spec.name):
            part = d.partition_by or component_class(d.kind, d.type).DEFAULT_PARTITION
            wanted[(d.name, d.workers, part)] = d
        feeds = {out.target for out in self.outputs}
        for name in hold:
            if name in feeds:  # only what we were sending to: the others hold their own
                self.held.setdefault(name, [])
        keep = []
        for out in self.outputs:
            if out.signature in wanted:
                keep.append(out)
                del wanted[out.signature]
            else:
                self._retire_output(out)
        for sig, d in wanted.items():
            keep.append(Output(self, d, sig[2]))
        self.outputs = keep
        self._release_held(set(hold))
        if self.raw and any(o.workers > 1 for o in self.outputs):
            self.raw = False  # a partitioned downstream needs keys, so events must be decoded
        self.expected = set()
        for i in self.spec.inputs:
            up = self.pipeline.components.get(i)
            if up is not None:
                self.expected.update(instance_id(up.kind, up.name, w, up.workers) for w in range(up.workers))
        if self.spec.publish and self.pipeline.bus.enabled and self.publisher is None:
            self.publisher = Publisher(self)
        if self.publisher is not None:
            self.publisher.prefixes = None if self.spec.publish is True else tuple(self.spec.publish or ())
            if not self.spec.publish:
                self.publisher.close()
                self.publisher = None

    def _retire_output(self, out: Output) -> None:
        self._flush_output(out)
        for link, sock in zip(out.links, out.sockets, strict=True):
            self._send(sock, wire.eos_frames(self.id, self.state.get(link)), 0)
        self.retired.append(out)

    def _prune(self) -> None:
        """Close retired outputs: the supervisor saw their receivers exit, so nothing is in flight."""
        for out in self.retired:
            for sock in out.sockets:
                sock.close(linger=0)
        self.retired = []

    def held_count(self) -> int:
        return sum(len(v) for v in self.held.values())

    def _release_held(self, holding: set[str]) -> None:
        """Send what was held for a restarted downstream to its new instances (or let it go if it is gone)."""
        if not self.held:
            return
        present = {out.target: out for out in self.outputs}
        names = {d.name for d in self.pipeline.downstream(self.spec.name)}
        frames: list[tuple[Any, list[bytes], int]] = []
        for name in list(self.held):
            out = present.get(name)
            if out is not None:
                out.add(self.held.pop(name))
                frames.extend(self._number(out))
            elif name not in names and name not in holding:
                self.held.pop(name)  # removed from the pipeline for good: no destination left
        self.state.stage(HELD, self.held_count())
        self.state.commit()
        self._send_all(frames)

    # -------------------------------------------------------------- sending
    def _send(self, sock: zmq.Socket[bytes], frames: list[bytes], count: int) -> bool:
        """Send, waiting while the downstream is full (backpressure). False if dropped."""
        while True:
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                pass
            if self.stopping and time.monotonic() > self.stop_deadline:
                self._lost(count)
                self._stat("dropped_at_stop", count)
                return False
            sock.poll(100, zmq.POLLOUT)
            self._heartbeat()

    def _encode(self, events: list[Event]) -> wire.Encoded:
        """Encode a batch; an event that cannot be encoded is repaired or dropped alone, and counted."""
        enc = wire.encode_batch(events)
        if enc.repaired or enc.dropped:
            self._stat("unencodable_repaired", enc.repaired)
            if enc.dropped:
                self._stat("unencodable_dropped", enc.dropped)
                self._lost(enc.dropped)
            self._encode_warnings += 1
            if self._encode_warnings <= 5:
                log.warning("%s: %d event(s) could not be encoded: %d repaired, %d dropped",
                            self.id, enc.repaired + enc.dropped, enc.repaired, enc.dropped)
        return enc

    def _number(self, out: Output, encoded: dict[int, wire.Encoded] | None = None
                ) -> list[tuple[Any, list[bytes], int]]:
        """Cut one output's batches into frames and number them on their links (not sent yet)."""
        frames = []
        for w, batch in enumerate(out.batches):
            if not batch:
                continue
            link = out.links[w]
            for start in range(0, len(batch), MAX_BATCH):
                chunk = batch[start:start + MAX_BATCH]
                enc = None
                if encoded is not None and len(batch) <= MAX_BATCH:
                    enc = encoded.get(id(batch))
                if enc is None:
                    enc = self._encode(chunk)
                    if encoded is not None and len(batch) <= MAX_BATCH:
                        encoded[id(batch)] = enc
                if not enc.count:
                    continue
                seq = self.state.get(link)
                self.state.stage(link, seq + enc.count)
                frames.append((out.sockets[w], [wire.encode_header(wire.DATA, self.id, seq, enc.count), enc.body],
                               enc.count))
            out.batches[w] = []
        return frames

    def _send_all(self, frames: list[tuple[Any, list[bytes], int]]) -> None:
        for sock, parts, count in frames:
            if self._send(sock, parts, count):
                self.counters["sent"] += count

    def _flush_output(self, out: Output) -> None:
        frames = self._number(out)
        self.state.commit()
        self._send_all(frames)

    def emit(self, events: list[Event], consumed: Callable[[], None] | None = None) -> None:
        """Route events to every downstream and the bus, and send them.

        ``consumed`` marks the input that produced them as processed (staged): the new
        output numbers and the consumed input are committed as one step before anything
        is sent (see linkstate).
        """
        if events and self.publisher is not None:
            self.publisher.publish(events)
        frames: list[tuple[Any, list[bytes], int]] = []
        if events:
            encoded: dict[int, wire.Encoded] = {}
            shared: list[Event] | None = None
            for out in self.outputs:
                if out.key is None:
                    # Unpartitioned outputs share one batch and one encoding (fan-out copies).
                    if shared is None:
                        shared = list(events)
                    out.batches[0] = shared
                else:
                    out.add(events)
            for out in self.outputs:
                frames.extend(self._number(out, encoded))
            if self.held:
                for kept in self.held.values():
                    kept.extend(events)
                # Held events died with us if we are killed: counted then (see start).
                self.state.stage(HELD, self.held_count())
        if consumed is not None:
            consumed()
        self.state.commit()
        self._send_all(frames)

    def forward_raw(self, header: wire.Header, body: bytes, consumed: Callable[[], None]) -> None:
        """Forward a batch without decoding it (passthrough with decode = false)."""
        frames = []
        for out in self.outputs:
            link = out.links[0]
            seq = self.state.get(link)
            self.state.stage(link, seq + header.count)
            frames.append((out.sockets[0], [wire.encode_header(wire.DATA, self.id, seq, header.count), body],
                           header.count))
        consumed()
        self.state.commit()
        self._send_all(frames)

    def send_eos(self) -> None:
        log.info("%s: end of stream, sent %d events", self.id, self.counters["sent"])
        for out in self.outputs:
            for link, sock in zip(out.links, out.sockets, strict=True):
                self._send(sock, wire.eos_frames(self.id, self.state.get(link)), 0)

    # -------------------------------------------------------------- control
    def _ctl(self, msg: control.Message) -> None:
        try:
            self.control.send(wire.pack(msg.to_wire()), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _lost(self, n: int) -> None:
        """Count ``n`` events lost. The count lives in the link state, staged to be committed with the
        step it belongs to (a gap with the input it was found on), so a restart neither loses nor
        repeats it; heartbeats report it cumulative across restarts."""
        self.counters["dropped"] += n
        self.state.stage(DROPPED, self.counters["dropped"])

    def _stat(self, name: str, n: int = 1) -> None:
        self.runtime_stats[name] = self.runtime_stats.get(name, 0) + n

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next_hb:
            return
        self.next_hb = now + self.hb_interval
        stats = dict(self.component.stats)
        for k, v in self.runtime_stats.items():
            stats[k] = stats.get(k, 0) + v
        # Events numbered for (the first) downstream so far, across restarts (the link state keeps them).
        if self.outputs:
            stats["numbered_out"] = sum(self.state.get(link) for link in self.outputs[0].links)
        self._ctl(control.Heartbeat(self.reported_counters(), stats))

    def reported_counters(self) -> dict[str, int]:
        """The counters as reported: ``dropped`` adds the component's own losses (stats named *_lost:
        kernel ring buffer, bus gaps, spans an exporter could not deliver)."""
        counters = dict(self.counters)
        counters["dropped"] += sum(v for k, v in self.component.stats.items() if k.endswith("_lost"))
        return counters

    def await_release(self) -> None:
        """Stay connected until every downstream instance has our end-of-stream.

        libzmq drops what is still in the kernel buffers of a connection whose
        sender goes away while the receiver is at its high-water mark, so a sender
        that exits right after its last send can lose the tail of its stream. The
        receivers report each EOS to the supervisor, which then releases us.
        """
        if not self.outputs:
            return
        self._ctl(control.Draining())
        deadline = self.stop_deadline if self.stopping else time.monotonic() + self.pipeline.supervisor.graceful_timeout
        while time.monotonic() < deadline:
            if not self.control.poll(100):
                self._heartbeat()
                continue
            try:
                msg = control.parse(wire.unpack(self.control.recv()))
            except (wire.FrameError, control.ControlError):
                continue
            if isinstance(msg, control.Release):
                return
        log.warning("%s: downstream did not confirm the end of stream in time", self.id)

    def _handle_control(self) -> None:
        while True:
            try:
                raw = self.control.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = control.parse(wire.unpack(raw))
            except control.UnknownOp:
                continue  # from a newer supervisor: nothing here acts on it
            except (wire.FrameError, control.ControlError):
                self._stat("bad_control")
                continue
            if isinstance(msg, control.Stop):
                log.info("%s: stop requested", self.id)
                if not self.stopping:
                    self.stopping = True
                    self.stop_deadline = time.monotonic() + (10.0 if msg.timeout is None else msg.timeout)
                for gone in msg.gone:
                    self.expected.discard(gone)
            elif isinstance(msg, control.Reconfigure):
                self._reconfigure(spec_from_dict(msg.pipeline), list(msg.hold))
            elif isinstance(msg, control.Prune):
                self._prune()
            elif isinstance(msg, control.Gone):
                # An upstream instance that will never send EOS (it failed for good).
                self.expected.discard(msg.instance)
            elif isinstance(msg, control.Mark) and isinstance(self.component, Source):
                self.pending_marks.append((msg.id, list(msg.pids)))
            elif isinstance(msg, control.Follow):
                pid = msg.pid
                try:
                    ok = self.caps.follow and self.component.follow(pid)
                except Exception as exc:
                    ok = False
                    log.warning("%s: cannot follow %d: %s", self.id, pid, exc)
                self._ctl(control.Followed(pid, msg.req, bool(ok)))
            elif isinstance(msg, control.Answer):
                self.component.on_control(msg.to_wire())

    def _reconfigure(self, pipeline: PipelineSpec, hold: list[str] | None = None) -> None:
        new = pipeline.components.get(self.spec.name)
        if new is None or new.structure() != self.spec.structure():
            self._ctl(control.Reconfigured(False, control.Refusal.STRUCTURE, "structure changed"))
            return
        ok = True
        if new.options != self.spec.options:
            try:
                ok = self.component.reconfigure(new.options)
            except Exception as exc:  # a bad option value: keep the old ones
                self._ctl(control.Reconfigured(False, control.Refusal.REJECTED, f"rejected: {exc}"))
                return
        if not ok:
            self._ctl(control.Reconfigured(False, control.Refusal.RESTART, "options need a restart"))
            return
        self.pipeline, self.spec = pipeline, new
        self.wire_up(hold or ())
        self._ctl(control.Reconfigured(True))

    # ----------------------------------------------------------------- input
    def _on_frame(self, parts: list[bytes]) -> None:
        try:
            if len(parts) not in (1, 2):
                raise wire.FrameError(f"{len(parts)} parts")
            header = wire.decode_header(parts[0])
        except wire.FrameError:
            self.counters["errors"] += 1
            self._stat("bad_frames")
            return
        link = f"{header.sender}->{self.id}"
        expected = self._unacked.get(link)
        if expected is None:
            expected = self.state.get(link)
        if header.seq - expected > MAX_GAP:
            # No sender gets this far ahead of its receiver: a forged or corrupt header, not a loss.
            self.counters["errors"] += 1
            self._stat("impossible_sequence")
            if self.runtime_stats["impossible_sequence"] <= 5:
                log.warning("%s: refused a frame from %s at sequence %d (expected %d)", self.id, header.sender,
                            header.seq, expected)
            return
        if header.seq > expected:
            gap = header.seq - expected
            self._lost(gap)
            self._stat("lost_in_transit", gap)
            log.warning("%s: %d events lost on %s", self.id, gap, link)
        elif header.seq < expected:
            self._stat("sequence_resets")
        if header.kind == wire.MARK:
            self._on_mark_frame(header, parts)
            return
        if header.kind == wire.EOS:
            if self._unacked:
                self._flush_sink()
            self.state.stage(link, header.seq)
            self.state.commit()
            self.eos_from.add(header.sender)
            log.info("%s: end of stream from %s at %d", self.id, header.sender, header.seq)
            # The sender keeps its sockets open until the supervisor hears this (see await_release).
            self._ctl(control.Eos(header.sender))
            return
        if len(parts) != 2:
            self.counters["errors"] += 1
            self._stat("bad_frames")
            return
        # A sender restarted under the same name (a reload) sends again after its end of stream.
        self.eos_from.discard(header.sender)
        self.counters["received"] += header.count

        def consumed() -> None:  # written now: a skipped frame, a sink that keeps nothing
            self.state.stage(link, header.seq + header.count)
            self.state.commit()

        def written() -> None:  # a sink's batch: acknowledged once durable (see _flush_sink)
            self._unacked[link] = header.seq + header.count
            self._unacked_events += header.count

        def consumed_with_outputs() -> None:  # committed with the outputs' numbers (see emit)
            self.state.stage(link, header.seq + header.count)

        if self.raw:
            if isinstance(self.component, Sink):
                consumed()
                self.component.write_raw(header.count)
            else:
                self.forward_raw(header, parts[1], consumed_with_outputs)
            return
        try:
            events = wire.decode_events(parts[1], header.count)
        except wire.FrameError as exc:
            self.counters["errors"] += 1
            self._lost(header.count)
            self._stat("bad_frames")
            if link in self._unacked:
                self._unacked[link] = header.seq + header.count
            else:
                consumed()
            log.warning("%s: skipped a bad frame from %s: %s", self.id, header.sender, exc)
            return
        if isinstance(self.component, Sink):
            try:
                self.component.write(events)
            except Exception:
                self.counters["errors"] += 1
                self._lost(header.count)
                log.exception("%s: sink write failed", self.id)
            written()
            return
        assert isinstance(self.component, Analyzer)
        out: list[Event] | None = None
        if self.caps.batch:
            try:
                out = self.component.process_batch(events)
            except Exception:
                out = None  # redo it event by event, so one bad event costs only itself
        if out is None:
            out = self._run_hook(self.component.process, events)
        # The outputs' numbers and the consumed input are committed as one step: see linkstate.
        self.emit(out, consumed_with_outputs)

    # ---------------------------------------------------------------- marks
    def _on_mark_frame(self, header: wire.Header, parts: list[bytes]) -> None:
        """A barrier from one upstream instance; it passes on once every upstream sent it.

        Marks are how a client learns that everything captured up to a moment has reached a
        sink (``record`` through a running collector closes its recording on one): a source,
        asked through the supervisor, drains what the kernel holds and sends a mark behind
        it on every link; each stage, once the mark came from all its upstream instances,
        emits what it holds for the mark's processes (``settle``) and passes the mark on to
        every downstream instance; a sink flushes and tells its component (``on_mark``).
        """
        try:
            if len(parts) != 2:
                raise wire.FrameError("mark without a body")
            mark_id, pids = wire.decode_mark(parts[1])
        except wire.FrameError:
            self.counters["errors"] += 1
            self._stat("bad_frames")
            return
        got = self.marks.setdefault(mark_id, set())
        got.add(header.sender)
        if not self.expected <= got:
            if len(self.marks) > 256:  # marks whose other halves never came (an upstream restarted)
                del self.marks[next(iter(self.marks))]
            return
        del self.marks[mark_id]
        self._pass_mark(mark_id, pids)

    def _pass_mark(self, mark_id: str, pids: list[int]) -> None:
        if isinstance(self.component, Sink):
            if self._unacked:
                self._flush_sink()
            self.component.flush()
            try:
                self.component.on_mark(mark_id)
            except Exception:
                self.counters["errors"] += 1
                log.exception("%s: on_mark failed", self.id)
            return
        try:
            settled = list(self.component.settle(pids)) if self.caps.settle else []
        except Exception:
            self.counters["errors"] += 1
            log.exception("%s: settle failed", self.id)
            settled = []
        self.emit(settled)
        frames: list[tuple[Any, list[bytes], int]] = []
        for out in self.outputs:
            for link, sock in zip(out.links, out.sockets, strict=True):
                frames.append((sock, wire.mark_frames(self.id, self.state.get(link), mark_id, pids), 0))
        self._send_all(frames)

    def _request(self, req: dict[str, Any]) -> None:
        """Send one of the component's requests, checked as a control message first."""
        try:
            self._ctl(control.parse(req))
        except control.ControlError as exc:
            self._stat("bad_requests")
            log.warning("%s: bad request of the supervisor: %s", self.id, exc)

    def _requests(self) -> None:
        """Send the component's requests of the supervisor (mark, follow)."""
        if self.caps.requests:
            for req in self.component.requests():
                self._request(req)

    # ---------------------------------------------------------------- sinks
    def _flush_sink(self) -> None:
        """Make what the sink was given durable, then acknowledge it (link state), as one step.

        Before the flush, the new input positions and the sink's position after the flush are
        committed with the count of events riding on it ("sink:pending"); after it, the count is
        cleared. A kill in between leaves the count set, and :meth:`_recover_sink` asks the sink
        whether the flush landed: if not, those events are counted as lost.
        """
        sink = self.component
        assert isinstance(sink, Sink)
        if not self._unacked:
            return
        after = sink.position()
        for link, seq in self._unacked.items():
            self.state.stage(link, seq)
        self.state.stage("sink:before", self._sink_at)
        self.state.stage("sink:after", after)
        self.state.stage("sink:pending", self._unacked_events)
        self.state.commit()
        try:
            sink.flush()
        except Exception:
            self.counters["errors"] += 1
            self._lost(self._unacked_events)
            log.exception("%s: sink flush failed", self.id)
        self.state.stage("sink:pending", 0)
        self.state.commit()
        self._unacked.clear()
        self._unacked_events = 0
        self._sink_at = after
        try:
            sink.after_flush()
        except Exception:
            self.counters["errors"] += 1
            log.exception("%s: after flush", self.id)
        if sink.position() != after:  # rotated: a new file starts at 0
            self._sink_at = sink.position()
            self.state.set("sink:after", self._sink_at)

    def _recover_sink(self) -> None:
        """After a restart: count a flush the predecessor died in, cut what it wrote unacknowledged."""
        sink = self.component
        assert isinstance(sink, Sink)
        durable = sink.durable_position()
        # Positions are about one file or recording: a restart with other options (another path)
        # starts afresh there, taking what the file holds as it is.
        identity = zlib.crc32(json.dumps(self.spec.options, sort_keys=True, default=str).encode()) + 1
        if self.state.get("sink:id") != identity:
            pending = self.state.get("sink:pending")
            if pending:  # a flush to the old file cut short: whether it landed cannot be told now
                self._lost(pending)
                self._stat("lost_in_flush", pending)
            self.state.stage("sink:after", durable)
            self.state.stage("sink:pending", 0)
            self.state.stage("sink:id", identity)
            self.state.commit()
            self._sink_at = durable
            return
        target = self.state.get("sink:after")
        pending = self.state.get("sink:pending")
        if pending and durable < target:
            self._lost(pending)
            self._stat("lost_in_flush", pending)
            log.warning("%s: %d events of a flush cut short by a crash are lost", self.id, pending)
            target = self.state.get("sink:before")
        if durable > target:
            sink.truncate(target)
        self.state.stage("sink:after", target)
        self.state.stage("sink:pending", 0)
        self.state.commit()
        self._sink_at = sink.position()

    def _run_hook(self, hook: Callable[[Event], Iterable[Event]], events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for e in events:
            try:
                out.extend(hook(e))
            except Exception as exc:
                self.counters["errors"] += 1
                self._stat("hook_errors")
                if self.counters["errors"] <= 5:
                    log.warning("%s: %s on %s: %s", self.id, type(exc).__name__, e.topic, exc)
        return out

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        if self.spec.kind != "source":
            self.input = self.ctx.socket(zmq.PULL)
            self.input.setsockopt(zmq.RCVHWM, DATA_HWM)
            self.input.setsockopt(zmq.LINGER, 0)
            self.input.bind(self.run.input(self.spec.name, self.worker))
        self.wire_up()
        self.component.open()
        if isinstance(self.component, Sink) and not self.raw:
            self._recover_sink()
        held = self.state.get(HELD)
        if held:  # a predecessor was killed while holding events for a restarting downstream
            self._lost(held)
            self._stat("lost_in_hold", held)
            self.state.stage(HELD, 0)
            self.state.commit()
        self._ctl(control.Ready(os.getpid()))

    def loop(self) -> None:
        if isinstance(self.component, Source):
            self._loop_source(self.component)
        else:
            self._loop_stage()

    def _loop_source(self, src: Source) -> None:
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        # A source with a wake-up fd (the eBPF rings) is waited on together with the control
        # socket: a request (follow this tree) is answered at once, not after a poll timeout.
        waiter: zmq.Poller | None = None
        wake = src.wait_fd()
        if wake is not None:
            waiter = zmq.Poller()
            waiter.register(self.control, zmq.POLLIN)
            waiter.register(wake, zmq.POLLIN)
        while not self.stopping and not src.finished:
            if self.held and self.held_count() >= HOLD_MAX:  # the restarted downstream is not back yet
                if poller.poll(50):
                    self._handle_control()
                self._heartbeat()
                continue
            try:
                if waiter is not None:
                    waiter.poll(50)
                    events = src.poll(0)
                else:
                    events = src.poll(0.05)
            except Exception as exc:
                self.counters["errors"] += 1
                log.warning("%s: poll failed: %s", self.id, exc)
                time.sleep(0.05)
                events = []
            self.counters["received"] += len(events)
            self.emit(events)
            if poller.poll(0):
                self._handle_control()
            if self.pending_marks:
                self._send_marks(src)
            if self.publisher is not None:
                self.publisher.read_subscriptions()
            self._heartbeat()
        self.emit(src.stop())
        self.send_eos()
        if src.finished and not self.stopping:
            self._ctl(control.Finished())

    def _send_marks(self, src: Source) -> None:
        """Drain what the kernel holds, then send each pending mark behind it on every link."""
        marks, self.pending_marks = self.pending_marks, []
        try:
            events = src.poll(0)
        except Exception:
            events = []
        self.counters["received"] += len(events)
        self.emit(events)
        for mark_id, pids in marks:
            self._pass_mark(mark_id, pids)

    def _loop_stage(self) -> None:
        assert self.input is not None
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.input, zmq.POLLIN)
        control_only = zmq.Poller()
        control_only.register(self.control, zmq.POLLIN)
        next_tick = time.monotonic() + 0.1
        flush_every = 0.2
        next_flush = time.monotonic() + flush_every
        # Idle, a stage sleeps until its next timed duty (tick, flush, heartbeat), not 50 ms at a
        # time: fourteen actors waking 20 times a second cost an idle collector ~5% of a core.
        # A component that sends requests (the clients sink: record's follow) keeps 50 ms.
        ticks = (isinstance(self.component, Analyzer) and self.caps.tick) or self.publisher is not None
        is_sink = isinstance(self.component, Sink)
        while True:
            holding = bool(self.held) and self.held_count() >= HOLD_MAX and not self.stopping
            if self.caps.requests or self.stopping or holding:
                wait_ms = 50
            else:
                due = min(self.next_hb, next_tick if ticks else self.next_hb, next_flush if is_sink else self.next_hb)
                wait_ms = max(0, min(500, int((due - time.monotonic()) * 1000) + 1))
            ready = dict((control_only if holding else poller).poll(wait_ms))
            if self.control in ready:
                self._handle_control()
            if self.input in ready:
                for _ in range(64):
                    try:
                        parts = self.input.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_frame(parts)
                if self._unacked:
                    self._flush_sink()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.1
                if isinstance(self.component, Analyzer) and self.caps.tick:
                    self.emit(self._run_tick())
                if self.publisher is not None:
                    self.publisher.read_subscriptions()
            if isinstance(self.component, Sink) and now >= next_flush:
                next_flush = now + flush_every
                self.component.flush()  # a sink that keeps nothing durable (console) still shows it
            self._requests()
            self._heartbeat()
            if self.stopping and (self.expected <= self.eos_from or now > self.stop_deadline):
                # Everything upstream has ended (or we are out of time): drain what is queued.
                while True:
                    try:
                        parts = self.input.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_frame(parts)
                    if len(self._unacked) and self._unacked_events >= MAX_BATCH * 64:
                        self._flush_sink()
                missing = self.expected - self.eos_from
                if missing:
                    log.warning("%s: stopping without end-of-stream from %s", self.id, ", ".join(sorted(missing)))
                    self._stat("stopped_without_eos", len(missing))
                break
        if isinstance(self.component, Analyzer):
            try:
                self.emit(list(self.component.flush()))
            except Exception:
                self.counters["errors"] += 1
                log.exception("%s: flush failed", self.id)
        elif isinstance(self.component, Sink):
            self._flush_sink()
            self.component.flush()
        self.send_eos()

    def _run_tick(self) -> list[Event]:
        assert isinstance(self.component, Analyzer)
        try:
            return list(self.component.tick(time.time_ns()))
        except Exception:
            self.counters["errors"] += 1
            return []

    def shutdown(self) -> None:
        # A source says "stopped" (everything sent, counted and committed) before closing: an
        # eBPF source's close detaches its probes, ~70 ms a tracepoint, which nothing waits for.
        # Sinks and analyzers close first (a sink's close may finish its file).
        late_close = isinstance(self.component, Source)
        if not late_close:
            self._close_component()
        if self.held:  # stopped while a downstream restart was under way: what we held is lost
            self._lost(self.held_count())
            self.state.stage(HELD, 0)
        self.state.commit()  # losses counted at the very end (dropped past the stop deadline)
        self._heartbeat(force=True)
        self._ctl(control.Stopped(self.reported_counters()))
        for out in self.outputs:
            for s in out.sockets:
                s.setsockopt(zmq.LINGER, 5000)
        if self.publisher is not None:
            self.publisher.close()
        self.state.close()
        t0 = time.monotonic()
        self.ctx.destroy(linger=5000)
        log.info("%s: sockets closed in %.3fs", self.id, time.monotonic() - t0)
        if late_close:
            # The supervisor may exit now: its death must not kill this teardown (a uprobe whose
            # unregistering a SIGKILL cuts short stays in the kernel until reboot: "leaking uprobe").
            _die_with_parent(0)
            # Nor hold the caller's pipes open: `out=$(agentsight record ...)` and a parent reading
            # record's output to its end would wait for this teardown (seconds for the ssl source).
            _detach_stdio()
            self._close_component()

    def _close_component(self) -> None:
        try:
            self.component.close()
        except Exception:
            log.exception("%s: close failed", self.id)


class Publisher:
    """Publishes a stage's output to the bus, only for topics someone subscribed to.

    It is an XPUB connected to the bus's XSUB, so it sees the subscriptions the
    bus forwards and skips encoding when nobody listens. Sequence numbers are per
    (publisher, topic), so a subscriber to a prefix can spot gaps in what it gets.
    """

    def __init__(self, rt: ActorRuntime) -> None:
        self.id = rt.id
        self.sock = rt.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, rt.pipeline.bus.hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Every subscription and unsubscription reaches us, a second subscriber to a prefix too,
        # so each new subscriber gets its sync frames and the counts below stay right.
        self.sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.sock.connect(rt.run.bus_in)
        self.subs: dict[bytes, int] = {}
        self.prefixes: tuple[str, ...] | None = None
        self.seq: dict[str, int] = {}
        self._match: dict[str, bool] = {}
        self.rt = rt

    def read_subscriptions(self) -> None:
        changed = False
        new: list[bytes] = []
        while True:
            try:
                msg = self.sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            if not msg:
                continue
            prefix = msg[1:]
            if msg[0] == 1:
                self.subs[prefix] = self.subs.get(prefix, 0) + 1
                new.append(prefix)
            elif msg[0] == 0 and prefix in self.subs:
                self.subs[prefix] -= 1
                if self.subs[prefix] <= 0:
                    del self.subs[prefix]
            changed = True
        if changed:
            self._match.clear()
        if new:  # a new subscriber: where it starts (the bus repeats these every second, see bus.py)
            self.sync([t for t in self.seq if t.encode().startswith(tuple(new))])

    def sync(self, topics: Iterable[str]) -> None:
        """Say where each topic's numbering stands (a frame of no events): a subscriber that just
        came sees where it starts, and one that lost frames at the tail sees how many."""
        for topic in topics:
            try:
                self.sock.send_multipart([topic.encode(errors="backslashreplace"),
                                          wire.encode_header(wire.BUS, self.id, self.seq[topic], 0), b"\x90"],
                                         flags=zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _wanted(self, topic: str) -> bool:
        hit = self._match.get(topic)
        if hit is None:
            t = topic.encode()
            hit = any(t.startswith(p) for p in self.subs) and (
                self.prefixes is None or topic.startswith(self.prefixes))
            self._match[topic] = hit
        return hit

    def publish(self, events: list[Event]) -> None:
        if not self.subs:
            return
        by_topic: dict[str, list[Event]] = {}
        for e in events:
            if self._wanted(e.topic):
                by_topic.setdefault(e.topic, []).append(e)
        for topic, evs in by_topic.items():
            seq = self.seq.get(topic, 0)
            self.seq[topic] = seq + len(evs)
            try:
                self.sock.send_multipart(wire.bus_frames(topic, self.id, seq, evs), flags=zmq.NOBLOCK)
            except zmq.Again:
                self.rt._stat("bus_dropped", len(evs))

    def close(self) -> None:
        if self.subs:
            self.sync(list(self.seq))  # the final numbers, for subscribers still reading
            self.sock.close(linger=200)
        else:
            self.sock.close(linger=0)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL us if the supervisor dies without stopping us (``parent`` 0:
    not any more, we are stopping on our own)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL if parent else 0)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if parent and os.getppid() != parent:
        os._exit(1)


def _detach_stdio() -> None:
    """Let go of the caller's stdin, stdout and stderr (the run is over; nobody reads them now).
    What the teardown still logs (a probe the kernel would not remove) goes to the kernel log
    (dmesg, journalctl -k) where it can be written, else nowhere."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_RDWR)
    except (OSError, ValueError):
        return
    try:
        err = os.open("/dev/kmsg", os.O_WRONLY)
    except OSError:
        err = null
    for fd, to in ((0, null), (1, null), (2, err)):
        with contextlib.suppress(OSError):
            os.dup2(to, fd)
    os.close(null)
    if err != null:
        os.close(err)


def _set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:
        pass


def log_level(value: str) -> tuple[int, str]:
    """The logging level AGENTSIGHT_LOG names (any case; default WARNING), and the value when it
    names none (the actor then logs at WARNING and says so once)."""
    name = value.strip().upper()
    if not name:
        return logging.WARNING, ""
    level = logging.getLevelName(name)
    if isinstance(level, int):
        return level, ""
    if name.isdigit():
        return int(name), ""
    return logging.WARNING, value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    run = RunDir(Path(spec["run_dir"]))
    if spec.get("supervisor_pid"):
        _die_with_parent(int(spec["supervisor_pid"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor orchestrates Ctrl-C
    if spec["component"] == BUS_COMPONENT:
        _set_title("agentsight: bus")
        from agentsight.runtime import bus

        return bus.main(spec, run, BUS_COMPONENT)
    pipeline = spec_from_dict(spec["pipeline"])
    name, worker = spec["component"], spec["worker"]
    comp = pipeline.components[name]
    title = f"agentsight: {comp.kind}/{name}" + (f"#{worker}" if comp.workers > 1 else "")
    _set_title(title)
    level, bad_level = log_level(os.environ.get("AGENTSIGHT_LOG", ""))
    logging.basicConfig(level=level, format=f"agentsight[{comp.kind}/{name}]: %(message)s")
    if bad_level:
        log.warning("AGENTSIGHT_LOG=%s is not a log level (debug, info, warning, error); using warning",
                    bad_level)
    rt = ActorRuntime(pipeline, name, worker, run)

    def on_term(signum: int, frame: Any) -> None:
        if not rt.stopping:
            rt.stopping = True
            rt.stop_deadline = time.monotonic() + pipeline.supervisor.graceful_timeout

    signal.signal(signal.SIGTERM, on_term)
    try:
        rt.start()
    except Exception as exc:
        fatal = isinstance(exc, FatalStartError)  # the component says: retrying cannot fix it
        message = str(exc) or type(exc).__name__
        rt._ctl(control.Failure(message, fatal))
        print(f"agentsight[{comp.kind}/{name}]: cannot start: {message}", file=sys.stderr)
        rt.ctx.destroy(linger=1000)
        return control.EXIT_FATAL if fatal else control.EXIT_ERROR
    try:
        rt.loop()
        rt.await_release()
    finally:
        rt.shutdown()
    return control.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
