"""The control protocol between the supervisor and its actors, as types.

Frame layout: one msgpack map per ZeroMQ message (see :func:`agentsight.wire.pack`); on the
supervisor's ROUTER an identity frame (the instance id) comes first. Every map has ``op``, one
of :class:`Op`, and the fields of that op's message class below (docs/events.md lists them).
A message is built from such a map without a socket (:func:`parse`), and sent as
``wire.pack(msg.to_wire())``. Unknown fields are ignored; an unknown op raises
:class:`UnknownOp`, a missing or mistyped field :class:`ControlError` (both ``ValueError``).

Directions: ``ready hb eos draining finished reconfigured fatal error stopped followed`` go
actor -> supervisor; ``stop reconfigure prune gone release answer`` supervisor -> actor;
``mark``, ``follow`` and ``totals`` come from a component's requests (a sink serving clients),
and ``mark`` and ``follow`` go on from the supervisor to the sources.

Exit codes of an actor process and of the supervisor are here too: both sides read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "Op", "Refusal", "ControlError", "UnknownOp", "Message", "parse",
    "Ready", "Heartbeat", "Eos", "Draining", "Finished", "Reconfigured", "Failure", "Stopped",
    "Stop", "Reconfigure", "Prune", "Gone", "Release", "Mark", "Follow", "Followed", "Totals", "Answer",
    "EXIT_OK", "EXIT_ERROR", "EXIT_FATAL", "EXIT_ACTOR_FAILED", "EXIT_STARTUP_FAILED",
]

# Exit codes of an actor process.
EXIT_OK = 0
EXIT_ERROR = 1      # could not start, for a reason a restart may cure
EXIT_FATAL = 3      # cannot start here (no root, no bcc, a bad file): restarting will not help
# Exit codes of the supervisor (run_forever).
EXIT_ACTOR_FAILED = 1    # an actor failed for good, or was flapping
EXIT_STARTUP_FAILED = 2  # the pipeline never got running

ReqId = str | int | None   # a request id: a client's number (sinks), the supervisor's "f<n>" (sources)


class Op(StrEnum):
    """Every control op; the value is what travels in the map's ``op`` field."""

    READY = "ready"
    HB = "hb"
    EOS = "eos"
    DRAINING = "draining"
    FINISHED = "finished"
    RECONFIGURED = "reconfigured"
    FATAL = "fatal"
    ERROR = "error"
    STOPPED = "stopped"
    STOP = "stop"
    RECONFIGURE = "reconfigure"
    PRUNE = "prune"
    GONE = "gone"
    RELEASE = "release"
    MARK = "mark"
    FOLLOW = "follow"
    FOLLOWED = "followed"
    TOTALS = "totals"
    ANSWER = "answer"


class Refusal(StrEnum):
    """Why an actor did not apply a ``reconfigure``: decides whether the supervisor restarts it."""

    STRUCTURE = "structure"   # kind, type, workers or partitioning changed: restart it
    RESTART = "restart"       # the component cannot take the new options live: restart it
    REJECTED = "rejected"     # the component refused the option values: keep it as it is


class ControlError(ValueError):
    """A control map that is not a valid message."""


class UnknownOp(ControlError):
    """A control map whose ``op`` this version does not know."""


def _int(msg: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = msg.get(key, default)
    if value is None:
        raise ControlError(f"{msg.get('op')}: {key} missing")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ControlError(f"{msg.get('op')}: {key} is not a number: {value!r}") from exc


def _counts(value: Any, op: str) -> dict[str, int]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ControlError(f"{op}: counters is not a map")
    try:
        return {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise ControlError(f"{op}: a counter is not a number") from exc


def _strings(value: Any, op: str, key: str) -> tuple[str, ...]:
    if not value:
        return ()
    if not isinstance(value, list | tuple):
        raise ControlError(f"{op}: {key} is not a list")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Message:
    """A control message. Subclasses set ``OP`` and add their fields."""

    OP: ClassVar[Op]

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Message:
        return cls()


# ------------------------------------------------------------- actor -> supervisor
@dataclass(frozen=True)
class Ready(Message):
    """The actor is wired up and running."""

    OP = Op.READY
    pid: int

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "pid": self.pid}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Ready:
        return cls(_int(msg, "pid", 0))


@dataclass(frozen=True)
class Heartbeat(Message):
    """Counters (received, sent, dropped, errors) and the component's own stats."""

    OP = Op.HB
    counters: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "counters": self.counters, "stats": self.stats}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Heartbeat:
        stats = msg.get("stats") or {}
        if not isinstance(stats, Mapping):
            raise ControlError("hb: stats is not a map")
        return cls(_counts(msg.get("counters"), "hb"), dict(stats))


@dataclass(frozen=True)
class Eos(Message):
    """The end of stream of upstream instance ``sender`` arrived here."""

    OP = Op.EOS
    sender: str

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "from": self.sender}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Eos:
        return cls(str(msg.get("from", "")))


@dataclass(frozen=True)
class Draining(Message):
    """The actor sent its end of stream and waits for ``release``."""

    OP = Op.DRAINING


@dataclass(frozen=True)
class Finished(Message):
    """A source has nothing more to produce."""

    OP = Op.FINISHED


@dataclass(frozen=True)
class Reconfigured(Message):
    """The answer to ``reconfigure``: applied, or refused with a kind (``refusal``) and a reason."""

    OP = Op.RECONFIGURED
    ok: bool
    refusal: Refusal | None = None
    reason: str = ""

    @property
    def needs_restart(self) -> bool:
        """Not applied, and only a restart of the component applies it."""
        return not self.ok and self.refusal is not Refusal.REJECTED

    def to_wire(self) -> dict[str, Any]:
        if self.ok:
            return {"op": self.OP.value, "ok": True}
        return {"op": self.OP.value, "ok": False, "refusal": (self.refusal or Refusal.RESTART).value,
                "reason": self.reason}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Reconfigured:
        if msg.get("ok"):
            return cls(True)
        try:
            refusal = Refusal(msg.get("refusal", Refusal.RESTART))
        except ValueError as exc:
            raise ControlError(f"reconfigured: unknown refusal {msg.get('refusal')!r}") from exc
        return cls(False, refusal, str(msg.get("reason", "")))


@dataclass(frozen=True)
class Failure(Message):
    """The actor cannot go on: ``fatal`` (do not restart it) or ``error`` (a restart may help)."""

    OP = Op.ERROR
    message: str
    fatal: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"op": (Op.FATAL if self.fatal else Op.ERROR).value, "message": self.message}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Failure:
        return cls(str(msg.get("message", "")), msg.get("op") == Op.FATAL)


@dataclass(frozen=True)
class Stopped(Message):
    """All the actor's output is out; its final counters (none from the bus)."""

    OP = Op.STOPPED
    counters: dict[str, int] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.OP.value}
        if self.counters:
            out["counters"] = self.counters
        return out

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Stopped:
        return cls(_counts(msg.get("counters"), "stopped"))


@dataclass(frozen=True)
class Followed(Message):
    """A source's answer to ``follow``: whether it now follows the tree of ``pid``."""

    OP = Op.FOLLOWED
    pid: int
    req: ReqId
    ok: bool

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "pid": self.pid, "req": self.req, "ok": self.ok}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Followed:
        return cls(_int(msg, "pid", 0), msg.get("req"), bool(msg.get("ok")))


# ------------------------------------------------------------- supervisor -> actor
@dataclass(frozen=True)
class Stop(Message):
    """Stop within ``timeout`` seconds (None: the actor's default); ``gone``: upstream instances
    whose end of stream will never come."""

    OP = Op.STOP
    timeout: float | None = None
    gone: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.OP.value}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.gone:
            out["gone"] = list(self.gone)
        return out

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Stop:
        timeout = msg.get("timeout")
        try:
            t = None if timeout is None else float(timeout)
        except (TypeError, ValueError) as exc:
            raise ControlError(f"stop: timeout is not a number: {timeout!r}") from exc
        return cls(t, _strings(msg.get("gone"), "stop", "gone"))


@dataclass(frozen=True)
class Reconfigure(Message):
    """Move to the whole new pipeline spec (a dict, see ``PipelineSpec.to_dict``); ``hold``:
    downstream components being restarted, whose events the actor keeps until a later
    ``reconfigure`` brings them back."""

    OP = Op.RECONFIGURE
    pipeline: dict[str, Any]
    hold: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "pipeline": self.pipeline, "hold": sorted(self.hold)}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Reconfigure:
        pipeline = msg.get("pipeline")
        if not isinstance(pipeline, Mapping):
            raise ControlError("reconfigure: pipeline missing")
        return cls(dict(pipeline), _strings(msg.get("hold"), "reconfigure", "hold"))


@dataclass(frozen=True)
class Prune(Message):
    """Instances fed by ended outputs are gone: close those outputs' sockets."""

    OP = Op.PRUNE


@dataclass(frozen=True)
class Gone(Message):
    """Upstream ``instance`` failed for good: do not wait for its end of stream."""

    OP = Op.GONE
    instance: str

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "instance": self.instance}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Gone:
        return cls(str(msg.get("instance", "")))


@dataclass(frozen=True)
class Release(Message):
    """Every downstream has this actor's end of stream: it may exit."""

    OP = Op.RELEASE


@dataclass(frozen=True)
class Answer(Message):
    """The supervisor's answer to a component's request: ``kind`` (``followed``, ``totals``),
    the request's ``req``, and the answer's fields (``data``, flat in the map)."""

    OP = Op.ANSWER
    kind: str
    req: ReqId
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {**self.data, "op": self.OP.value, "kind": self.kind, "req": self.req}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Answer:
        data = {k: v for k, v in msg.items() if k not in ("op", "kind", "req")}
        return cls(str(msg.get("kind", "")), msg.get("req"), data)


# ------------------------------------------------------------- requests (both ways)
@dataclass(frozen=True)
class Mark(Message):
    """A barrier: every source sends mark ``id`` behind what it has of the trees of ``pids``."""

    OP = Op.MARK
    id: str
    pids: tuple[int, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "id": self.id, "pids": list(self.pids)}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Mark:
        if msg.get("id") is None:
            raise ControlError("mark: id missing")
        try:
            pids = tuple(int(p) for p in msg.get("pids") or ())
        except (TypeError, ValueError) as exc:
            raise ControlError("mark: a pid is not a number") from exc
        return cls(str(msg["id"]), pids)


@dataclass(frozen=True)
class Follow(Message):
    """Follow the process tree rooted at ``pid`` (a client's ``record``)."""

    OP = Op.FOLLOW
    pid: int
    req: ReqId = None

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "pid": self.pid, "req": self.req}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Follow:
        return cls(_int(msg, "pid"), msg.get("req"))


@dataclass(frozen=True)
class Totals(Message):
    """What the pipeline lost so far (answered with ``answer`` of kind ``totals``)."""

    OP = Op.TOTALS
    req: ReqId = None

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP.value, "req": self.req}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Totals:
        return cls(msg.get("req"))


_CLASSES: dict[Op, type[Message]] = {
    Op.READY: Ready, Op.HB: Heartbeat, Op.EOS: Eos, Op.DRAINING: Draining, Op.FINISHED: Finished,
    Op.RECONFIGURED: Reconfigured, Op.FATAL: Failure, Op.ERROR: Failure, Op.STOPPED: Stopped,
    Op.FOLLOWED: Followed, Op.STOP: Stop, Op.RECONFIGURE: Reconfigure, Op.PRUNE: Prune, Op.GONE: Gone,
    Op.RELEASE: Release, Op.ANSWER: Answer, Op.MARK: Mark, Op.FOLLOW: Follow, Op.TOTALS: Totals,
}


def parse(msg: Any) -> Message:
    """The message a control map holds (decoded with ``wire.unpack``)."""
    if not isinstance(msg, Mapping):
        raise ControlError(f"a control message is a map, not {type(msg).__name__}")
    try:
        op = Op(str(msg.get("op")))
    except ValueError:
        raise UnknownOp(f"unknown control op {msg.get('op')!r}") from None
    return _CLASSES[op].from_wire(msg)
