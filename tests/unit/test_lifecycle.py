"""Lifecycles as state tables: every move the supervisor makes is in the table, any other is refused."""

from __future__ import annotations

import pytest

from agentsight.runtime.lifecycle import (
    INSTANCE_TRANSITIONS,
    InstanceState,
    Lifecycle,
    LifecycleError,
    instance_lifecycle,
)

S = InstanceState


def walk(*states: InstanceState) -> Lifecycle[InstanceState]:
    life = instance_lifecycle()
    for s in states:
        life.move(s)
    return life


@pytest.mark.parametrize("path", [
    (S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED),                       # a clean stop
    (S.STARTING, S.RUNNING, S.FINISHED, S.STOPPING, S.STOPPED),           # a source ran out, then the stop
    (S.STARTING, S.RUNNING, S.STOPPING, S.FINISHED, S.STOPPED),           # ran out before it read its stop
    (S.STARTING, S.RUNNING, S.RESTARTING, S.STARTING, S.RUNNING),         # a crash, restarted
    (S.STARTING, S.RESTARTING, S.STARTING, S.BACKOFF, S.STARTING, S.RUNNING),  # flapping, tried again
    (S.STARTING, S.FAILED),                                               # a fatal start error
    (S.STARTING, S.STOPPED),                                              # killed while starting at stop
    (S.STARTING, S.RUNNING, S.BACKOFF, S.STOPPED),                        # stopped while backing off
    (S.NEW, S.STOPPED),                                                   # never started (stop during startup)
])
def test_the_supervisors_paths_are_allowed(path):
    assert walk(*path).state is path[-1]


@pytest.mark.parametrize("path,bad", [
    ((S.STARTING, S.FAILED), S.STARTING),        # failed is for good: never restarted
    ((S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED), S.STARTING),  # stopped is final
    ((), S.RUNNING),                             # ready before it was started
    ((S.STARTING, S.RUNNING, S.STOPPING), S.RESTARTING),  # an exit while stopping is a stop, not a crash
    ((S.STARTING, S.RUNNING, S.FINISHED), S.RESTARTING),
])
def test_a_move_outside_the_table_is_refused_and_changes_nothing(path, bad):
    life = walk(*path)
    before = life.state
    with pytest.raises(LifecycleError, match=f"from {before.value} to {bad.value}"):
        life.move(bad)
    assert life.state is before


def test_staying_in_a_state_is_no_transition():
    life = walk(S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED)
    life.move(S.STOPPED)
    assert life.state is S.STOPPED


def test_every_state_is_in_the_table_and_failed_and_stopped_are_final():
    assert set(INSTANCE_TRANSITIONS) == set(InstanceState)
    assert all(to in InstanceState for tos in INSTANCE_TRANSITIONS.values() for to in tos)
    assert INSTANCE_TRANSITIONS[S.FAILED] == INSTANCE_TRANSITIONS[S.STOPPED] == frozenset()


def test_every_state_can_be_reached_from_new():
    seen, todo = {S.NEW}, [S.NEW]
    while todo:
        for to in INSTANCE_TRANSITIONS[todo.pop()]:
            if to not in seen:
                seen.add(to)
                todo.append(to)
    assert seen == set(InstanceState)


def test_state_names_are_what_status_shows():
    assert [s.value for s in InstanceState] == [
        "new", "starting", "running", "finished", "stopping", "stopped", "restarting", "backoff", "failed"]
    assert f"{S.BACKOFF:<10}|" == "backoff   |"  # the status table formats the value
    assert S.RUNNING == "running"
