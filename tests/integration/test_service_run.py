"""`agentsight service run` is `agentsight run` of the collector's pipeline: status finds it, SIGTERM ends it cleanly.

No root: the pipeline is the collector's shape (a sqlite store with retention, the web UI serving
it) fed by a generator; tests/bpf/test_service_collector.py runs the shipped pipeline itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentsight.recording.store import Store
from tests.conftest import wait_for

AGENTSIGHT = [sys.executable, "-m", "agentsight"]


def service_status(run_dir: Path) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([*AGENTSIGHT, "service", "status", "--json", "--runtime-dir", str(run_dir)],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, json.loads(r.stdout)


def test_service_run_answers_status_and_stops_cleanly_on_sigterm(workdir):
    config = workdir / "collector.toml"
    config.write_text(f"""
name = "collector"

[sources.gen]
type = "generator"
rate = 2000

[sinks.store]
type = "sqlite"
inputs = ["gen"]
path = "{workdir / 'from-config.db'}"
max_mb = 64
max_age_h = 24

[sinks.web]
type = "web"
inputs = ["gen"]
port = 0
db = "{workdir / 'from-config.db'}"
write = false
""")
    db = workdir / "store.db"  # --db moves the store, and the web UI with it
    run_dir = workdir / "run"
    err = open(workdir / "stderr.log", "w")
    proc = subprocess.Popen([*AGENTSIGHT, "service", "run", "--config", str(config), "--db", str(db),
                             "--runtime-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        def running() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError((workdir / "stderr.log").read_text())
            code, out = service_status(run_dir)
            c = out["collector"]
            return out if code == 0 and all(i["state"] == "running" for i in c["instances"]) else None

        out = wait_for(running, 60, interval=0.2, what="the collector's status answer")
        c = out["collector"]
        assert c["running"] is True and c["pid"] == proc.pid and c["pipeline"] == "collector"
        assert c["uptime_s"] >= 0 and c["runtime_dir"] == str(run_dir)
        assert c["config"] == str(config) and c["store"] == str(db)
        assert c["max_mb"] == 64 and c["max_age_h"] == 24
        assert {i["id"] for i in c["instances"]} == {"bus", "sources/gen", "sinks/store", "sinks/web"}
        wait_for(lambda: db.exists() and Store(db, readonly=True).count_events() > 0, 30,
                 what="events in the --db store")
        assert not (workdir / "from-config.db").exists()
        # The readable form says the same.
        r = subprocess.run([*AGENTSIGHT, "service", "status", "--runtime-dir", str(run_dir)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert f"collector: running, pid {proc.pid}" in r.stdout and "4 running actors" in r.stdout
        assert f"store: {db}, " in r.stdout and "keeps at most 64 MiB and 1 day" in r.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    log = (workdir / "stderr.log").read_text()
    assert "collector running: config" in log and "no events lost" in log
    assert not run_dir.exists()  # the supervisor removed its runtime dir
    code, out = service_status(run_dir)
    assert code == 3 and out["collector"]["running"] is False
