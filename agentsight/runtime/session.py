"""A pipeline run that a command drives (`debug`, `record`): the supervisor started under a
free name, told when the pipeline is up and asked on every tick whether to stop, and what the
run did, typed (:class:`RunOutcome`), so a command never reads the supervisor's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentsight.pipeline.config import PipelineSpec
from agentsight.runtime.status import PipelineStatus

__all__ = ["RunOutcome", "run_pipeline", "SPARE_NAMES"]

SPARE_NAMES = 8  # name-2 .. name-9: another capture of the same name running beside this one


@dataclass(frozen=True)
class RunOutcome:
    """What a run did: its exit code, the name it ran under, its actors at the end, the summary table."""

    code: int              # 0 clean, 1 an actor failed, 2 the pipeline could not start
    name: str
    status: PipelineStatus
    summary: str           # the per-actor table and the losses, as printed at the end of a run


def run_pipeline(spec: PipelineSpec, run_dir: Path | None = None, *,
                 on_running: Callable[[], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_renamed: Callable[[str, str], None] | None = None) -> RunOutcome:
    """Run ``spec`` under a supervisor until it stops (Ctrl-C, ``should_stop()``, its sources done).

    ``on_running`` is called once every actor is ready. Without ``run_dir``, a pipeline of the
    same name already running makes this one take the next free name (``name-2`` ...), told to
    ``on_renamed(taken, next)``; the last one taken raises ``AlreadyRunning``. ``RunDirError``:
    a runtime dir that is not the user's own and private.
    """
    from agentsight.runtime.supervisor import AlreadyRunning, Supervisor

    base = spec.name
    names = [base] if run_dir else [base, *(f"{base}-{i}" for i in range(2, 2 + SPARE_NAMES))]
    for i, name in enumerate(names):
        spec.name = name
        try:
            sup = Supervisor(spec, None, run_dir)
            sup.on_running = on_running
            sup.should_stop = should_stop
            code = sup.run_forever()
        except AlreadyRunning:
            if i == len(names) - 1:
                raise
            if on_renamed is not None:
                on_renamed(name, names[i + 1])
            continue
        return RunOutcome(code=code, name=name, status=sup.pipeline_status(), summary=sup.summary())
    raise AssertionError("unreachable: the last name raises")
