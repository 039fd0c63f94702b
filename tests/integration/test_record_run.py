"""The runtime's public API for commands with real processes: a client waits for a pipeline on
its status reply; a record run's whole lifecycle (held command, capture, exit, summary) without eBPF."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agentsight.pipeline.config import loads
from agentsight.recording.record import RecordRun
from agentsight.recording.store import Store
from agentsight.runtime.endpoints import RunDir
from agentsight.runtime.status import ask, wait_running
from tests.conftest import AGENTSIGHT


def test_a_client_waits_for_running_on_the_status_reply(workdir: Path) -> None:
    run_dir = workdir / "run"
    cfg = workdir / "p.toml"
    cfg.write_text(f'name = "w"\n[sources.gen]\ntype = "generator"\nrate = 100\n'
                   f'[sinks.out]\ntype = "null"\ninputs = ["gen"]\n[supervisor]\nruntime_dir = "{run_dir}"\n')
    proc = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # Asked before the supervisor even made its runtime dir: the request waits for it.
        status = wait_running(RunDir(run_dir).status, 60, alive=lambda: proc.poll() is None)
        assert status.running and status.pipeline == "w" and status.pid == proc.pid
        assert {(a.id, a.kind, a.name, a.state) for a in status.instances} == {
            ("bus", "bus", "bus", "running"), ("sources/gen", "source", "gen", "running"),
            ("sinks/out", "sink", "out", "running")}
        assert ask(RunDir(run_dir).status).phase == "running"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_a_record_run_holds_the_command_until_the_capture_runs(workdir: Path) -> None:
    db = workdir / "rec.db"
    marks = workdir / "marks"
    spec = loads(f'name = "rec"\n[sources.gen]\ntype = "generator"\nrate = 200\n'
                 f'[sinks.db]\ntype = "sqlite"\ninputs = ["gen"]\npath = "{db}"\n'
                 f'meta = {{ command = "sh -c ...", recorder = "test" }}\n')
    cmd = ["sh", "-c", f"echo ran >> {marks}; exit 3"]
    said: list[str] = []
    with RecordRun(db, cmd) as rec:
        assert rec.held is not None and rec.target == rec.held.pid
        assert rec.described == "sh -c 'echo ran >> " + str(marks) + "; exit 3'"
        assert not marks.exists()  # held: the capture is not up yet

        def started() -> None:
            said.append("started")
            assert os.path.exists(f"/proc/{rec.target}")

        result = rec.run(spec, workdir / "run", on_started=started)
    assert said == ["started"] and marks.read_text() == "ran\n"
    assert result.started and result.exit_code == 3
    assert result.pipeline is not None and result.pipeline.code == 0 and result.pipeline.name == "rec"
    assert result.pipeline.status.phase == "stopped"
    assert {a.id for a in result.pipeline.status.instances} >= {"sources/gen", "sinks/db"}
    assert "exit code 3" in result.summary
    with Store(db, readonly=True) as store:
        meta = store.meta()
    assert meta["exit_code"] == "3" and meta["events_lost"] == "0"
    assert int(meta["started_ns"]) < int(meta["ended_ns"])


def test_a_record_run_whose_capture_cannot_start_never_runs_the_command(workdir: Path) -> None:
    marks = workdir / "marks"
    # A sink that cannot open its file (a file where its directory should be): a fatal start
    # error, the pipeline does not come up.
    (workdir / "file").write_text("")
    spec = loads(f'name = "rec"\n[sources.gen]\ntype = "generator"\n'
                 f'[sinks.db]\ntype = "sqlite"\ninputs = ["gen"]\npath = "{workdir}/file/x.db"\n')
    with RecordRun(workdir / "x.db", ["sh", "-c", f"touch {marks}"]) as rec:
        result = rec.run(spec, workdir / "run", on_started=lambda: None)
    assert not result.started and result.exit_code == 125 and not marks.exists()
    assert result.pipeline is not None and result.pipeline.code == 2
