"""Commands as clients of a running collector: record, top, debug read from it over its socket.

One always-on pipeline per module (the shipped config/collector.toml: ssl and process
unfiltered, stdio following what clients ask for, the analysis chain, a store and the
clients sink), started once. Then:

- ``record -- CMD`` through it: the demo agent on the real SDKs; every LLM call the server
  answered is in the recording with its model and tokens, the tool processes are in the
  tree, nothing was lost, and the command ran as soon as the collector said it follows it;
- ``top`` as a user who is not root sees that user's agent and nothing of root's;
- ``debug`` prints the collector's events without a capture of its own.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentsight.demo.llm_server import GENERATE_APIS
from agentsight.recording.report import summary
from agentsight.recording.store import Store
from tests.bpf.test_llm_e2e import LlmServer
from tests.collectorconf import collector_config
from tests.conftest import AGENTSIGHT, wait_for

pytestmark = pytest.mark.bpf


class Collector:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.socket = d / "collector.sock"
        (d / "c.toml").write_text(collector_config(d))
        self.log = open(d / "collector.log", "wb")  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(d / "c.toml"), "--runtime-dir",
                                      str(d / "rt"), "--no-watch"], stdout=self.log, stderr=subprocess.STDOUT)
        self.env = {**os.environ, "AGENTSIGHT_COLLECTOR": str(self.socket)}
        deadline = time.monotonic() + 180
        while True:  # the supervisor's status reply says when every actor runs
            assert self.proc.poll() is None, (d / "collector.log").read_text()
            assert time.monotonic() < deadline, "the collector did not start"
            r = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(d / "rt"), "--json"],
                               capture_output=True, text=True)
            if r.returncode == 0 and all(i["state"] == "running" for i in json.loads(r.stdout)["instances"]):
                break
            time.sleep(0.2)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()
        return (self.dir / "collector.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    d = Path(tempfile_dir())
    c = Collector(d)
    yield c
    c.stop()
    shutil.rmtree(d, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="as-col-", dir="/tmp")
    os.chmod(d, 0o755)  # the socket inside is for every user
    return d


def test_record_through_the_collector(collector: Collector, tmp_path: Path) -> None:
    server = LlmServer(tmp_path)
    try:
        db = tmp_path / "rec.db"
        started = time.monotonic()
        r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), "--", sys.executable, "-m",
                            "agentsight.demo.agent", "--base-url", server.url, "--ca", str(server.ca), "--calls", "6",
                            "--workdir", str(tmp_path / "work"), "--quiet"],
                           capture_output=True, text=True, timeout=300, env=collector.env)
        wall = time.monotonic() - started
        entries = server.entries()
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert "through the collector" in r.stderr
    with Store(db, readonly=True) as s:
        calls = [s.llm_call(row["id"])["data"] for row in s.llm_calls(limit=1000)]
        report = summary(s)
        procs = s.processes()
    answered = {e["response_id"]: e for e in entries if e.get("api") in GENERATE_APIS and e.get("status") == 200}
    assert sorted(c["response_id"] for c in calls) == sorted(answered)
    for c in calls:
        e = answered[c["response_id"]]
        assert (c["model"], c["output_text"]) == (e["model"], e["answer_text"])
    assert report["events_lost"] == 0 and "no events lost" in r.stderr
    assert {p["filename"].rsplit("/", 1)[-1] for p in procs if p["filename"]} >= {"ls", "cat"}
    print(f"record through the collector: {len(calls)} calls, {wall:.2f} s in all")


class Lines:
    """A child's stdout lines, read on a thread, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stdout is not None
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self.thread.start()

    def wait(self, cond: Callable[[list[str]], bool], what: str, timeout: float = 60) -> None:
        wait_for(lambda: cond(self.lines) or self.proc.poll() is not None, timeout, what=what)
        assert cond(self.lines), f"{what}: {self.lines[-20:]}"

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        self.thread.join(timeout=5)
        return err


def started(proc: subprocess.Popen[str]) -> None:
    """Until the command says it reads the collector (it has its subscription confirmed)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "reading the running collector's events" in line or "agentsight top" in line or line == "", line


def test_top_as_a_user_sees_only_their_own_agent(collector: Collector, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile_dir())  # pytest's tmp_path is under a root-only directory
    server = LlmServer(shared)    # its CA must be readable by nobody's agent
    work = shared / "nobody-work"
    work.mkdir()
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    as_nobody = ["runuser", "-u", "nobody", "--"]
    env = {**collector.env, "HOME": str(work)}
    agent = [sys.executable, "-m", "agentsight.demo.agent", "--base-url", server.url, "--ca", str(server.ca),
             "--calls", "2", "--quiet", "--workdir"]
    try:
        top = Lines(subprocess.Popen([*as_nobody, *AGENTSIGHT, "top", "--plain", "--interval", "0.5"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work))
        top.wait(lambda ls: any("no agent sessions" in x or "agent" in x for x in ls), "top's first table")
        subprocess.run([*agent, str(tmp_path / "root-agent")], check=True, timeout=120)  # root's: not for nobody
        subprocess.run([*as_nobody, *agent, str(work / "agent")], env=env, check=True, timeout=120, cwd=work)

        def agent_rows(ls: list[str]) -> list[str]:
            table = "".join(ls).strip().split("\n\n")[-1] if ls else ""
            return [line for line in table.splitlines()[1:] if "llm-client" in line]

        # The demo agent's row: its model, then its 2 calls.
        top.wait(lambda ls: any(re.search(r"gpt-4o-mini\S*\s+2\s", r) for r in agent_rows(ls)),
                 "the user's agent with its 2 calls in top")
        err = top.stop()
    finally:
        server.close()
        shutil.rmtree(shared, ignore_errors=True)
    rows = agent_rows(top.lines)
    assert len(rows) == 1, (rows, err)  # root's agent (the same program) is not shown to nobody


def test_debug_reads_from_the_collector(collector: Collector, tmp_path: Path) -> None:
    proc = subprocess.Popen([*AGENTSIGHT, "debug", "process", "--json", "-c", "true"], env=collector.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started(proc)
    out = Lines(proc)
    subprocess.run(["true"], check=True)
    out.wait(lambda ls: any('"process.exec"' in x and '"comm":"true"' in x for x in ls), "the exec of true")
    err = out.stop()
    assert "event(s) shown" in err
    events = [json.loads(line) for line in out.lines if line.strip()]
    assert all(e["comm"].startswith("true") for e in events)
