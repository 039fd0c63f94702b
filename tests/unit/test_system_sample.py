"""The system source against real processes (no root), and its threshold state machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from agentsight.actors.sources.system import SystemSource, Thresholds
from agentsight.event import Event


def test_thresholds_fire_once_and_resolve() -> None:
    t = Thresholds({"cpu_percent": 50.0, "rss_mb": 0.0})
    assert t.check({"cpu_percent": 10.0, "rss_mb": 10**6}) == []  # rss threshold off
    (fired,) = t.check({"cpu_percent": 80.0})
    assert fired == {"metric": "cpu_percent", "value": 80.0, "threshold": 50.0, "state": "firing"}
    assert t.check({"cpu_percent": 90.0}) == [] and t.firing == {"cpu_percent"}
    (resolved,) = t.check({"cpu_percent": 50.0})
    assert resolved["state"] == "resolved" and t.firing == set()


Pred = Callable[[list[Event]], bool]


def poll_until(src: SystemSource, pred: Pred, timeout: float = 10.0) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.extend(src.poll(0.1))
        if pred(events):
            break
    return events


def alert(metric: str, state: str) -> Pred:
    return lambda evs: any(e.topic == "system.alert" and e.data["metric"] == metric
                           and e.data["state"] == state for e in evs)


def test_tree_cpu_alert_follows_a_busy_child() -> None:
    src = SystemSource("sys", {"pid": os.getpid(), "interval": 0.2, "cpu_threshold": 30.0})
    src.open()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        events = poll_until(src, alert("cpu_percent", "firing"))
        samples = [e for e in events if e.topic == "system.sample"]
        assert samples and samples[-1].data["alerts"] == ["cpu_percent"]
        assert samples[-1].data["children"] >= 1 and samples[-1].data["cpu_percent"] > 30.0
        assert samples[-1].data["rss_bytes"] >= psutil.Process().memory_info().rss
    finally:
        busy.kill()
        busy.wait()
    assert alert("cpu_percent", "resolved")(poll_until(src, alert("cpu_percent", "resolved")))


def test_rss_alert() -> None:
    base_mb = psutil.Process().memory_info().rss / 2**20
    src = SystemSource("sys", {"pid": os.getpid(), "interval": 0.2, "rss_threshold_mb": base_mb + 100})
    src.open()
    hog = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        events = poll_until(src, alert("rss_mb", "firing"))
        assert alert("rss_mb", "firing")(events)
    finally:
        hog.kill()
        hog.wait()


def test_finishes_when_the_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])  # a process that ends by itself
    src = SystemSource("sys", {"pid": child.pid, "interval": 0.1})
    src.open()
    first = poll_until(src, lambda evs: bool(evs))
    assert first[0].topic == "system.sample" and first[0].pid == child.pid
    child.wait()
    poll_until(src, lambda evs: src.finished, timeout=3.0)
    assert src.finished


def test_system_wide_sample() -> None:
    src = SystemSource("sys", {"interval": 0.1})
    src.open()
    (sample,) = poll_until(src, lambda evs: bool(evs))
    d = sample.data
    assert d["scope"] == "system" and d["cpu_count"] == psutil.cpu_count()
    assert 0 < d["mem_used_bytes"] < d["mem_total_bytes"] and d["processes"] > 1


def test_tree_samples_name_their_root_process():
    src = SystemSource("s", {"pid": os.getpid(), "interval": 0.1})
    (sample,) = [e for e in src.sample() if e.topic == "system.sample"]
    assert (sample.pid, sample.comm) == (os.getpid(), psutil.Process().name())
