"""Component hooks called directly, without sockets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentsight.actors.analyzers.annotate import Annotate
from agentsight.actors.sinks.jsonl import JsonlSink
from agentsight.actors.sources.generator import Generator
from agentsight.actors.sources.replay import Replay
from agentsight.event import Event
from agentsight.runtime.actor import partition_key, stable_hash
from agentsight.runtime.linkstate import LinkState


def test_generator_counts_per_key_and_finishes():
    g = Generator("gen", {"count": 10, "keys": 3, "batch": 4})
    g.open()
    got = []
    while not g.finished:
        got += g.poll(0.01)
    assert [e.data["i"] for e in got] == list(range(10))
    assert [e.data["n"] for e in got if e.data["key"] == 1] == [0, 1, 2]


def test_annotate_reconfigures_live():
    a = Annotate("tag", {"fields": {"stage": "one"}})
    e = Generator("g", {"count": 1}).poll(0)[0]
    assert list(a.process(e))[0].data["stage"] == "one"
    assert a.reconfigure({"fields": {"stage": "two"}}) is True
    assert list(a.process(e))[0].data["stage"] == "two"


def test_jsonl_round_trips_through_replay_byte_for_byte(tmp_path):
    events = Generator("g", {"count": 5}).poll(0)
    events[0].data["bytes"] = b"\x00\xff\xfebinary"
    events[1].data["text"] = "héllo".encode()
    sink = JsonlSink("out", {"path": str(tmp_path / "cap.jsonl")})
    sink.open()
    sink.write(events)
    sink.close()
    assert oct(os.stat(tmp_path / "cap.jsonl").st_mode & 0o777) == "0o600"
    with open(tmp_path / "cap.jsonl", "a") as f:
        f.write("not json\n")
    r = Replay("r", {"path": str(tmp_path / "cap.jsonl")})
    r.open()
    back = []
    while not r.finished:
        back += r.poll(0.01)
    assert back == events
    assert r.stats == {"bad_lines": 1}


def test_jsonl_rotates(tmp_path):
    sink = JsonlSink("out", {"path": str(tmp_path / "o.jsonl"), "max_bytes": 2000, "max_files": 2})
    sink.open()
    for _ in range(10):  # as the runtime drives it: write, flush, then rotation if due
        sink.write(Generator("g", {"count": 5}).poll(0))
        sink.flush()
        sink.after_flush()
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["o.jsonl", "o.jsonl.1", "o.jsonl.2"]


def test_partitioning_is_stable_across_processes():
    # CRC-32 (IEEE) of the UTF-8 bytes: 0xCBF43926 is that CRC's published check value for "123456789".
    assert stable_hash("123456789") == 0xCBF4_3926
    assert stable_hash(b"123456789") == 0xCBF4_3926
    assert stable_hash("conn-1") == 0xCC84_0004
    assert stable_hash(None) == 0
    assert stable_hash(7) == 7 and stable_hash(-1) == 0x7FFF_FFFF  # ints are their own key, made non-negative
    # Python's own str hash is salted per process: another process, another salt, the same values.
    other = subprocess.run([sys.executable, "-c", "from agentsight.runtime.actor import stable_hash as h\n"
                            "print(h('conn-1'), h('123:7f00'))"],
                           env={**os.environ, "PYTHONHASHSEED": "random"}, capture_output=True, text=True, check=True)
    assert other.stdout.split() == [str(stable_hash("conn-1")), str(stable_hash("123:7f00"))]


def test_partition_key_reads_the_field_it_names():
    e = Event("ssl.data", 1, "ssl", pid=12, tid=13, comm="node", data={"conn": "123:7f00"})
    assert [partition_key(f)(e) for f in ("pid", "tid", "comm", "data.conn", "data.absent")] == \
        [12, 13, "node", "123:7f00", None]
    with pytest.raises(ValueError):
        partition_key("conn")


def test_link_state_survives_reopen(tmp_path):
    s = LinkState(tmp_path / "a.links")
    s.set("x->y", 5)
    s.set("y->z", 9)
    s.close()
    t = LinkState(tmp_path / "a.links")
    assert t.get("x->y") == 5 and t.get("y->z") == 9 and t.get("new") == 0
