"""The control protocol as types: every message survives the wire, malformed maps raise one error."""

from __future__ import annotations

import pytest

from agentsight import wire
from agentsight.runtime import control
from agentsight.runtime.control import ControlError, Op, Refusal, UnknownOp

EXAMPLES: list[control.Message] = [
    control.Ready(1234),
    control.Heartbeat({"received": 3, "sent": 2, "dropped": 1, "errors": 0}, {"kernel_lost": 1}),
    control.Eos("analyzers/http#1"),
    control.Draining(),
    control.Finished(),
    control.Reconfigured(True),
    control.Reconfigured(False, Refusal.REJECTED, "rejected: bad value"),
    control.Reconfigured(False, Refusal.STRUCTURE, "structure changed"),
    control.Reconfigured(False, Refusal.RESTART, "options need a restart"),
    control.Failure("no root", fatal=True),
    control.Failure("port busy"),
    control.Stopped({"received": 1, "sent": 1, "dropped": 0, "errors": 0}),
    control.Stopped(),
    control.Followed(42, "f1", True),
    control.Stop(),
    control.Stop(9.0, ("sources/ssl",)),
    control.Reconfigure({"name": "x", "components": {}}, ("sink",)),
    control.Prune(),
    control.Gone("sources/ssl"),
    control.Release(),
    control.Answer("totals", 7, {"dropped": 3}),
    control.Mark("1.2", (10, 11)),
    control.Follow(42, 7),
    control.Totals(7),
]


def test_every_op_has_an_example():
    assert {m.to_wire()["op"] for m in EXAMPLES} == {op.value for op in Op}


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_survives_the_wire(msg):
    assert control.parse(wire.unpack(wire.pack(msg.to_wire()))) == msg


def test_the_wire_strings_are_the_documented_ones():
    assert control.Failure("x", fatal=True).to_wire() == {"op": "fatal", "message": "x"}
    assert control.Eos("a").to_wire() == {"op": "eos", "from": "a"}
    assert control.Stop(1.5).to_wire() == {"op": "stop", "timeout": 1.5}
    assert control.Reconfigure({}, ("b", "a")).to_wire()["hold"] == ["a", "b"]
    assert control.Answer("followed", "f1", {"by": ["s"], "late": []}).to_wire() == {
        "op": "answer", "kind": "followed", "req": "f1", "by": ["s"], "late": []}


def test_a_refused_reconfigure_says_whether_a_restart_applies_it():
    assert not control.Reconfigured(True).needs_restart
    assert not control.Reconfigured(False, Refusal.REJECTED, "whatever the wording").needs_restart
    assert control.Reconfigured(False, Refusal.STRUCTURE).needs_restart
    assert control.Reconfigured(False, Refusal.RESTART, "rejected? no: needs a restart").needs_restart


@pytest.mark.parametrize("raw", [
    [1, 2], "ready", {"op": "ready", "pid": "x"}, {"op": "follow"}, {"op": "mark", "pids": [1]},
    {"op": "hb", "counters": [1]}, {"op": "stop", "timeout": "soon"}, {"op": "reconfigure"},
    {"op": "reconfigured", "ok": False, "refusal": "maybe"},
])
def test_a_malformed_map_raises_control_error(raw):
    with pytest.raises(ControlError):
        control.parse(raw)


def test_an_unknown_op_is_its_own_error():
    with pytest.raises(UnknownOp):
        control.parse({"op": "teleport"})
    assert issubclass(UnknownOp, ControlError) and issubclass(ControlError, ValueError)
