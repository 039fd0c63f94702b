"""The supervisor's policy as pure code: when to restart a crashed actor, what a reload changes.

Nothing here touches a process, a socket or the clock: the supervisor passes ``now`` in and
carries the answers out, so each rule is unit-tested by calling it.

Restart (circus-style flapping). A crashed instance is restarted after a backoff that starts at
``backoff_first`` and doubles per crash in a row up to ``backoff_max`` (a process that ran
``stable_after`` seconds starts the doubling over). When ``max_restarts`` restarts already
happened within ``restart_window`` seconds it is flapping: it is left alone for ``retry_after``
seconds, then tried again with a fresh budget (the retry counts as the first restart of it);
never given up for good. A fatal start error is not this module's business (it is never
restarted).

Reload. :func:`plan` compares two pipeline specs: components to start (added), to stop
(removed), to restart (what an instance cannot change in place: kind, type, workers,
partitioning) and to reconfigure live (any other change: options, inputs, publishing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agentsight.pipeline.config import PipelineSpec, SupervisorSpec

__all__ = ["RestartBudget", "RestartHistory", "Verdict", "Decision", "RestartPolicy", "ReloadPlan", "plan"]


@dataclass(frozen=True)
class RestartBudget:
    max_restarts: int = 5
    window: float = 60.0
    retry_after: float = 30.0
    backoff_first: float = 0.1
    backoff_max: float = 2.0
    stable_after: float = 10.0

    @classmethod
    def of(cls, spec: SupervisorSpec) -> RestartBudget:
        return cls(max_restarts=spec.max_restarts, window=spec.restart_window, retry_after=spec.retry_after)


@dataclass(frozen=True)
class RestartHistory:
    """What the policy remembers of one instance slot."""

    restarts: int = 0                 # restarts so far, retries after a backoff included (status shows it)
    recent: tuple[float, ...] = ()    # when the restarts counted against the current budget happened
    consecutive: int = 0              # crashes in a row of short-lived processes: the backoff's exponent


class Verdict(StrEnum):
    RESTART = "restart"   # start it again after ``delay``
    BACKOFF = "backoff"   # flapping: leave it alone for ``delay`` (retry_after), then try again


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float              # seconds until the next start
    recent: int               # restarts within the window before this crash (the flapping message)
    history: RestartHistory   # the history after this decision


class RestartPolicy:
    """Restart decisions for one budget."""

    def __init__(self, budget: RestartBudget) -> None:
        self.budget = budget

    def on_crash(self, history: RestartHistory, now: float, ran_for: float) -> Decision:
        """An instance exited without being asked, ``ran_for`` seconds after it was started."""
        b = self.budget
        recent = tuple(t for t in history.recent if now - t <= b.window)
        if len(recent) >= b.max_restarts:
            return Decision(Verdict.BACKOFF, b.retry_after, len(recent),
                            RestartHistory(history.restarts, (), 0))
        consecutive = 0 if ran_for > b.stable_after else history.consecutive
        delay = min(b.backoff_max, b.backoff_first * (2 ** consecutive))
        return Decision(Verdict.RESTART, delay, len(recent),
                        RestartHistory(history.restarts + 1, (*recent, now), consecutive + 1))

    def on_retry(self, history: RestartHistory, now: float) -> RestartHistory:
        """The backoff is over and the instance is started again: a restart, the first of a fresh budget."""
        return RestartHistory(history.restarts + 1, (*history.recent, now), history.consecutive)


@dataclass(frozen=True)
class ReloadPlan:
    """What moving a running pipeline from one spec to another touches (component names)."""

    start: tuple[str, ...] = ()        # in the new spec only
    stop: tuple[str, ...] = ()         # in the old spec only
    restart: tuple[str, ...] = ()      # in both; a running instance cannot take the change
    reconfigure: tuple[str, ...] = ()  # in both; changed, applied in place (the actor may still ask for a restart)

    @property
    def changed(self) -> tuple[str, ...]:
        """In both specs and different (restart and reconfigure)."""
        return (*self.restart, *self.reconfigure)

    def __bool__(self) -> bool:
        return bool(self.start or self.stop or self.restart or self.reconfigure)


def plan(old: PipelineSpec, new: PipelineSpec) -> ReloadPlan:
    """The changes from ``old`` to ``new``, each list in its spec's order."""
    both = [n for n in new.components if n in old.components]
    return ReloadPlan(
        start=tuple(n for n in new.components if n not in old.components),
        stop=tuple(n for n in old.components if n not in new.components),
        restart=tuple(n for n in both if old.components[n].structure() != new.components[n].structure()),
        reconfigure=tuple(n for n in both if old.components[n].structure() == new.components[n].structure()
                          and old.components[n] != new.components[n]),
    )
