"""Shared test helpers: short private run dirs, pipelines run as real processes, polling waits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENTSIGHT = [sys.executable, "-m", "agentsight"]
# The web UI's generated token goes to a private file for the test run, not the user's ~/.config.
os.environ.setdefault("AGENTSIGHT_TOKEN_FILE", str(Path(tempfile.mkdtemp(prefix="as-tok-")) / "web-token"))


def wait_for(cond: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private directory (ipc socket paths must stay under 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="as-", dir="/tmp"))
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Pipeline:
    """`agentsight run` of a config file, as a real process tree."""

    def __init__(self, workdir: Path, toml: str, name: str = "t") -> None:
        self.dir = workdir
        self.config = workdir / "pipeline.toml"
        self.run_dir = workdir / "run"
        body = toml if "runtime_dir" in toml else toml + f'\n[supervisor]\nruntime_dir = "{self.run_dir}"\n'
        if "name =" not in body.split("[", 1)[0]:
            body = f'name = "{name}"\n' + body
        self.config.write_text(body)
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_path = workdir / "stderr.log"
        self.stdout_path = workdir / "stdout.log"

    def start(self, *extra: str, wait_ready: bool = True) -> Pipeline:
        self._err = open(self.stderr_path, "w")
        self._out = open(self.stdout_path, "w")
        self.proc = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(self.config), *extra],
                                     stdout=self._out, stderr=self._err, text=True, cwd=self.dir)
        if wait_ready:
            wait_for(lambda: "running:" in self.stderr() or self.proc.poll() is not None, 60, what="pipeline start")
            assert self.proc.poll() is None or "running:" in self.stderr(), self.stderr()
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def status(self) -> dict[str, Any]:
        out = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(self.run_dir), "--json"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def instance(self, iid: str) -> dict[str, Any]:
        return next(r for r in self.status()["instances"] if r["id"] == iid)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._err.close()
        self._out.close()
        return code

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def lost_reported(self) -> int:
        """'events lost: N' from the summary printed at exit (0 for 'no events lost')."""
        for line in self.stderr().splitlines():
            if line.startswith("events lost:"):
                return int(line.split(":")[1])
        assert "no events lost" in self.stderr(), self.stderr()
        return 0


@pytest.fixture
def pipeline(workdir: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(toml: str, name: str = "t") -> Pipeline:
        p = Pipeline(workdir, toml, name)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def actor_processes(supervisor_pid: int) -> list[int]:
    """Pids of the processes a supervisor started (named `agentsight: kind/name`; not the zygote
    they are forked from, which is no actor)."""
    import psutil

    try:
        kids = psutil.Process(supervisor_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if k.cmdline()[:1] != ["agentsight: zygote"]:
                out.append(k.pid)
        except psutil.Error:
            pass
    return out


def alive_titled(pids: list[int]) -> list[int]:
    """Those of ``pids`` still alive as agentsight actors (not reused by something else)."""
    out = []
    for pid in pids:
        try:
            if b"agentsight:" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            pass
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines file; a line still being written is left out."""
    text = path.read_text() if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def status_now(run_dir: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The supervisor's status report, asked on its socket directly (no CLI process start in between)."""
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{run_dir}/status")
        sock.send(b"status")
        if not sock.poll(int(timeout * 1000)):
            raise AssertionError("the supervisor did not answer a status request")
        return json.loads(sock.recv())
    finally:
        sock.close()


def every_actor_running(run_dir: Path) -> bool:
    """The supervisor's status reply says every actor runs (False while it has no status socket yet)."""
    if not (run_dir / "status").exists():
        return False
    rows = status_now(run_dir)["instances"]
    return bool(rows) and all(r["state"] == "running" for r in rows)


def summary_rows(stderr: str) -> dict[str, dict[str, Any]]:
    """The exit summary's per-actor table: id -> state, restarts, received, sent, dropped, errors."""
    rows: dict[str, dict[str, Any]] = {}
    lines = stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("actor "))
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) != 7 or not parts[2].isdigit():
            break
        rows[parts[0]] = {"state": parts[1], **dict(zip(("restarts", "received", "sent", "dropped", "errors"),
                                                         map(int, parts[2:]), strict=True))}
    return rows


@pytest.fixture(scope="session")
def phoenix() -> Iterator[Any]:
    """Arize Phoenix, the OTLP receiver of the export tests, started once for the whole session (tests/phoenix.py)."""
    from tests.phoenix import Phoenix, phoenix_executable

    exe = phoenix_executable()
    if exe is None:
        pytest.skip("arize-phoenix is not installed: sudo scripts/setup.sh --phoenix")
    server = Phoenix(exe)
    yield server
    server.close()
