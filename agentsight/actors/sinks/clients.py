"""Sink ``clients``: serves the collector's clients (``record``, ``top``, ``debug``) on a unix socket.

The always-on collector (``agentsight service run``) has this sink after ``redact``: every
event it gets is what a client may be shown. It listens on ``socket`` (mode 0666: every
local user may connect) and tells who connected from the kernel (``SO_PEERCRED``): root
sees everything; any other user only events of processes running as that user (the
``uid`` an event carries, else the one its process was seen with) and may record only a
process tree of its own. The protocol is in :mod:`agentsight.runtime.collector`.

- ``subscribe``: events by topic prefix (and ``pid``, with ``tree`` its descendants too, and
  ``comm``), streamed as they come.
- ``record`` of a tree rooted at ``pid`` (a command held before its first instruction):
  the sink asks the supervisor to have every source ``follow`` it (the ssl source probes
  the executables its command line names; the stdio source traces its pipes), answers
  ``followed`` once they did, then streams every event of the tree (its members learnt
  from fork and exec events as they come).
- ``finish``: the sink asks for a barrier (a runtime mark): every source drains the
  kernel and sends the mark behind it, each stage emits what it holds for the tree and
  passes the mark on; when it reaches this sink, everything of the tree is ahead of it,
  and the client gets ``done`` (with what the pipeline lost meanwhile: any process's, so
  said as "the collector lost").

A client that reads too slowly loses events (counted, and told with a ``lost`` frame), never
slows the pipeline. Sockets are served on a thread of their own; the requests are carried
out in the actor's loop (:meth:`ClientsSink.requests`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import selectors
import socket
import stat
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agentsight.event import Event
from agentsight.pipeline.component import Capabilities, Option, OptionError, Sink, fatal_on
from agentsight.runtime import control
from agentsight.runtime.collector import DEFAULT_SOCKET, FrameReader, encode

__all__ = ["ClientsSink"]

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass
class _Client:
    id: int
    sock: socket.socket
    pid: int
    uid: int
    reader: FrameReader = field(default_factory=FrameReader)
    out: deque[bytes] = field(default_factory=deque)
    topics: tuple[str, ...] | None = None   # subscribed prefixes (None: not subscribed)
    pid_filter: int = 0
    comm_filter: str = ""
    tree: set[int] | None = None            # recording: the processes of the tree
    mark: str | None = None                 # the barrier a finishing recording waits for
    dropped_at_start: int | None = None     # the pipeline's lost count when recording began
    sent: int = 0
    lost: int = 0
    told_lost: int = 0
    closed: bool = False

    def wants(self, e: Event) -> bool:
        if self.tree is not None and e.pid not in self.tree:
            return False
        if self.topics is None:
            return self.tree is not None  # a recording takes every topic
        if self.topics and not e.topic.startswith(self.topics):
            return False
        if self.pid_filter and self.tree is None and e.pid != self.pid_filter:
            return False
        return not self.comm_filter or e.comm.startswith(self.comm_filter)


class ClientsSink(Sink):
    """Serves subscriptions and recordings to local clients (see the module docstring)."""

    TYPE = "clients"
    CAPS = Capabilities(requests=True)
    OPTIONS = {
        "socket": Option(str, DEFAULT_SOCKET, "the unix socket clients connect to"),
        "queue": Option(int, 20000, "frames queued for a client before it loses events (counted)"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._clients: dict[int, _Client] = {}
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        self._outbox: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._marks = itertools.count(1)
        self._uids: dict[int, int] = {}
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        path = self.options["socket"]
        parent = os.path.dirname(path) or "."
        with fatal_on(PermissionError, FileNotFoundError):
            os.makedirs(parent, exist_ok=True)
            st = os.lstat(parent)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise OptionError(f"{parent} is not a directory of this user's: refusing to put the clients socket there")
        if os.path.basename(parent) == "agentsight-clients":  # ours: every user may reach the socket
            os.chmod(parent, 0o755)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with fatal_on(PermissionError, FileNotFoundError):
            self._listener.bind(path)
        os.chmod(path, 0o666)  # anyone may connect; what each may see is decided per peer uid
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._serve, name="clients", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            for c in self._clients.values():
                c.sock.close()
            self._clients.clear()
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.options["socket"])
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)

    # ------------------------------------------------------------------ events in
    def write(self, events: list[Event]) -> None:
        with self._lock:
            clients = [c for c in self._clients.values() if not c.closed and (c.topics is not None or c.tree)]
        for e in events:
            uid = e.data.get("uid") if isinstance(e.data, dict) else None
            if isinstance(uid, int):
                self._uids[e.pid] = uid
            if e.topic in ("process.fork", "process.exec") and isinstance(e.data, dict):
                parent = e.data.get("ppid")
                for c in clients:
                    if c.tree is not None and parent in c.tree:
                        c.tree.add(e.pid)
            if not clients:
                continue
            owner = self._uid_of(e)
            frame: bytes | None = None
            for c in clients:
                if (c.uid != 0 and owner != c.uid) or not c.wants(e):
                    continue
                if frame is None:
                    frame = encode("event", [e.topic, e.ts_ns, e.source, e.pid, e.tid, e.comm, e.data])
                self._queue(c, frame)
        if clients:
            self._wake()

    def _uid_of(self, e: Event) -> int | None:
        uid = self._uids.get(e.pid)
        if uid is None:
            try:
                with open(f"/proc/{e.pid}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            uid = self._uids[e.pid] = int(line.split()[1])
                            break
            except (OSError, ValueError):
                return None
        if len(self._uids) > 65536:
            self._uids.clear()
        return uid

    def _queue(self, c: _Client, frame: bytes) -> None:
        with self._lock:
            if len(c.out) >= self.options["queue"]:
                c.lost += 1
                self.count("client_lost")
                return
            if c.lost > c.told_lost:
                c.out.append(encode("lost", {"n": c.lost - c.told_lost}))
                c.told_lost = c.lost
            c.out.append(frame)
            c.sent += 1

    # ------------------------------------------------------------------ requests
    def requests(self) -> list[dict[str, Any]]:
        """Carry out what clients asked since the last call; the supervisor requests that needs."""
        while True:
            try:
                cid, kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            c = self._clients.get(cid)
            if c is not None:
                self._handle(c, kind, payload if isinstance(payload, dict) else {})
        out, self._outbox = self._outbox, []
        return out

    def _handle(self, c: _Client, kind: str, p: dict[str, Any]) -> None:
        if kind == "hello":
            self._reply(c, "info", {"pipeline": os.environ.get("AGENTSIGHT_PIPELINE", ""), "pid": os.getpid(),
                                    "uid": c.uid, "socket": self.options["socket"]})
        elif kind == "subscribe":
            c.topics = tuple(str(t) for t in p.get("topics") or ())
            c.pid_filter = int(p.get("pid") or 0)
            c.comm_filter = str(p.get("comm") or "")
            if p.get("tree") and c.pid_filter:  # the process and its descendants from now on
                c.tree = {c.pid_filter}
            self._reply(c, "subscribed", {"topics": list(c.topics)})
            self.count("subscriptions")
        elif kind == "record":
            pid = int(p.get("pid") or 0)
            owner = _proc_uid(pid)
            if owner is None:
                self._reply(c, "error", {"message": f"no process {pid} to record"})
            elif c.uid != 0 and owner != c.uid:
                self._reply(c, "error", {"message": f"process {pid} is not yours to record"})
            else:
                c.tree = {pid}
                self._uids[pid] = owner
                self._outbox.append(control.Totals(c.id).to_wire())
                self._outbox.append(control.Follow(pid, c.id).to_wire())
                self.count("recordings")
        elif kind == "finish" and c.tree is not None:
            c.mark = f"{os.getpid()}.{next(self._marks)}"
            self._outbox.append(control.Mark(c.mark, tuple(sorted(c.tree))).to_wire())
        else:
            self._reply(c, "error", {"message": f"unknown or out-of-order request {kind!r}"})

    def on_control(self, msg: dict[str, Any]) -> None:
        c = self._clients.get(int(msg.get("req") or 0))
        if c is None:
            return
        if msg.get("kind") == "followed":
            self._reply(c, "followed", {"by": msg.get("by") or [], "late": msg.get("late") or []})
        elif msg.get("kind") == "totals":
            dropped = int(msg.get("dropped") or 0)
            if c.dropped_at_start is None:
                c.dropped_at_start = dropped
            else:  # the recording is done: what the pipeline lost meanwhile (any process's: said as such)
                self._reply(c, "done", {"events": c.sent, "lost": c.lost,
                                        "pipeline_lost": max(0, dropped - c.dropped_at_start)})
                c.tree = None

    def on_mark(self, mark_id: str) -> None:
        for c in list(self._clients.values()):
            if c.mark == mark_id:
                c.mark = None
                self._outbox.append(control.Totals(c.id).to_wire())

    def _reply(self, c: _Client, kind: str, payload: Any) -> None:
        with self._lock:
            c.out.append(encode(kind, payload))
        self._wake()

    # ------------------------------------------------------------------ the socket thread
    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        assert self._listener is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop.is_set():
            for key, mask in sel.select(timeout=0.5):
                if key.data == "listen":
                    self._accept(sel)
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                else:
                    c: _Client = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(sel, c)
                    if mask & selectors.EVENT_WRITE and not c.closed:
                        self._write(sel, c)
            with self._lock:
                pending = [c for c in self._clients.values() if c.out and not c.closed]
            for c in pending:
                self._write(sel, c)
        sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        sock.setblocking(False)
        c = _Client(next(self._ids), sock, pid, uid)
        with self._lock:
            self._clients[c.id] = c
        sel.register(sock, selectors.EVENT_READ, c)
        self.count("connections")

    def _read(self, sel: selectors.BaseSelector, c: _Client) -> None:
        try:
            data = c.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, c)
            return
        try:
            for kind, payload in c.reader.feed(data):
                self._inbox.put((c.id, kind, payload))
        except (ValueError, TypeError, Exception):  # msgpack raises several types on garbage
            self.count("bad_requests")
            self._drop(sel, c)

    def _write(self, sel: selectors.BaseSelector, c: _Client) -> None:
        while True:
            with self._lock:
                if not c.out:
                    break
                frame = c.out[0]
            try:
                n = c.sock.send(frame)
            except BlockingIOError:
                sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                return
            except OSError:
                self._drop(sel, c)
                return
            with self._lock:
                if n == len(frame):
                    c.out.popleft()
                else:
                    c.out[0] = frame[n:]
        with contextlib.suppress(KeyError, ValueError):
            sel.modify(c.sock, selectors.EVENT_READ, c)

    def _drop(self, sel: selectors.BaseSelector, c: _Client) -> None:
        c.closed = True
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(c.sock)
        c.sock.close()
        with self._lock:
            self._clients.pop(c.id, None)


def _proc_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
