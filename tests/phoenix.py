"""Arize Phoenix as the OTLP receiver of the export tests: started once per test session.

Phoenix (``arize-phoenix`` from PyPI, pinned in scripts/setup.sh) lives in its own virtualenv,
``/var/cache/agentsight-phoenix`` (``AGENTSIGHT_PHOENIX`` says otherwise): its dependencies
pin other versions of the anthropic and google-genai SDKs than the tests use. It runs
offline on loopback with a private working directory; OTLP/HTTP on ``/v1/traces``, and its
REST API lists what it stored (``GET /v1/projects/{project}/spans``). Each test sends to a
project of its own (the ``openinference.project.name`` resource attribute, set through
``OTEL_RESOURCE_ATTRIBUTES``), so tests sharing one Phoenix do not see each other's spans.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import wait_for

DEFAULT_VENV = "/var/cache/agentsight-phoenix"
START_TIMEOUT = 180.0  # about 40 s on a CI machine; a cold first start migrates its database


def phoenix_executable() -> Path | None:
    exe = Path(os.environ.get("AGENTSIGHT_PHOENIX") or DEFAULT_VENV) / "bin" / "phoenix"
    return exe if exe.exists() else None


def _die_with_us() -> None:
    """In the child: SIGTERM when the test process dies, however it dies (no Phoenix left behind)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Phoenix:
    """One `phoenix serve` process on loopback; :meth:`spans` reads a project back."""

    def __init__(self, exe: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="as-phoenix-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(self.port),
               "PHOENIX_GRPC_PORT": str(_free_port()), "PHOENIX_WORKING_DIR": str(self.dir),
               "PHOENIX_TELEMETRY_ENABLED": "false"}
        self.log = self.dir / "phoenix.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_us)
        try:
            wait_for(self._ready, START_TIMEOUT, interval=0.5, what="Phoenix to answer on /healthz")
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"phoenix exited: {self.log.read_text(errors='replace')[-2000:]}"
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored in ``project`` (none while the project does not exist yet)."""
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/projects/{project}/spans{query}", timeout=10) as r:
                    page = json.loads(r.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return []
                raise
            out += page["data"]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def project_env(project: str) -> dict[str, str]:
    """The environment that sends a run's spans to its own Phoenix project."""
    return {**os.environ, "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}"}
