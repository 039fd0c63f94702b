"""Collapsing repeated opens and the per-pid rate limit (OpenCollapser)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight.actors.sources.process import OpenCollapser
from agentsight.event import Event

MS = 1_000_000


def opened(ts_ms: int, pid: int = 1, path: str = "/etc/hosts", ret: int = 3, flags: int = 0) -> Event:
    return Event("file.open", ts_ms * MS, "src", pid, pid, "c",
                 {"path": path, "flags": flags, "ret": ret, "count": 1})


def test_repeats_collapse_into_one_event_after_the_window() -> None:
    c = OpenCollapser(window_ns=1000 * MS, rate=100)
    first = c.add(opened(0))
    assert [e.data["count"] for e in first] == [1]
    for t in range(1, 10):
        assert c.add(opened(t)) == []
    assert c.expire(999 * MS) == []
    (summary,) = c.expire(1000 * MS)
    assert summary.data["count"] == 9 and summary.data["repeat"] is True
    assert summary.ts_ns == 9 * MS and summary.data["first_ns"] == 0
    assert c.collapsed == 9
    # The window is over: the next open is reported again.
    assert [e.data["count"] for e in c.add(opened(1500))] == [1]


def test_different_pid_path_flags_or_outcome_are_not_merged() -> None:
    c = OpenCollapser(window_ns=1000 * MS, rate=100)
    out = [c.add(e) for e in (opened(0), opened(1, pid=2), opened(2, path="/x"), opened(3, flags=1),
                              opened(4, ret=-2))]
    assert all(len(o) == 1 for o in out)


def test_forget_flushes_a_pid() -> None:
    c = OpenCollapser(window_ns=10_000 * MS, rate=100)
    c.add(opened(0, pid=1))
    c.add(opened(1, pid=1))
    c.add(opened(0, pid=2))
    c.add(opened(1, pid=2))
    (summary,) = c.forget(1)
    assert summary.pid == 1 and summary.data["count"] == 1
    assert [e.pid for e in c.drain()] == [2]


def test_rate_limit_drops_and_counts() -> None:
    c = OpenCollapser(window_ns=0, rate=5)
    emitted = [e for i in range(20) for e in c.add(opened(0, path=f"/f{i}"))]
    assert len(emitted) == 5 and c.dropped == 15
    # Tokens come back with time: 5 per second.
    assert len(c.add(opened(1000, path="/later"))) == 1


def test_key_cap_emits_oldest() -> None:
    c = OpenCollapser(window_ns=10_000 * MS, rate=1000, max_keys=2)
    c.add(opened(0, path="/a"))
    c.add(opened(1, path="/a"))
    c.add(opened(2, path="/b"))
    out = c.add(opened(3, path="/c"))
    assert [(e.data["path"], e.data["count"]) for e in out] == [("/a", 1), ("/c", 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["/a", "/b", "/c"]), st.integers(0, 50)),
                max_size=200),
       st.integers(0, 20), st.integers(1, 10))
def test_counts_plus_dropped_equal_opens(steps: list[tuple[int, str, int]], window_ms: int, rate: int) -> None:
    c = OpenCollapser(window_ns=window_ms * MS, rate=rate, max_keys=4)
    t = 0
    total = 0
    for pid, path, dt in steps:
        t += dt
        total += sum(e.data["count"] for e in c.add(opened(t, pid=pid, path=path)))
    total += sum(e.data["count"] for e in c.drain())
    assert total + c.dropped == len(steps)
