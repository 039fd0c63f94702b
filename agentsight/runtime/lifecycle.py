"""Lifecycles as state machines: every allowed transition in one table.

Theory of operation (h11's ``_state.py`` is the model). A lifecycle is a current state and a
table of the states each one may move to; :meth:`Lifecycle.move` is the only way to change the
state and raises :class:`LifecycleError` for a move the table does not list (a bug in the
caller, never an input error). Moving to the state one is already in is not a transition and is
always allowed. The state values are the names users see (``agentsight status``, the exit
summary).

An instance slot of the supervisor (one actor process, and its restarts)::

    new ──► starting ──► running ──► finished      (a source with nothing more to produce)
               │            │            │
               ├────────────┴────────────┴──► stopping ──► stopped   (told to stop; drains)
               ├────────────┬──► restarting ──► starting     (crashed: again after a short backoff)
               ├────────────┼──► backoff ──► starting        (flapping: again after retry_after)
               └────────────┴──► failed                      (a fatal start error: for good)

Any state but ``failed`` may also end in ``stopped`` directly (the pipeline stops, the
component is removed, an actor is killed), and ``stopping`` may still become ``finished``
(a source that ran out before it read its stop). ``stopped`` and ``failed`` are final.

The actor process itself has no table: its life is the straight sequence of
:func:`agentsight.runtime.actor.main` (start, loop until told to stop or out of input, wait for
``release``, shut down), with one flag (``stopping``) that the loop reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

__all__ = ["InstanceState", "INSTANCE_TRANSITIONS", "Lifecycle", "LifecycleError", "instance_lifecycle"]


class InstanceState(StrEnum):
    """The supervisor's view of one actor instance slot."""

    NEW = "new"                # made, never started
    STARTING = "starting"      # spawned, not ready yet
    RUNNING = "running"        # said ready
    FINISHED = "finished"      # a source with nothing more to produce
    STOPPING = "stopping"      # told to stop, draining
    STOPPED = "stopped"        # stopped (or removed) as asked
    RESTARTING = "restarting"  # crashed; started again after a short backoff
    BACKOFF = "backoff"        # crashed too often (flapping); tried again after retry_after
    FAILED = "failed"          # cannot run here (a fatal start error); not restarted


_I = InstanceState
INSTANCE_TRANSITIONS: Mapping[InstanceState, frozenset[InstanceState]] = {
    _I.NEW: frozenset({_I.STARTING, _I.STOPPED}),
    _I.STARTING: frozenset({_I.RUNNING, _I.FINISHED, _I.STOPPING, _I.RESTARTING, _I.BACKOFF, _I.FAILED,
                            _I.STOPPED}),
    _I.RUNNING: frozenset({_I.FINISHED, _I.STOPPING, _I.RESTARTING, _I.BACKOFF, _I.FAILED, _I.STOPPED}),
    _I.FINISHED: frozenset({_I.STOPPING, _I.STOPPED}),
    _I.STOPPING: frozenset({_I.FINISHED, _I.STOPPED}),
    _I.RESTARTING: frozenset({_I.STARTING, _I.STOPPED}),
    _I.BACKOFF: frozenset({_I.STARTING, _I.STOPPED}),
    _I.STOPPED: frozenset(),
    _I.FAILED: frozenset(),
}


S = TypeVar("S", bound=StrEnum)


class LifecycleError(RuntimeError):
    """A move the transition table does not allow: a bug in the code that asked for it."""


class Lifecycle(Generic[S]):
    """A current state and the table it moves by."""

    __slots__ = ("table", "_state")

    def __init__(self, table: Mapping[S, frozenset[S]], initial: S) -> None:
        self.table = table
        self._state = initial

    @property
    def state(self) -> S:
        return self._state

    def can(self, to: S) -> bool:
        return to == self._state or to in self.table[self._state]

    def move(self, to: S) -> None:
        """Move to ``to``; LifecycleError if the table does not allow it from here."""
        if not self.can(to):
            raise LifecycleError(f"cannot go from {self._state.value} to {to.value}")
        self._state = to

    def __repr__(self) -> str:
        return f"Lifecycle({self._state.value})"


def instance_lifecycle() -> Lifecycle[InstanceState]:
    return Lifecycle(INSTANCE_TRANSITIONS, InstanceState.NEW)
