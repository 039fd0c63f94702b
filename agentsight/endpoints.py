"""Every ZeroMQ endpoint of a pipeline, built in one place.

A run owns a private runtime directory (mode 0700) that holds its ipc sockets,
the supervisor's pid file and the per-actor link state::

    <run dir>/control      supervisor ROUTER  <- every actor's DEALER
    <run dir>/status       supervisor REP     <- `agentsight status`
    <run dir>/bus-in       bus XSUB (bind)    <- every publishing stage (XPUB, connect)
    <run dir>/bus          bus XPUB (bind)    <- `agentsight tap`, local subscribers
    <run dir>/in/<component>.<worker>   PULL input of one instance (bind); upstreams PUSH-connect
    <run dir>/state/<instance>.links     per-link sequence state (survives kill -9)

The bus may also listen on TCP (``[bus] listen``) for other machines, with CURVE.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir", "default_runtime_dir", "instance_id", "IPC_PATH_MAX"]

# sun_path is 108 bytes on Linux, including the terminating NUL.
IPC_PATH_MAX = 107


def default_runtime_dir(pipeline: str) -> Path:
    """Where a pipeline named ``pipeline`` keeps its sockets unless the config says otherwise."""
    if os.geteuid() == 0:
        base = Path("/run/agentsight")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "agentsight"
    else:
        base = Path(f"/tmp/agentsight-{os.geteuid()}")
    return base / pipeline


def instance_id(kind: str, name: str, worker: int = 0, workers: int = 1) -> str:
    """``sources/gen``, ``analyzers/http#1``: how an actor instance is named everywhere."""
    base = f"{kind}s/{name}"
    return f"{base}#{worker}" if workers > 1 else base


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class RunDir:
    path: Path

    def _ipc(self, *parts: str) -> str:
        p = self.path.joinpath(*parts)
        s = str(p)
        if len(s.encode()) > IPC_PATH_MAX:
            raise ValueError(f"runtime dir path too long for an ipc socket ({s}); set [supervisor] runtime_dir shorter")
        return "ipc://" + s

    @property
    def control(self) -> str:
        return self._ipc("control")

    @property
    def status(self) -> str:
        return self._ipc("status")

    @property
    def bus_in(self) -> str:
        return self._ipc("bus-in")

    @property
    def bus_out(self) -> str:
        return self._ipc("bus")

    def input(self, component: str, worker: int) -> str:
        return self._ipc("in", f"{_SAFE.sub('_', component)}.{worker}")

    def state_file(self, instance: str) -> Path:
        return self.path / "state" / (_SAFE.sub("_", instance) + ".links")

    @property
    def pid_file(self) -> Path:
        return self.path / "supervisor.pid"

    def create(self) -> None:
        """Make the directory tree, owner-only."""
        old = os.umask(0o077)
        try:
            for sub in (self.path, self.path / "in", self.path / "state", self.path / "specs"):
                sub.mkdir(parents=True, exist_ok=True)
                os.chmod(sub, 0o700)
        finally:
            os.umask(old)
