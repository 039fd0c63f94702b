"""Link state survives a kill at any point of a step: all old values, or all new ones."""

from __future__ import annotations

import struct

from agentsight.runtime import linkstate
from agentsight.runtime.linkstate import LinkState


def test_values_persist_and_a_commit_writes_every_staged_value(tmp_path):
    path = tmp_path / "a.links"
    s = LinkState(path)
    s.set("in", 5)
    s.stage("out0", 10)
    s.stage("out1", 20)
    s.stage("in", 7)
    assert s.get("out0") == 10  # staged values are what the next numbering sees
    s.commit()
    s.close()
    again = LinkState(path)
    assert (again.get("in"), again.get("out0"), again.get("out1")) == (7, 10, 20)


def test_a_step_killed_after_its_journal_is_finished_by_the_next_instance(tmp_path):
    path = tmp_path / "a.links"
    s = LinkState(path)
    for name, v in (("in", 1), ("out0", 2), ("out1", 3)):
        s.set(name, v)
    # What a kill right after the journal flag leaves: the journal written, no slot updated.
    slots = {name: s._slots[name] for name in ("in", "out0", "out1")}
    for i, (name, v) in enumerate((("in", 11), ("out0", 12), ("out1", 13))):
        struct.pack_into("<QQ", s._mm, linkstate.J_ENTRIES + 16 * i, slots[name], v)
    struct.pack_into("<Q", s._mm, linkstate.J_COUNT, 3)
    s._mm[linkstate.J_FLAG] = 1
    s._mm.flush()
    s._mm.close()
    again = LinkState(path)
    assert (again.get("in"), again.get("out0"), again.get("out1")) == (11, 12, 13)
    assert again._mm[linkstate.J_FLAG] == 0


def test_a_step_killed_before_its_journal_flag_changes_nothing(tmp_path):
    path = tmp_path / "a.links"
    s = LinkState(path)
    s.set("in", 1)
    s.set("out0", 2)
    struct.pack_into("<QQ", s._mm, linkstate.J_ENTRIES, s._slots["in"], 99)
    struct.pack_into("<Q", s._mm, linkstate.J_COUNT, 1)  # entries written, flag never set
    s._mm.close()
    again = LinkState(path)
    assert (again.get("in"), again.get("out0")) == (1, 2)


def test_a_long_link_name_is_found_again_after_a_restart(tmp_path):
    # Instance names of ~22 characters make link names past the 56 bytes a slot holds.
    long_link = "analyzers/a_rather_long_name#1->sinks/another_long_sink_name"
    other = long_link[:56] + "-but-different"
    path = tmp_path / "a.links"
    s = LinkState(path)
    s.set(long_link, 562)
    s.set(other, 7)
    s.close()
    again = LinkState(path)
    assert again.get(long_link) == 562
    assert again.get(other) == 7


def test_hundreds_of_senders_past_the_first_slots_persist_and_commit_together(tmp_path):
    path = tmp_path / "a.links"
    s = LinkState(path)
    names = [f"sources/sender{i}->analyzers/x" for i in range(600)]
    for i, name in enumerate(names):
        s.set(name, i)
    for i, name in enumerate(names):  # one step touching all of them (past any fixed journal size)
        s.stage(name, 1000 + i)
    s.commit()
    s.close()
    again = LinkState(path)
    assert [again.get(n) for n in names] == [1000 + i for i in range(600)]
