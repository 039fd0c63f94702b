"""A running pipeline's status, typed: what the supervisor's status socket answers, and how to ask it.

Connects a REQ to ``<run>/status`` (the supervisor's REP, see :mod:`agentsight.runtime.supervisor`);
binds nothing. Any request gets one reply, a JSON object (:meth:`PipelineStatus.to_dict`):
``pipeline``, ``pid`` (the supervisor's), ``uptime_s``, ``phase``, ``config``, ``runtime_dir``,
``instances`` (one row per actor slot: ``id``, ``kind``, ``name``, ``state``, ``pid``, ``restarts``,
``received``, ``sent``, ``dropped``, ``errors``, ``stats``, ``message``) and ``events`` (the
supervisor's last messages).

``phase`` is the pipeline's, not an actor's: ``starting`` until every actor said it is ready,
``running``, then ``stopping`` (also after a start that failed); ``stopped`` is only seen in
the status a command reads from its own supervisor once the run is over. A client that starts a pipeline
waits for ``running`` with :func:`wait_running`: a reply, never a log line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PHASES", "ActorStatus", "PipelineStatus", "StatusError", "ask", "wait_running"]

PHASES = ("starting", "running", "stopping", "stopped")
COUNTERS = ("received", "sent", "dropped", "errors")


class StatusError(RuntimeError):
    """No answer from the status socket, or a pipeline that will not be running (one line for the user).

    ``status``: the last reply, when the pipeline itself said it stopped (its last message is the why)."""

    def __init__(self, message: str, status: PipelineStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ActorStatus:
    """One actor slot of the pipeline (a row of `agentsight status`)."""

    id: str
    kind: str
    name: str
    state: str
    pid: int | None = None
    restarts: int = 0
    received: int = 0
    sent: int = 0
    dropped: int = 0
    errors: int = 0
    stats: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> ActorStatus:
        iid = str(row["id"])
        # Rows from before `name` was sent: the component is in the id (`sinks/otlp`, `analyzers/http#1`).
        name = str(row.get("name") or iid.split("/", 1)[-1].split("#", 1)[0])
        return cls(id=iid, kind=str(row["kind"]), name=name, state=str(row["state"]), pid=row.get("pid"),
                   restarts=int(row.get("restarts") or 0), stats=dict(row.get("stats") or {}),
                   message=str(row.get("message") or ""),
                   **{k: int(row.get(k) or 0) for k in COUNTERS})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "state": self.state, "pid": self.pid,
                "restarts": self.restarts, "received": self.received, "sent": self.sent,
                "dropped": self.dropped, "errors": self.errors, "stats": dict(self.stats),
                "message": self.message}


@dataclass(frozen=True)
class PipelineStatus:
    """The whole pipeline as its supervisor sees it."""

    pipeline: str
    pid: int
    phase: str
    uptime_s: float = 0.0
    config: str | None = None
    runtime_dir: str = ""
    instances: tuple[ActorStatus, ...] = ()
    events: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        """Every actor was ready (the "running:" moment) and the pipeline is not stopping."""
        return self.phase == "running"

    def actors(self, kind: str, name: str) -> list[ActorStatus]:
        """The slots of one component (one per worker)."""
        return [a for a in self.instances if a.kind == kind and a.name == name]

    def dropped(self, *, without: Callable[[ActorStatus], bool] | None = None) -> int:
        """Events lost in the pipeline, summed over its actors (but those ``without`` picks)."""
        return sum(a.dropped for a in self.instances if without is None or not without(a))

    @classmethod
    def from_dict(cls, report: Mapping[str, Any]) -> PipelineStatus:
        phase = str(report.get("phase") or "running")  # a supervisor from before phases answered only once up
        return cls(pipeline=str(report["pipeline"]), pid=int(report["pid"]), phase=phase,
                   uptime_s=float(report.get("uptime_s") or 0.0), config=report.get("config"),
                   runtime_dir=str(report.get("runtime_dir") or ""),
                   instances=tuple(ActorStatus.from_dict(r) for r in report.get("instances") or ()),
                   events=tuple(str(e) for e in report.get("events") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "pid": self.pid, "uptime_s": self.uptime_s, "phase": self.phase,
                "config": self.config, "runtime_dir": self.runtime_dir,
                "instances": [a.to_dict() for a in self.instances], "events": list(self.events)}


def ask(endpoint: str, timeout: float = 3.0) -> PipelineStatus:
    """One status request to ``endpoint`` (``RunDir.status``); StatusError when no answer comes in time."""
    import zmq

    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(b"status")
        if not sock.poll(int(timeout * 1000)):
            raise StatusError(f"did not answer within {timeout:g} s")
        raw = sock.recv()
    finally:
        sock.close()
    try:
        return PipelineStatus.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StatusError(f"answered with something that is not a status reply ({exc})") from None


def wait_running(endpoint: str, timeout: float, alive: Callable[[], bool] = lambda: True,
                 step: float = 0.5) -> PipelineStatus:
    """Ask until the pipeline says it is running; StatusError if it stops, ``alive()`` turns false
    (the process that runs it exited) or ``timeout`` seconds pass.

    A request sent before the supervisor binds is delivered once it does (ipc reconnects), so
    each try waits for the reply itself, at most ``step`` seconds, then checks ``alive()``; a
    "starting" reply is asked again ``step`` seconds after the last try (a start takes seconds).
    """
    deadline = time.monotonic() + timeout
    while True:
        tried = time.monotonic()
        try:
            status = ask(endpoint, max(0.05, min(step, deadline - time.monotonic())))
        except StatusError:
            status = None
        if status is not None and status.running:
            return status
        if status is not None and status.phase in ("stopping", "stopped"):
            raise StatusError(status.events[-1] if status.events else f"pipeline {status.pipeline!r} is stopping",
                              status)
        if not alive():
            raise StatusError("it exited")
        if time.monotonic() >= deadline:
            raise StatusError(f"not running after {timeout:g} s")
        if status is not None:  # answered at once: pace the next question
            time.sleep(max(0.0, min(tried + step, deadline) - time.monotonic()))
