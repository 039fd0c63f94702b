"""Retention in a running pipeline: the sqlite sink keeps its recording under max_mb and says what it deleted."""

from __future__ import annotations

from agentsight.recording.store import Store
from tests.conftest import wait_for

MiB = 1 << 20


def test_a_running_sink_trims_its_recording_and_counts_it(pipeline, workdir):
    db = workdir / "rec.db"
    p = pipeline(f"""
[sources.gen]
type = "generator"
rate = 4000
size = 400

[sinks.rec]
type = "sqlite"
inputs = ["gen"]
path = "{db}"
max_mb = 0.5
retention_interval = 0.2
""").start()

    def deleted() -> int:
        return int(p.instance("sinks/rec")["stats"].get("retention_deleted", 0))

    wait_for(lambda: deleted() >= 8000, 60, interval=0.2, what="retention_deleted in the sink's stats")
    with Store(db, readonly=True) as s:
        # Between two checks (0.2 s) at most ~800 events of ~0.6 KiB arrive over the cap.
        assert s.used_bytes() <= 0.5 * MiB + 800 * 1024
        first = s.events(limit=1)[0]["data"]["i"]
        assert first > 0 and s.count_events() < first  # the oldest went, what stayed is the newest
    assert p.stop() == 0, p.stderr()
    assert p.lost_reported() == 0
    with Store(db, readonly=True) as s:
        ids = [e["data"]["i"] for e in s.events(limit=1 << 30)]
        assert ids == sorted(ids) and ids[-1] - ids[0] + 1 == len(ids)  # one contiguous run of the newest
