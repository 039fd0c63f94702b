"""The supervisor carries out the policy and the protocol: exits and control messages fed to it
directly, without actor processes (no socket is used on these paths)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agentsight.pipeline.config import ComponentSpec, PipelineSpec, SupervisorSpec
from agentsight.runtime import control
from agentsight.runtime.control import Refusal
from agentsight.runtime.lifecycle import InstanceState as State
from agentsight.runtime.supervisor import Instance, Supervisor


class ExitedProc:
    """What _on_exit reads of a process that has exited."""

    def __init__(self, code: int, pid: int = 4242) -> None:
        self.returncode, self.pid = code, pid

    def poll(self) -> int:
        return self.returncode


@pytest.fixture
def sup(tmp_path) -> Iterator[Supervisor]:
    tag = ComponentSpec("analyzer", "tag", "passthrough")
    spec = PipelineSpec(name="t", components={"tag": tag},
                        supervisor=SupervisorSpec(max_restarts=2, restart_window=60.0, retry_after=2.0))
    s = Supervisor(spec, run_dir=tmp_path / "run")
    yield s
    s.ctx.destroy(linger=0)


def tag() -> Instance:
    return Instance("analyzer", "tag", 0, 1, "analyzers/tag")


def crash(sup: Supervisor, inst: Instance, code: int = -9) -> None:
    inst.move(State.STARTING)
    inst.move(State.RUNNING)
    inst.proc = ExitedProc(code)  # type: ignore[assignment]
    inst.started_at = time.monotonic()
    sup._on_exit(inst)


def test_crashes_restart_until_the_budget_then_back_off_and_say_when(sup, capsys):
    inst = tag()
    states = []
    for _ in range(3):
        crash(sup, inst)
        states.append(inst.state)
    assert states == [State.RESTARTING, State.RESTARTING, State.BACKOFF]
    assert inst.restarts == 2 and "flapping: 2 restarts in 60s" in inst.message
    assert "next try in 2s" in inst.message
    assert inst.next_start - time.monotonic() == pytest.approx(2.0, abs=0.5)
    assert sup.exit_code == control.EXIT_ACTOR_FAILED
    assert "retrying in 2s" in capsys.readouterr().err


def test_an_exit_while_stopping_is_a_stop_and_a_source_that_exits_0_is_finished(sup):
    inst = tag()
    inst.move(State.STARTING)
    inst.move(State.RUNNING)
    inst.move(State.STOPPING)
    inst.proc = ExitedProc(0)  # type: ignore[assignment]
    sup._on_exit(inst)
    assert inst.state is State.STOPPED and inst.restarts == 0
    src = Instance("source", "gen", 0, 1, "sources/gen")
    crash(sup, src, code=0)
    assert src.state is State.FINISHED


def test_a_refused_reconfigure_restarts_the_component_by_its_kind_not_its_wording(sup):
    inst = tag()
    sup._on_control(inst, control.Reconfigured(False, Refusal.REJECTED, "bad value for 'set'"))
    assert sup.pending_replace == set() and sup.events[-1].endswith("change not applied, bad value for 'set'")
    # Worded like a rejection, but only a restart applies it (the old prefix test kept it as it was).
    sup._on_control(inst, control.Reconfigured(False, Refusal.RESTART, "rejected in place: needs a restart"))
    assert sup.pending_replace == {"tag"}
    sup.pending_replace.clear()
    sup._on_control(inst, control.Reconfigured(False, Refusal.STRUCTURE, "structure changed"))
    assert sup.pending_replace == {"tag"}
    sup.pending_replace.clear()
    sup._on_control(inst, control.Reconfigured(True))
    assert sup.pending_replace == set()


def test_a_late_ready_or_finished_from_a_process_gone_does_not_move_the_slot(sup):
    inst = tag()
    crash(sup, inst)
    assert inst.state is State.RESTARTING
    sup._on_control(inst, control.Ready(4242))
    sup._on_control(inst, control.Finished())
    assert inst.state is State.RESTARTING
    inst.move(State.STARTING)
    sup._on_control(inst, control.Ready(4243))
    assert inst.state is State.RUNNING


def test_tick_refuses_to_run_inside_itself(sup):
    sup._in_tick = True
    with pytest.raises(RuntimeError, match="re-entered"):
        sup._tick(0)


class LiveProc:
    """A process that has not exited (what _spawn gets from the zygote, here without one)."""

    pid = 4343
    returncode = None

    def poll(self) -> None:
        return None


def test_a_restarted_downstream_must_acknowledge_the_end_of_stream_again(tmp_path, monkeypatch):
    # gen -> tag: the old tag process acknowledged gen's end of stream (a reload retired that
    # output); the new process in the same slot has received nothing, so gen is not released.
    spec = PipelineSpec(name="t", components={
        "gen": ComponentSpec("source", "gen", "replay"),
        "tag": ComponentSpec("analyzer", "tag", "passthrough", inputs=["gen"])})
    s = Supervisor(spec, run_dir=tmp_path / "run")
    try:
        (s.run.path / "specs").mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(s.zygote, "spawn_actor", lambda path, env: LiveProc())
        released: list[str] = []
        monkeypatch.setattr(s, "_send", lambda inst, msg: released.append(inst.id)
                            if isinstance(msg, control.Release) else None)
        gen = s.instances["sources/gen"] = Instance("source", "gen", 0, 1, "sources/gen")
        tag = s.instances["analyzers/tag"] = Instance("analyzer", "tag", 0, 1, "analyzers/tag")
        for inst in (gen, tag):
            s._spawn(inst)
        s._on_control(tag, control.Eos("sources/gen"))  # the old process has the stream's end
        tag = s.instances["analyzers/tag"] = Instance("analyzer", "tag", 0, 1, "analyzers/tag")
        s._spawn(tag)  # its successor in the slot, as a reload starts it
        gen.draining = True
        s._release_drained()
        assert released == [] and "analyzers/tag" not in gen.eos_acks
        s._on_control(tag, control.Eos("sources/gen"))
        s._release_drained()
        assert released == ["sources/gen"]
    finally:
        s.ctx.destroy(linger=0)
