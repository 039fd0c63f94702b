"""Base shapes for sources, analyzers and sinks.

Their hooks never touch sockets: the runtime (:mod:`agentsight.runtime.actor`) owns
every socket and calls the hooks, so each component is unit-testable by
calling it directly::

    gen = Generator("gen", {"count": 3})
    gen.open()
    events = gen.poll(0.1)

A component declares its options once in ``OPTIONS``; the config loader checks
names, types and choices against it before anything starts, and the same
declaration documents the component (``agentsight validate --explain``).
What a component does beyond its kind's required hooks is declared once in ``CAPS``
(:class:`Capabilities`); the runtime and the config loader read that declaration
and never probe for methods.
Components count what they skip or lose in ``self.stats`` (a plain dict of
ints); the runtime adds those to the heartbeat beside received/sent/dropped/errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentsight.event import Event

__all__ = ["Capabilities", "FatalStartError", "fatal_on", "Option", "OptionError", "Component", "Source", "Analyzer", "Sink"]


class FatalStartError(Exception):
    """A start failure that retrying cannot fix (a bad option, a port in use, no root).

    The supervisor restarts a component whose ``open`` raised anything else; this one it
    does not. Its message is the one line the user sees: say what went wrong and what to do.
    """


@contextmanager
def fatal_on(*errors: type[Exception]) -> Iterator[None]:
    """Inside, ``errors`` are fatal start failures with their own message (a file the user
    named that cannot be found or opened: a retry would not open it either)."""
    try:
        yield
    except errors as exc:
        raise FatalStartError(str(exc) or type(exc).__name__) from exc


class OptionError(FatalStartError, ValueError):
    """An option value that the component cannot accept."""


_MISSING = object()


@dataclass(frozen=True)
class Option:
    """One declared option: its type, default and meaning."""

    type: type | tuple[type, ...]
    default: Any = _MISSING
    help: str = ""
    choices: tuple[Any, ...] | None = None
    # Whether a change can be applied to a running component without a restart.
    live: bool = False
    check: Any = field(default=None, compare=False)
    # A flag of the capture commands too (`debug`, `record`): its name, its help there, and
    # its default there when it differs from ``default`` (None: "not given").
    flag: str = ""
    flag_help: str = ""
    flag_default: Any = _MISSING
    # The option's old name, still accepted with a warning, and how an old value converts.
    renamed_from: tuple[str, Callable[[Any], Any]] | None = field(default=None, compare=False)

    @property
    def cli_default(self) -> Any:
        return self.default if self.flag_default is _MISSING else self.flag_default

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def validate(self, name: str, value: Any) -> Any:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            raise OptionError(f"option {name!r} must be {_type_names(types)}, not a boolean")
        if not isinstance(value, types):
            raise OptionError(f"option {name!r} must be {_type_names(types)}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"option {name!r} must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise OptionError(f"option {name!r}: {problem}")
        return value


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def renamed_options(spec: Mapping[str, Option], given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``given`` with old option names replaced by the new ones, and a warning for each."""
    out = dict(given)
    warnings: list[str] = []
    for name, opt in spec.items():
        if opt.renamed_from is None or opt.renamed_from[0] not in out:
            continue
        old, convert = opt.renamed_from
        value = out.pop(old)
        if name in out:
            warnings.append(f"option {old!r} is deprecated and ignored beside {name!r}")
            continue
        try:
            out[name] = convert(value)
        except (TypeError, ValueError):
            out[name] = value  # reported by the check of the new option
        warnings.append(f"option {old!r} is deprecated: use {name} = {out[name]!r}")
    return out, warnings


def resolve_options(spec: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``spec`` and fill defaults; raises OptionError on the first problem.
    An option given by its old name is taken, with a warning in the log."""
    given, warnings = renamed_options(spec, given)
    for warning in warnings:
        logging.getLogger("agentsight").warning("%s", warning)
    problems = option_problems(spec, given)
    if problems:
        raise OptionError(problems[0])
    out: dict[str, Any] = {}
    for name, opt in spec.items():
        out[name] = opt.validate(name, given[name]) if name in given else opt.default
    return out


def option_problems(spec: Mapping[str, Option], given: Mapping[str, Any]) -> list[str]:
    """Every problem with ``given`` (unknown names, bad types, missing required options)."""
    given, _ = renamed_options(spec, given)
    problems: list[str] = []
    for name in given:
        if name not in spec:
            known = ", ".join(sorted(spec)) or "none"
            problems.append(f"unknown option {name!r} (known options: {known})")
    for name, opt in spec.items():
        if name in given:
            try:
                opt.validate(name, given[name])
            except OptionError as exc:
                problems.append(str(exc))
        elif opt.required:
            problems.append(f"missing required option {name!r}")
    return problems


@dataclass(frozen=True)
class Capabilities:
    """What a component type does beyond the hooks its kind requires.

    Each flag but ``needs_bpf`` says that the type implements the hook of that name (a unit
    test holds every registered type to it); the runtime calls a hook only when it is declared.
    """

    # Needs root and bcc (checked before anything starts).
    needs_bpf: bool = False
    # With its option ``decode = false`` it takes whole frames undecoded (an analyzer forwards
    # them as they are, a sink counts them in ``write_raw``).
    raw_frames: bool = False
    # (analyzers) ``process_batch``: a fast path for a whole batch.
    batch: bool = False
    # (analyzers) ``tick``: emits what timed out, about every 100 ms.
    tick: bool = False
    # ``settle``: holds events per process that a passing mark must flush out.
    settle: bool = False
    # ``follow``: follows a new process tree a client asks for.
    follow: bool = False
    # ``requests`` / ``on_control`` / ``on_mark``: makes requests of the supervisor.
    requests: bool = False
    # ``check_options``: checks its options together (beyond each option's own check).
    check_options: bool = False
    # ``claims``: endpoints (ports, files) no other component of the pipeline may use.
    claims: bool = False


class Component:
    """What every source, analyzer and sink shares: a name, options, stats."""

    KIND: ClassVar[str] = ""
    TYPE: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Option]] = {}
    CAPS: ClassVar[Capabilities] = Capabilities()
    # Where an upstream takes the partition key when this component has workers > 1:
    # "pid", or "data.<field>" (for example "data.conn" for a TLS connection).
    DEFAULT_PARTITION: ClassVar[str] = "pid"

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """(``CAPS.check_options``) problems with the options taken together."""
        return []

    @classmethod
    def claims(cls, options: dict[str, Any]) -> list[str]:
        """(``CAPS.claims``) endpoints this component uses: ``tcp://host:port``, ``file:/path``."""
        return []

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.options = resolve_options(self.OPTIONS, options or {})
        self.stats: dict[str, int] = {}

    def count(self, stat: str, n: int = 1) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + n

    @property
    def raw(self) -> bool:
        """Whole frames pass undecoded (``CAPS.raw_frames`` and ``decode = false``)."""
        return self.CAPS.raw_frames and not self.options.get("decode", True)

    def open(self) -> None:
        """Acquire resources (load eBPF, open files, servers). Errors here are startup failures:
        raise :class:`FatalStartError` for one that retrying cannot fix."""

    def reconfigure(self, options: Mapping[str, Any]) -> bool:
        """Apply new options in place. Return False if only a restart can apply them.

        The default applies a change when every changed option is declared ``live``.
        """
        new = resolve_options(self.OPTIONS, options)
        changed = {k for k in new if new[k] != self.options.get(k)}
        if any(not self.OPTIONS[k].live for k in changed):
            return False
        self.options = new
        self.apply_options(changed)
        return True

    def apply_options(self, changed: set[str]) -> None:
        """Hook: react to live option changes already stored in ``self.options``."""

    def close(self) -> None:
        """Release what ``open`` took. Called once, also after errors."""

    def settle(self, pids: list[int]) -> Iterable[Event]:
        """A barrier (a mark) is passing: emit now what is held for these processes (a recording
        is about to be closed on them; they have exited). The mark follows these events."""
        return ()

    def follow(self, pid: int) -> bool:
        """A client asks to follow a new process tree rooted at ``pid`` (``record`` through a
        running collector): look at it before it runs. False when this component has nothing
        to do for it."""
        return False

    def requests(self) -> list[dict[str, Any]]:
        """Control requests this component makes of the supervisor (``mark``, ``follow``); the
        runtime sends them and hands the answers to :meth:`on_control`."""
        return []

    def on_control(self, msg: dict[str, Any]) -> None:
        """An answer from the supervisor to one of :meth:`requests` (``followed``)."""

    def on_mark(self, mark_id: str) -> None:
        """(Sinks) every event ahead of mark ``mark_id`` has been written and flushed."""


class Source(Component):
    """Produces events. ``poll`` may block up to ``timeout`` seconds."""

    KIND = "source"

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        # Set when the source has nothing more to produce (a replay reached its end).
        self.finished = False

    def poll(self, timeout: float) -> list[Event]:
        raise NotImplementedError

    def wait_fd(self) -> int | None:
        """A file descriptor that turns readable when :meth:`poll` has something to read, or None.

        With one, the actor waits on it and its control socket together and then calls
        ``poll(0)``, so a control request (``follow`` a new process tree) is answered at once
        instead of after the ``poll`` timeout. Without one, ``poll(timeout)`` blocks as it likes.
        """
        return None

    def stop(self) -> list[Event]:
        """Stop producing; return whatever is still buffered."""
        return []


class Analyzer(Component):
    """Turns events into events (zero, one or many per input)."""

    KIND = "analyzer"

    def process(self, event: Event) -> Iterable[Event]:
        raise NotImplementedError

    def process_batch(self, events: list[Event]) -> list[Event] | None:
        """Optional fast path: the outputs of a whole batch, or None to go event by event.

        The runtime falls back to ``process`` per event (isolating a bad one) when this
        raises, so an override only needs to be right, not defensive.
        """
        return None

    def tick(self, now_ns: int) -> Iterable[Event]:
        """Called about every 100 ms: emit what timed out (idle streams...)."""
        return ()

    def flush(self) -> Iterable[Event]:
        """Called at a graceful stop after the last input: emit everything held."""
        return ()


class Sink(Component):
    """Consumes events.

    The runtime acknowledges a batch upstream only once the sink has made it durable:
    ``write`` may buffer, ``flush`` makes everything written so far durable (a file
    flushed, a transaction committed). Around each flush the runtime records
    ``position()`` (where the sink will stand once the flush lands: bytes for a file,
    the last row id for a recording), so that after a ``kill -9`` it can ask
    ``durable_position()`` whether the flush landed and ``truncate()`` what was
    written past the last acknowledged position. A sink with nothing durable keeps
    the defaults (position 0).
    """

    KIND = "sink"

    def write(self, events: list[Event]) -> None:
        raise NotImplementedError

    def write_raw(self, count: int) -> None:
        """(``CAPS.raw_frames``) ``count`` events went by in a frame left undecoded."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make everything written so far durable/visible."""

    def position(self) -> int:
        """Where the sink stands once everything written so far is flushed (grows with writes)."""
        return 0

    def durable_position(self) -> int:
        """Where the sink durably stands now (at open, after a crash)."""
        return self.position()

    def truncate(self, position: int) -> None:
        """Drop what was written past ``position`` (never acknowledged, so counted as lost)."""

    def after_flush(self) -> None:
        """Hook after a flush is acknowledged (a file rotates here, never mid-flush)."""
