"""`agentsight top` on its own: it starts its capture, sees an SDK agent's calls and tokens."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentsight.runtime.endpoints import RunDir
from agentsight.runtime.status import wait_running
from tests.bpf.test_llm_e2e import LlmServer, expected_usage, server  # noqa: F401  (fixture)
from tests.conftest import AGENTSIGHT, wait_for

pytestmark = pytest.mark.bpf


def test_top_once_shows_an_agent_it_watched(workdir: Path, server: LlmServer) -> None:  # noqa: F811
    before = set(glob.glob("/tmp/agentsight-top-*/"))
    top = subprocess.Popen([*AGENTSIGHT, "top", "--once", "--plain", "--interval", "40", "--sort", "calls"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # top's own capture: its runtime dir, then its status reply saying it runs.
        (made,) = wait_for(lambda: set(glob.glob("/tmp/agentsight-top-*/")) - before, 30, what="top's capture")
        wait_running(RunDir(Path(made) / "run").status, 60, alive=lambda: top.poll() is None)
        started = time.monotonic()
        agent = subprocess.run([sys.executable, "-m", "agentsight.demo.agent", "--base-url", server.url, "--ca",
                                str(server.ca), "--calls", "6", "--apis", "chat-stream,messages-stream",
                                "--workdir", str(workdir / "w"), "--quiet"], capture_output=True, text=True,
                               timeout=60)
        assert agent.returncode == 0, agent.stderr
        assert time.monotonic() - started < 30, "the agent ran too long for top's window"
        out, err = top.communicate(timeout=90)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    assert top.returncode == 0, err
    entries = server.entries()
    tokens_in = sum(expected_usage(e["api"], e["usage"])["input_tokens"] for e in entries)
    tokens_out = sum(expected_usage(e["api"], e["usage"])["output_tokens"] for e in entries)
    rows = [line for line in out.splitlines() if line.startswith("llm-client")]
    assert len(rows) == 1, out
    cols = rows[0].split()
    assert f"{tokens_in:,}" in cols and f"{tokens_out:,}" in cols, (rows[0], tokens_in, tokens_out)
    assert str(len(entries)) in cols
    # The capture top started (a `debug trace --name top-<pid>` and its actors) is gone with it.
    name = f"top-{top.pid}".encode()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and name in _cmdline(p)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
