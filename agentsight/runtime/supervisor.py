"""The supervisor: starts every actor process, keeps them alive, stops them in order.

Binds: the control ROUTER ``<run>/control`` (every actor's DEALER connects) and the
status REP ``<run>/status`` (`agentsight status`). Connects nothing.

Policy lives here; the actor processes own their sockets and hooks.

- Start: the bus first, then components downstream-first (sinks, then analyzers
  from the last stage back, then sources), one level at a time, each level's
  instances started together and awaited until they report ready.
- Crash: an instance that exits without being asked is restarted after a backoff
  (0.1 s doubling up to 2 s); more than ``max_restarts`` in ``restart_window``
  seconds and it is flapping: the supervisor stops restarting it for ``retry_after``
  seconds (state ``backoff``), says so, then tries again with a fresh budget (as
  circus does). An actor that reports a fatal start error (no root, no bcc, bad
  file) is not restarted. The rules are :mod:`agentsight.runtime.policy`; an
  instance's states and their transitions are :mod:`agentsight.runtime.lifecycle`.
- Stop (Ctrl-C, SIGTERM, all sources finished): every actor is told to stop; the
  end-of-stream cascade drains the graph in topological order (see
  :mod:`agentsight.runtime.actor`); whatever is still alive after ``graceful_timeout`` is
  killed with its whole process group. Signal handlers only set a flag.
- Reload: the config file is watched; a valid change is applied as added /
  removed / changed sets (options applied in place when the component can, a
  restart of just that component otherwise); an invalid one is rejected with its
  problems and the running pipeline is kept.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zmq

from agentsight import wire
from agentsight.pipeline.config import ComponentSpec, ConfigError, PipelineSpec, load
from agentsight.runtime import control
from agentsight.runtime.actor import BUS_COMPONENT
from agentsight.runtime.endpoints import RunDir, RunDirError, default_runtime_dir, instance_id, private_dir
from agentsight.runtime.lifecycle import InstanceState as State
from agentsight.runtime.lifecycle import Lifecycle, instance_lifecycle
from agentsight.runtime.policy import RestartBudget, RestartHistory, RestartPolicy, Verdict, plan
from agentsight.runtime.status import PipelineStatus
from agentsight.runtime.zygote import ActorProcess, Zygote

__all__ = ["Supervisor", "Instance", "AlreadyRunning", "StartupFailed", "COUNTERS", "actor_table"]

log = logging.getLogger("agentsight")
COUNTERS = ("received", "sent", "dropped", "errors")
FOLLOW_TIMEOUT_S = 2.0  # a source that has not said it follows a new tree by then is named late


class AlreadyRunning(RunDirError):
    pass


class StartupFailed(RuntimeError):
    pass


@dataclass
class Instance:
    """One actor process slot: survives restarts of the process in it."""

    kind: str
    name: str
    worker: int
    workers: int
    id: str
    proc: ActorProcess | None = None
    lifecycle: Lifecycle[State] = field(default_factory=instance_lifecycle, repr=False)
    history: RestartHistory = field(default_factory=RestartHistory)  # what the restart policy remembers
    next_start: float = 0.0
    started_at: float = 0.0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    retired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    stats: dict[str, int] = field(default_factory=dict)
    message: str = ""
    removing: bool = False
    draining: bool = False   # sent its end of stream; waits for the downstream to confirm
    eos_acks: set[str] = field(default_factory=set)
    said_stopped: bool = False  # sent its final "stopped": all its output is out, only its teardown is left

    @property
    def state(self) -> State:
        return self.lifecycle.state

    def move(self, to: State) -> None:
        """Change state, as the lifecycle's table allows (LifecycleError otherwise: a bug)."""
        self.lifecycle.move(to)

    @property
    def restarts(self) -> int:
        return self.history.restarts

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def totals(self) -> dict[str, int]:
        return {k: self.counters.get(k, 0) + self.retired.get(k, 0) for k in COUNTERS}

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "state": self.state, "pid": self.pid,
                "restarts": self.restarts, **self.totals(), "stats": self.stats, "message": self.message}


class Supervisor:
    def __init__(self, spec: PipelineSpec, config_path: str | Path | None = None,
                 run_dir: Path | None = None) -> None:
        self.spec = spec
        self.config_path = Path(config_path) if config_path else None
        rd = run_dir or (Path(spec.supervisor.runtime_dir) if spec.supervisor.runtime_dir
                         else default_runtime_dir(spec.name))
        self.run = RunDir(rd)
        self.instances: dict[str, Instance] = {}
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.stop_requested = False
        self.kill_requested = False
        self.reloads: queue.Queue[str] = queue.Queue()
        self._watch_stop = threading.Event()
        self.started = time.monotonic()
        self.exit_code = 0
        self.zygote = Zygote()  # actors are forked from it, so they share its imports' pages
        self.phase = "starting"  # the pipeline's (agentsight.runtime.status.PHASES)
        self.pending_replace: set[str] = set()
        self._in_tick = False  # _tick never runs inside itself (see _between_ticks)
        self.events: list[str] = []   # what happened, for status and the summary
        self.follows: dict[str, dict[str, Any]] = {}  # follow requests waiting for the sources' answers
        self.follow_seq = 0
        # Hooks for commands that drive a pipeline (record): called once every actor is
        # ready, and on every tick (return True to stop the pipeline gracefully).
        self.on_running: Callable[[], None] | None = None
        self.should_stop: Callable[[], bool] | None = None
        # Applied to every spec loaded from the config file on reload (run --server adds its sink).
        self.amend: Callable[[PipelineSpec], PipelineSpec] | None = None

    # ------------------------------------------------------------- lifecycle
    def say(self, msg: str) -> None:
        self.events.append(msg)
        print(f"agentsight: {msg}", file=sys.stderr, flush=True)

    def _claim_run_dir(self) -> None:
        private_dir(self.run.path)  # someone else's directory (or a symlink) is refused, never emptied
        pid_file = self.run.pid_file
        if pid_file.exists():
            try:
                other = int(pid_file.read_text().strip() or 0)
            except (OSError, ValueError):
                other = 0
            if other and other != os.getpid() and _is_agentsight(other):
                raise AlreadyRunning(
                    f"pipeline {self.spec.name!r} is already running (pid {other}, runtime dir {self.run.path}); "
                    "stop it or give this one another name")
            self.say(f"removing stale runtime dir {self.run.path} of a pipeline that is gone")
            shutil.rmtree(self.run.path, ignore_errors=True)
        elif self.run.path.exists() and any(self.run.path.iterdir()):
            shutil.rmtree(self.run.path, ignore_errors=True)
        self.run.create()
        pid_file.write_text(str(os.getpid()))

    def run_forever(self) -> int:
        """Run until stopped; returns the exit code (0 clean, 1 an actor failed, 2 startup failed)."""
        self._claim_run_dir()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        # A restarted actor connects with its predecessor's identity, maybe before this socket has
        # seen the old connection close: without handover, ZMQ ignores the newcomer (its "ready"
        # never arrives, and what is sent to it goes to the dead connection).
        self.control.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.control.bind(self.run.control)
        self.status = self.ctx.socket(zmq.REP)
        self.status.setsockopt(zmq.LINGER, 0)
        self.status.bind(self.run.status)
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(self.status, zmq.POLLIN)
        old_int = signal.signal(signal.SIGINT, self._on_signal)
        old_term = signal.signal(signal.SIGTERM, self._on_signal)
        watcher = None
        try:
            try:
                self._start_all()
            except StartupFailed as exc:
                self.say(str(exc))
                self.exit_code = control.EXIT_STARTUP_FAILED
                self.stop_requested = True
                self.phase = "stopping"
            if not self.stop_requested:
                self.phase = "running"
            if self.config_path is not None and self.spec.supervisor.watch and not self.stop_requested:
                watcher = threading.Thread(target=self._watch, name="config-watch", daemon=True)
                watcher.start()
            if self.on_running is not None and not self.stop_requested:
                self.on_running()
            while not self.stop_requested:
                self._tick(0.1)
                self._between_ticks()
                if self.should_stop is not None and self.should_stop():
                    self.stop_requested = True
            self.phase = "stopping"
            self._stop_all()
        finally:
            self._watch_stop.set()
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            self._kill_all()
            self.ctx.destroy(linger=0)
            self.zygote.shutdown()
            shutil.rmtree(self.run.path, ignore_errors=True)
            self.phase = "stopped"
        return self.exit_code

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_requested:
            self.kill_requested = True
        self.stop_requested = True

    # ---------------------------------------------------------------- start
    def _levels(self, spec: PipelineSpec, names: Iterable[str]) -> list[list[ComponentSpec]]:
        """Components grouped so each group only feeds groups already started."""
        wanted = set(names)
        depth: dict[str, int] = {}

        def d(n: str) -> int:
            if n not in depth:
                depth[n] = 0  # guards against cycles (validate rejects them anyway)
                downs = [c.name for c in spec.downstream(n)]
                depth[n] = 1 + max((d(x) for x in downs), default=-1)
            return depth[n]

        groups: dict[int, list[ComponentSpec]] = {}
        for n in wanted:
            groups.setdefault(d(n), []).append(spec.components[n])
        return [groups[k] for k in sorted(groups)]

    def _spec_file(self, name: str, worker: int) -> Path:
        path = self.run.path / "specs" / f"{name}.{worker}.json"
        payload = {"pipeline": self.spec.to_dict(), "component": name, "worker": worker,
                   "run_dir": str(self.run.path), "supervisor_pid": os.getpid()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, path)
        return path

    def _spawn(self, inst: Instance) -> None:
        path = self._spec_file(inst.name, inst.worker)
        env = dict(os.environ)
        inst.proc = self.zygote.spawn_actor(path, env)
        inst.move(State.STARTING)
        inst.started_at = time.monotonic()
        inst.counters = {k: inst.counters.get(k, 0) if k == "dropped" and inst.kind != "bus" else 0
                         for k in COUNTERS}
        inst.message = ""
        inst.draining = False
        inst.eos_acks = set()
        inst.said_stopped = False
        # An acknowledgement is the process's that received the end of stream: a new process in the
        # slot (a restart, a reload that changed the workers) has received none. A stale one would
        # release its upstream before this process has the stream's tail.
        for other in self.instances.values():
            other.eos_acks.discard(inst.id)

    def _existing_of(self, c: ComponentSpec) -> list[Instance]:
        """The instance slots a component has now (none before it is started)."""
        return [i for w in range(c.workers)
                if (i := self.instances.get(instance_id(c.kind, c.name, w, c.workers))) is not None]

    def _instances_of(self, c: ComponentSpec) -> list[Instance]:
        """The component's instance slots, made if it has none yet (to start it)."""
        out = []
        for w in range(c.workers):
            iid = instance_id(c.kind, c.name, w, c.workers)
            inst = self.instances.get(iid)
            if inst is None:
                inst = self.instances[iid] = Instance(c.kind, c.name, w, c.workers, iid)
            out.append(inst)
        return out

    def _start_group(self, insts: list[Instance]) -> None:
        for inst in insts:
            self._spawn(inst)
        deadline = time.monotonic() + self.spec.supervisor.ready_timeout
        while any(i.state is State.STARTING for i in insts):
            if time.monotonic() > deadline:
                slow = ", ".join(i.id for i in insts if i.state is State.STARTING)
                raise StartupFailed(f"not ready after {self.spec.supervisor.ready_timeout:.0f}s: {slow}")
            if self.stop_requested:
                raise StartupFailed("interrupted while starting")
            self._tick(0.05, restart=False)
            for i in insts:
                if i.state is State.STARTING and not i.alive():
                    code = i.proc.returncode if i.proc else None
                    raise StartupFailed(f"{i.id} could not start: {i.message or f'exit code {code}'}")
        failed = [i for i in insts if i.state in (State.FAILED, State.RESTARTING)]
        if failed:
            raise StartupFailed("; ".join(f"{i.id}: {i.message}" for i in failed))

    def _start_all(self) -> None:
        if self.spec.bus.enabled:
            bus = self.instances[BUS_COMPONENT] = Instance("bus", BUS_COMPONENT, 0, 1, BUS_COMPONENT)
            self._start_group([bus])
        # Every actor at once, the slowest (sources: eBPF compiling) spawned first: an upstream
        # that is ready before its downstream only queues (its PUSH connects to an endpoint
        # not bound yet, ZMQ holds the frames), so starting level by level would only add each
        # level's start-up time to the whole.
        levels = self._levels(self.spec, self.spec.components)
        self._start_group([i for group in reversed(levels) for c in group for i in self._instances_of(c)])
        n = sum(1 for i in self.instances.values())
        self.say(f"pipeline {self.spec.name!r} running: {n} processes, runtime dir {self.run.path}")

    # ----------------------------------------------------------------- loop
    def _tick(self, timeout: float, restart: bool = True) -> None:
        """Wait up to ``timeout`` for control messages and status requests, handle them, notice
        exits, restart what is due (``restart``). Never re-entered: what starts or stops actors
        itself (a reload) runs in :meth:`_between_ticks`."""
        if self._in_tick:
            raise RuntimeError("Supervisor._tick re-entered")
        self._in_tick = True
        try:
            self._tick_once(timeout, restart)
        finally:
            self._in_tick = False

    def _tick_once(self, timeout: float, restart: bool) -> None:
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.follows:
            now = time.monotonic()
            for req in [r for r, f in self.follows.items() if f["deadline"] <= now]:
                self._answer_follow(req)  # a source that did not answer in time is named "late"
        if self.control in ready:
            self._read_control()
        if self.status in ready:
            self._answer_status()
        now = time.monotonic()
        for inst in list(self.instances.values()):
            if inst.proc is not None and inst.state in (State.STARTING, State.RUNNING, State.STOPPING) \
                    and inst.proc.poll() is not None:
                self._on_exit(inst)
            if restart and inst.state in (State.RESTARTING, State.BACKOFF) and now >= inst.next_start \
                    and not self.stop_requested:
                if inst.state is State.BACKOFF:
                    inst.history = self._restart_policy().on_retry(inst.history, now)
                    self.say(f"retrying {inst.id} after its backoff (restart {inst.restarts})")
                else:
                    self.say(f"restarting {inst.id} (restart {inst.restarts})")
                self._spawn(inst)
        self._release_drained()

    def _between_ticks(self) -> None:
        """The main loop's work that starts and stops actors (and so runs ticks of its own):
        the end of a run whose sources finished, reloads, restarts asked for by a reconfigure."""
        self._maybe_finish()
        try:
            while True:
                self._reload(self.reloads.get_nowait())
        except queue.Empty:
            pass
        for name in list(self.pending_replace):
            self.pending_replace.discard(name)
            self._replace(name)

    def _restart_policy(self) -> RestartPolicy:
        return RestartPolicy(RestartBudget.of(self.spec.supervisor))

    def _read_control(self) -> None:
        while True:
            try:
                ident, raw = self.control.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            inst = self.instances.get(ident.decode(errors="replace"))
            if inst is None:
                continue
            try:
                msg = control.parse(wire.unpack(raw))
            except (wire.FrameError, control.UnknownOp):
                continue
            except control.ControlError as exc:  # a malformed message: skipped, said
                log.warning("bad control message from %s: %s", inst.id, exc)
                continue
            self._on_control(inst, msg)

    def _on_control(self, inst: Instance, msg: control.Message) -> None:
        if isinstance(msg, control.Ready):
            if inst.state is State.STARTING:  # (a late word from a process already gone changes nothing)
                inst.move(State.RUNNING)
        elif isinstance(msg, control.Heartbeat):
            inst.counters = {k: msg.counters.get(k, 0) for k in COUNTERS}
            inst.stats = dict(msg.stats)
        elif isinstance(msg, control.Stopped):
            inst.said_stopped = True
            inst.counters.update({k: v for k, v in msg.counters.items() if k in COUNTERS})
        elif isinstance(msg, control.Eos):
            sender = self.instances.get(msg.sender)
            if sender is not None:
                sender.eos_acks.add(inst.id)
        elif isinstance(msg, control.Draining):
            inst.draining = True
        elif isinstance(msg, control.Finished):
            if inst.lifecycle.can(State.FINISHED):
                inst.move(State.FINISHED)
        elif isinstance(msg, control.Failure):
            inst.message = msg.message
        elif isinstance(msg, control.Mark):
            # A barrier a client needs (runtime marks): every source sends it behind what it has.
            for src in self.instances.values():
                if src.kind == "source" and src.state is State.RUNNING:
                    self._send(src, msg)
        elif isinstance(msg, control.Follow):
            self._start_follow(inst, msg)
        elif isinstance(msg, control.Totals):  # a client's recording: what the pipeline lost, to say with it
            dropped = sum(i.totals()["dropped"] for i in self.instances.values())
            self._send(inst, control.Answer("totals", msg.req, {"dropped": dropped}))
        elif isinstance(msg, control.Followed):
            f = self.follows.get(str(msg.req))
            if f is not None:
                f["waiting"].discard(inst.id)
                if msg.ok:
                    f["by"].append(inst.id)
                if not f["waiting"]:
                    self._answer_follow(str(msg.req))
        elif isinstance(msg, control.Reconfigured) and not msg.ok:
            if msg.needs_restart:
                self.say(f"{inst.id}: {msg.reason}, restarting it")
                self.pending_replace.add(inst.name)
            else:
                self.say(f"{inst.id}: change not applied, {msg.reason}")

    def _start_follow(self, inst: Instance, msg: control.Follow) -> None:
        """A client (through an actor) asks every source to follow a new process tree."""
        self.follow_seq += 1
        req = f"f{self.follow_seq}"
        targets = [i for i in self.instances.values() if i.kind == "source" and i.state is State.RUNNING]
        self.follows[req] = {"from": inst.id, "req": msg.req, "pid": msg.pid,
                             "waiting": {t.id for t in targets}, "by": [],
                             "deadline": time.monotonic() + FOLLOW_TIMEOUT_S}
        for t in targets:
            self._send(t, control.Follow(msg.pid, req))
        if not targets:
            self._answer_follow(req)

    def _answer_follow(self, req: str) -> None:
        f = self.follows.pop(req)
        asker = self.instances.get(f["from"])
        if asker is not None:
            self._send(asker, control.Answer("followed", f["req"], {"pid": f["pid"], "by": f["by"],
                                                                    "late": sorted(f["waiting"])}))

    def _send(self, inst: Instance, msg: control.Message) -> None:
        try:
            self.control.send_multipart([inst.id.encode(), wire.pack(msg.to_wire())], flags=zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass

    def _on_exit(self, inst: Instance) -> None:
        assert inst.proc is not None
        code = inst.proc.returncode
        # An actor reports its lost count cumulative across restarts (kept in its link state, see
        # runtime._lost): it carries over; the other counters start again with each process.
        cumulative = ("dropped",) if inst.kind != "bus" else ()
        for k in COUNTERS:
            if k not in cumulative:
                inst.retired[k] += inst.counters.get(k, 0)
        inst.counters = {k: inst.counters.get(k, 0) if k in cumulative else 0 for k in COUNTERS}
        if inst.removing or inst.state is State.STOPPING:
            inst.move(State.STOPPED)
            return
        if code == 0 and inst.kind == "source":
            inst.move(State.FINISHED)
            return
        if code == control.EXIT_FATAL:
            inst.move(State.FAILED)
            self.say(f"{inst.id} failed: {inst.message or 'fatal start error'}; not restarting it")
            self._announce_gone(inst)
            self.exit_code = control.EXIT_ACTOR_FAILED
            return
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        if getattr(inst.proc, "status_lost", False):
            how = "its exit status was lost (another process collected it)"
        now = time.monotonic()
        policy = self._restart_policy()
        decision = policy.on_crash(inst.history, now, ran_for=now - inst.started_at)
        inst.history = decision.history
        inst.next_start = now + decision.delay
        if decision.verdict is Verdict.BACKOFF:
            window, retry = policy.budget.window, decision.delay
            inst.move(State.BACKOFF)
            inst.message = (f"flapping: {decision.recent} restarts in {window:.0f}s (last: {how}); "
                            f"next try in {retry:.0f}s")
            self.say(f"{inst.id} crashed ({how}); giving up for now: {decision.recent} restarts "
                     f"in {window:.0f}s is over the budget of {policy.budget.max_restarts}; "
                     f"retrying in {retry:.0f}s")
            self.exit_code = control.EXIT_ACTOR_FAILED
            return
        inst.move(State.RESTARTING)
        self.say(f"{inst.id} (pid {inst.pid}) crashed: {how}; restarting in {decision.delay:.1f}s")

    def _release_drained(self) -> None:
        """Let a sender exit once every live downstream instance has its end of stream."""
        for inst in self.instances.values():
            if not inst.draining:
                continue
            waiting = [d.id for c in self.spec.downstream(inst.name) for d in self._existing_of(c)
                       if d.alive() and d.id not in inst.eos_acks]
            if not waiting:
                inst.draining = False
                self._send(inst, control.Release())

    def _announce_gone(self, inst: Instance) -> None:
        """Tell the downstream instances not to wait for end-of-stream from a failed one."""
        for d in self.spec.downstream(inst.name):
            for di in self._existing_of(d):
                self._send(di, control.Gone(inst.id))

    def _maybe_finish(self) -> None:
        if not self.spec.supervisor.exit_when_sources_done:
            return
        sources = [i for i in self.instances.values() if i.kind == "source"]
        if sources and all(i.state in (State.FINISHED, State.FAILED) for i in sources) \
                and any(i.state is State.FINISHED for i in sources):
            self.say("all sources finished; draining the pipeline")
            self.stop_requested = True

    def _answer_status(self) -> None:
        """Answer one status request; any request (however many parts) gets the report."""
        try:
            self.status.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            self.status.send(json.dumps(self.status_report()).encode(), flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # a client gone mid-request must not stop the pipeline
            log.warning("status request not answered: %s", exc)

    def status_report(self) -> dict[str, Any]:
        return {
            "pipeline": self.spec.name,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "phase": self.phase,
            "config": str(self.config_path) if self.config_path else None,
            "runtime_dir": str(self.run.path),
            "instances": [i.row() for i in self.instances.values()],
            "events": self.events[-20:],
        }

    def pipeline_status(self) -> PipelineStatus:
        """The status reply, typed (what a command reads at the end of a run; `status` is the REP socket)."""
        return PipelineStatus.from_dict(self.status_report())

    # ----------------------------------------------------------------- stop
    def _stop_all(self) -> None:
        timeout = self.spec.supervisor.graceful_timeout
        deadline = time.monotonic() + timeout
        comps = [i for i in self.instances.values() if i.kind != "bus"]
        for inst in comps:
            if inst.alive() and inst.state is State.STARTING and inst.proc is not None:
                # Not ready yet (a source compiling its eBPF): it has produced nothing, and
                # waiting for it would hold the stop for seconds.
                try:
                    os.killpg(inst.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                inst.proc.wait()
            if not inst.alive() and inst.state in (State.RESTARTING, State.BACKOFF, State.STARTING, State.NEW):
                inst.move(State.STOPPED)
        # Upstreams that will never send an end of stream: failed, never started (a stop
        # during startup, when only the downstream levels are up), or not alive any more.
        # A finished source already sent its end of stream.
        keep = {i.id for i in comps if i.alive() or i.state is State.FINISHED}
        gone = [iid for c in self.spec.components.values() for w in range(c.workers)
                if (iid := instance_id(c.kind, c.name, w, c.workers)) not in keep]
        for inst in comps:
            if inst.alive():
                inst.move(State.STOPPING)
                self._send(inst, control.Stop(max(0.5, timeout - 1.0), tuple(gone)))
        # An actor is done once it said "stopped": a source's probe teardown after that is its own.
        while any(i.alive() and not i.said_stopped for i in comps) and time.monotonic() < deadline \
                and not self.kill_requested:
            self._tick(0.05, restart=False)
        for i in comps:
            if i.alive() and i.said_stopped:
                i.move(State.STOPPED)
        late = [i for i in comps if i.alive() and not i.said_stopped]
        if late:
            self.say(f"killing {len(late)} actors still running after {timeout:.0f}s: "
                     + ", ".join(i.id for i in late))
        self._drain_control()
        bus = self.instances.get(BUS_COMPONENT)
        if bus is not None and bus.alive():
            bus.move(State.STOPPING)
            self._send(bus, control.Stop())
            end = time.monotonic() + 2
            while bus.alive() and time.monotonic() < end:
                self._tick(0.05, restart=False)

    def _drain_control(self) -> None:
        for _ in range(3):
            self._tick(0.02, restart=False)

    def _kill_all(self) -> None:
        for inst in self.instances.values():
            if inst.said_stopped and inst.state is State.STOPPED:
                continue  # tearing its probes down; it dies with us (PDEATHSIG) if still at it
            if inst.proc is not None and inst.proc.poll() is None:
                try:
                    os.killpg(inst.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if inst.proc is not None:
                try:
                    inst.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                # Reap anything left in the actor's process group (children it started).
                try:
                    os.killpg(inst.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                if inst.state not in (State.FAILED, State.FINISHED):
                    inst.move(State.STOPPED)

    # --------------------------------------------------------------- reload
    def _watch(self) -> None:
        from watchfiles import watch

        assert self.config_path is not None
        target = self.config_path.resolve()
        # Watch the directory: editors replace files by rename.
        for changes in watch(target.parent, stop_event=self._watch_stop, debounce=100, step=50,
                             rust_timeout=200, yield_on_timeout=False):
            if any(Path(p).resolve() == target for _, p in changes):
                self.reloads.put(str(target))

    def _reload(self, path: str) -> None:
        try:
            new = load(path)
        except ConfigError as exc:
            self.say(f"config change rejected, the running pipeline is kept: {len(exc.problems)} problem(s)")
            for p in exc.problems:
                self.say(f"  {p}")
            return
        if new.name != self.spec.name or new.bus != self.spec.bus:
            self.say("config change rejected: name and [bus] cannot change while running (restart to apply)")
            return
        new.supervisor = replace(new.supervisor, runtime_dir=self.spec.supervisor.runtime_dir)
        if self.amend is not None:
            new = self.amend(new)
        self.apply(new)

    def apply(self, new: PipelineSpec) -> None:
        """Move the running pipeline to ``new``, touching only what changed."""
        old = self.spec
        restart = plan(old, new).restart
        if restart:
            self._restart(set(restart), new)
        else:
            self._apply_diff(old, new)

    def _restart(self, names: set[str], new: PipelineSpec) -> None:
        """Restart components (their structure changed, or their options need it) losing nothing.

        Two steps. Out: every upstream ends its stream to the old instances and holds what it
        produces for them; the old instances drain and exit. In: the new instances start, then
        the upstreams send what they held, and go on. Order per key holds: the old instances
        have delivered everything before the new ones get anything.
        """
        old = self.spec
        interim = replace(new, components={n: c for n, c in new.components.items() if n not in names})
        t0 = time.monotonic()
        self._apply_diff(old, interim, hold=names, quiet=True)
        self._apply_diff(interim, new, quiet=True)
        how = []
        for n in sorted(names):
            a, b = old.components.get(n), new.components.get(n)
            if a is not None and b is not None and a.workers != b.workers:
                how.append(f"{n} (workers {a.workers} -> {b.workers})")
            else:
                how.append(n)
        self.say(f"config reloaded: restarted {', '.join(how)} in {time.monotonic() - t0:.2f}s")

    def _apply_diff(self, old: PipelineSpec, new: PipelineSpec, hold: Iterable[str] = (),
                    quiet: bool = False) -> None:
        changes = plan(old, new)
        added, removed = list(changes.start), list(changes.stop)
        changed = [n for n in new.components if n in changes.changed]
        self.spec = new
        if added:
            for group in self._levels(new, added):
                try:
                    self._start_group([i for c in group for i in self._instances_of(c)])
                except StartupFailed as exc:
                    self.say(f"reload: {exc}")
        msg = control.Reconfigure(new.to_dict(), tuple(hold))
        for inst in self.instances.values():
            if inst.name in new.components and inst.name not in added and inst.alive():
                self._send(inst, msg)
        for name in removed:
            c = old.components[name]
            insts = [self.instances[instance_id(c.kind, name, w, c.workers)] for w in range(c.workers)]
            for inst in insts:
                inst.removing = True
                self._send(inst, control.Stop(self.spec.supervisor.graceful_timeout))
            deadline = time.monotonic() + self.spec.supervisor.graceful_timeout + 1
            while any(i.alive() for i in insts) and time.monotonic() < deadline:
                self._tick(0.05, restart=False)
            for inst in insts:
                if inst.alive() and inst.proc is not None:
                    self.say(f"{inst.id} did not stop in time; killing it")
                    os.killpg(inst.proc.pid, signal.SIGKILL)
                    inst.proc.wait()
                del self.instances[inst.id]
        if removed:
            # The removed instances are gone: their upstreams may close the outputs that fed them.
            for inst in self.instances.values():
                if inst.alive():
                    self._send(inst, control.Prune())
        if quiet:
            return
        parts = []
        if added:
            parts.append("started " + ", ".join(added))
        if removed:
            parts.append("stopped " + ", ".join(removed))
        if changed:
            parts.append("reconfigured " + ", ".join(changed))
        if parts:
            self.say("config reloaded: " + "; ".join(parts))

    def _replace(self, name: str) -> None:
        """Restart one component (its options cannot change in place)."""
        comp = self.spec.components.get(name)
        if comp is None:
            return
        self._restart({name}, self.spec)

    # -------------------------------------------------------------- summary
    def summary(self) -> str:
        rows = [i.row() for i in self.instances.values()]
        lost = sum(r["dropped"] for r in rows)
        numbered = sum(int(i.stats.get("numbered_out", 0)) for i in self.instances.values() if i.kind == "source")
        return (actor_table(rows) + "\n" + (f"events lost: {lost}" if lost else "no events lost")
                + f"\nevents from the sources: {numbered}")


def actor_table(rows: list[dict[str, Any]], pid: bool = False) -> str:
    """The per-actor table of the exit summary and of `agentsight status` (rows from Instance.row)."""
    pid_col = f" {'pid':>7}" if pid else ""
    lines = [f"{'actor':<28} {'state':<10}{pid_col} {'restarts':>8} {'received':>10} {'sent':>10} "
             f"{'dropped':>8} {'errors':>7}"]
    for r in rows:
        pid_val = f" {r['pid'] or '-':>7}" if pid else ""
        lines.append(f"{r['id']:<28} {r['state']:<10}{pid_val} {r['restarts']:>8} {r['received']:>10} "
                     f"{r['sent']:>10} {r['dropped']:>8} {r['errors']:>7}")
    return "\n".join(lines)

def _is_agentsight(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return b"agentsight" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
