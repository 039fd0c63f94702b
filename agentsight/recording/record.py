"""`agentsight record`'s runs: a command (or running processes) recorded into one store.

- :class:`RecordRun`: with a pipeline of its own. The command is started held
  (:class:`~agentsight.runtime.held.HeldCommand`) so the sources filter on its pid from the
  start; it is released once every actor is ready, and its exit (or the attached process's)
  stops the pipeline.
- :class:`CollectorRecordRun`: as a client of the running collector. The command is held, the
  collector follows its tree, the command runs, and the tree's events come back over the
  socket into the recording; a barrier through the collector's pipeline says when the last
  one is in.

Both end the same way: the run's metadata (start, end, exit code, losses) in the store, the
store handed to the user behind sudo, and the recording's summary, returned as
:class:`RecordResult` for the command to print. Nothing here prints.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agentsight.runtime.held import HeldCommand, Owner

if TYPE_CHECKING:  # (imported where used: `record` through a collector starts without them)
    from agentsight.pipeline.config import PipelineSpec
    from agentsight.runtime.session import RunOutcome

__all__ = ["RecordResult", "RecordError", "RecordRun", "CollectorRecordRun", "describe"]

BATCH = 500  # events per store transaction when they come from the collector
STOP_WAIT_S = 10.0  # a command still running this long after the pipeline stopped is terminated


class RecordError(RuntimeError):
    """The recording could not start (one line for the user)."""


@dataclass(frozen=True)
class RecordResult:
    """What a record run did, for the command to say."""

    exit_code: int                    # the command's (128 + signal if killed); 0 for attached processes
    started: bool = True              # False: the capture never started and nothing was recorded
    summary: str = ""                 # the recording's summary (as `agentsight report` prints it)
    pipeline: RunOutcome | None = None  # the private pipeline's run (None through the collector)
    unconfirmed: str | None = None    # through the collector: why its end was not confirmed (None: it was)
    collector_lost: int = 0           # through the collector: events it lost meanwhile (of any process)


def describe(cmd: list[str], pid: int = 0, comm: str = "") -> str:
    """What is recorded, as the recording's ``command`` metadata and the messages say it."""
    return shlex.join(cmd) if cmd else (f"-p {pid}" if pid else f"-c {comm}")


def _finish(path: Path, owner: Owner | None, meta: dict[str, str]) -> str:
    """Write the run's metadata, hand the files to the user, return the recording's summary."""
    from agentsight.recording.report import format_summary, summary
    from agentsight.recording.store import Store

    with Store(path) as store:
        for key, value in meta.items():
            store.set_meta(key, value)
        text = format_summary(summary(store))
    if owner is not None:
        owner.chown(path, f"{path}-wal", f"{path}-shm")
    return text


def _is_otlp_sink(actor: Any) -> bool:
    return bool(actor.kind == "sink" and actor.name == "otlp")


@dataclass
class RecordRun:
    """`record` with a private pipeline: ``start()`` (or ``with RecordRun(...) as rec:``) starts the
    command held (``rec.target`` is the pid to capture), ``rec.run(spec)`` runs the capture and the
    command. Leaving the ``with`` (or this process exiting) before ``run`` closes the gate: the
    held command exits without running."""

    path: Path
    cmd: list[str] = field(default_factory=list)
    pid: int = 0                      # attach to this running process (and its tree) instead
    comm: str = ""                    # or to running processes of this name
    owner: Owner | None = None        # run the command as, and hand the recording to, this user
    held: HeldCommand | None = field(default=None, init=False)

    @property
    def described(self) -> str:
        return describe(self.cmd, self.pid, self.comm)

    @property
    def target(self) -> int:
        """The root of the tree to capture (0: none, processes matched by name)."""
        return self.held.pid if self.held is not None else self.pid

    def start(self) -> RecordRun:
        """Start the command held (nothing to start for running processes)."""
        if self.cmd and self.held is None:
            self.held = HeldCommand(self.cmd, self.owner)
            self.held.start()
        return self

    def __enter__(self) -> RecordRun:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.held is not None:
            self.held.cancel()

    def run(self, spec: PipelineSpec, run_dir: Path | None = None, *,
            on_started: Callable[[], None] | None = None,
            on_renamed: Callable[[str, str], None] | None = None) -> RecordResult:
        """Run the capture in ``spec`` (built for ``target``, writing into ``path``) until the
        command or the attached process exits (or Ctrl-C); ``on_started`` when it is recording.
        Raises what :func:`~agentsight.runtime.session.run_pipeline` raises."""
        from agentsight.recording.store import Store
        from agentsight.runtime.control import EXIT_STARTUP_FAILED
        from agentsight.runtime.session import run_pipeline

        held = self.held
        attached = _process(self.pid) if self.pid and held is None else None

        def release() -> None:
            if held is not None:
                held.release()
            with Store(self.path) as store:  # the clock starts when the command does, not when bcc started
                store.set_meta("started_ns", str(time.time_ns()))
            if on_started is not None:
                on_started()

        def finished() -> bool:
            if held is not None:
                return held.poll() is not None
            return attached is not None and _gone(attached)

        try:
            outcome = run_pipeline(spec, run_dir, on_running=release, should_stop=finished, on_renamed=on_renamed)
        finally:
            if held is not None:
                held.cancel()  # the capture never started: the held command exits without running
        exit_code = 0
        if held is not None:
            if held.wait(STOP_WAIT_S) is None:
                held.send_signal(signal.SIGTERM)
                held.wait()
            exit_code = held.returncode if held.returncode is not None else 0
        if outcome.code == EXIT_STARTUP_FAILED:
            return RecordResult(exit_code, started=False, pipeline=outcome)
        # The recording's own losses: spans the OTLP export lost are said apart, the recording has them.
        lost = outcome.status.dropped(without=_is_otlp_sink)
        text = _finish(self.path, self.owner, {"ended_ns": str(time.time_ns()), "exit_code": str(exit_code),
                                               "events_lost": str(lost)})
        return RecordResult(exit_code, summary=text, pipeline=outcome)


@dataclass
class CollectorRecordRun:
    """`record -- CMD` as a client of the running collector (:mod:`agentsight.runtime.collector`)."""

    path: Path
    cmd: list[str]
    owner: Owner | None = None
    timeout: float = 10.0             # to connect, and for the collector to say it follows the tree
    finish_timeout: float = 30.0      # for the last events after the command exited

    @property
    def described(self) -> str:
        return describe(self.cmd)

    def run(self, on_started: Callable[[list[str]], None] | None = None) -> RecordResult:
        """Record until the command exits; ``on_started(late)`` once it runs (``late``: the
        collector's sources that did not confirm in time that they follow it). Ctrl-C is the
        command's to handle. RecordError when the collector cannot record."""
        from agentsight.recording.store import Store
        from agentsight.runtime.collector import Client, CollectorError

        try:
            client = Client(timeout=self.timeout)
        except CollectorError as exc:
            raise RecordError(str(exc)) from None
        held = HeldCommand(self.cmd, self.owner)
        held.start()
        try:
            client.send("record", {"pid": held.pid})
            followed = client.expect("followed", timeout=self.timeout)
        except (CollectorError, OSError) as exc:
            held.cancel()
            held.wait()
            client.close()
            raise RecordError(f"the collector could not record: {exc}") from None
        got: dict[str, Any] = {"lost": 0, "done": None, "error": None}

        def receive() -> None:  # the tree's events, into the recording as they come
            try:
                with Store(self.path) as store:
                    batch: list[Any] = []
                    for kind, payload in client.events(timeout=None):
                        if kind == "event":
                            batch.append(payload)
                            if len(batch) >= BATCH:
                                store.add(batch)
                                batch = []
                        elif kind == "lost":
                            got["lost"] += int(payload.get("n") or 0)
                        elif kind == "done":
                            got["done"] = payload
                            break
                    store.add(batch)
            except (CollectorError, OSError) as exc:
                got["error"] = str(exc)

        reader = threading.Thread(target=receive, name="recording", daemon=True)
        reader.start()
        started = time.time_ns()
        held.release()
        if on_started is not None:
            on_started(list(followed.get("late") or []))
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle
        try:
            held.wait()
        finally:
            signal.signal(signal.SIGINT, old)
        exit_code = held.returncode if held.returncode is not None else 0
        ended = time.time_ns()
        try:
            client.send("finish", {})
        except OSError as exc:
            got["error"] = str(exc)
        reader.join(timeout=self.finish_timeout)
        client.close()
        done = got["done"] or {}
        lost = got["lost"] + int(done.get("lost") or 0)
        text = _finish(self.path, self.owner, {
            "command": self.described, "recorder": "agentsight record (through the collector)",
            "started_ns": str(started), "ended_ns": str(ended), "exit_code": str(exit_code),
            "events_lost": str(lost + int(done.get("pipeline_lost") or 0))})
        unconfirmed = None
        if got["done"] is None:
            unconfirmed = got["error"] or f"no answer within {self.finish_timeout:g} s"
        return RecordResult(exit_code, summary=text, unconfirmed=unconfirmed,
                            collector_lost=int(done.get("pipeline_lost") or 0))


def _process(pid: int) -> Any:
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _gone(proc: Any) -> bool:
    """The attached process exited (a zombie its parent has not reaped counts as exited)."""
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
