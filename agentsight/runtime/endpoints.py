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

The default place is ``/run/agentsight/<pipeline>`` for root, else
``$XDG_RUNTIME_DIR/agentsight/<pipeline>``, else ``/tmp/agentsight-<uid>/<pipeline>``.
Whoever runs or attaches (``tap``, ``status``) checks that the directory is the
user's own and private (not a symlink, no group or other access): in ``/tmp``
another user could have made it first and planted a bus there.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir", "RunDirError", "default_runtime_dir", "instance_id", "private_dir", "IPC_PATH_MAX"]


class RunDirError(RuntimeError):
    """A runtime directory that cannot be used (someone else's, open to others, unreadable): one line."""


def private_dir(path: Path, create: bool = False) -> Path:
    """Check (or make, mode 0700) a directory that only the current user can use; RunDirError if it is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        return private_dir(path)
    except PermissionError:
        raise RunDirError(f"cannot read {path}: permission denied (it belongs to another user; "
                          "run as that user, for example with sudo)") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"refusing {path}: not a directory (a symlink or a file); remove it or choose "
                          "another runtime dir")
    if st.st_uid != os.geteuid():
        raise RunDirError(f"refusing {path}: it belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
                          "someone else made it: remove it, or set XDG_RUNTIME_DIR or --runtime-dir")
    if st.st_mode & 0o077:
        raise RunDirError(f"refusing {path}: mode {stat.S_IMODE(st.st_mode):o} lets others in (needs 700); "
                          f"chmod 700 {path} if you made it")
    return path

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
    private_dir(base)  # checked when it exists; made private by whoever runs a pipeline there
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
        """Make the directory tree, owner-only; RunDirError if a directory in it is not ours and private."""
        old = os.umask(0o077)
        try:
            if self.path.parent.name == "agentsight" or self.path.parent.name.startswith("agentsight-"):
                private_dir(self.path.parent, create=True)  # the default base, shared by the pipelines
            for sub in (self.path, self.path / "in", self.path / "state", self.path / "specs"):
                private_dir(sub, create=True)
        finally:
            os.umask(old)

    def check(self) -> None:
        """Before attaching (tap, status): the directory must be ours and private (RunDirError if not)."""
        if self.path.parent.name == "agentsight" or self.path.parent.name.startswith("agentsight-"):
            private_dir(self.path.parent)
        private_dir(self.path)
