"""A command started held at a gate: its process exists (a capture can filter on its pid and
look at it) but it runs nothing until :meth:`HeldCommand.release`; closed unsent, it exits 125.

Used by `record -- CMD`, standalone or through the collector: the sources follow the pid first,
then the command runs, so its whole tree is seen from its first instruction.
"""

from __future__ import annotations

import os
import pwd
import select
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Owner", "HeldCommand", "invoking_user", "exit_code"]

CANCELLED = 125    # the gate closed unsent: the capture never started
CANNOT_RUN = 126   # exec failed (said on stderr)
STATUS_LOST = 255  # another process collected its exit status (said on stderr): not reported as success


@dataclass(frozen=True)
class Owner:
    """Who a command runs as when agentsight runs under sudo: the user behind it."""

    user: int
    group: int
    extra_groups: tuple[int, ...] = ()
    env: Mapping[str, str] | None = None

    def chown(self, *paths: os.PathLike[str] | str) -> None:
        """Hand files made for this user (the recording and its -wal/-shm) to them."""
        for p in paths:
            if os.path.exists(p):
                os.chown(p, self.user, self.group)


def invoking_user() -> Owner | None:
    """The user who ran sudo (None when not root under sudo, or sudo from root)."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid or int(uid) == 0:
        return None
    try:
        pw = pwd.getpwuid(int(uid))
    except KeyError:
        return Owner(int(uid), int(gid))
    env = dict(os.environ)
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    return Owner(int(uid), int(gid), tuple(os.getgrouplist(pw.pw_name, int(gid))), env)


def exit_code(status: int) -> int:
    """A wait status as a shell says it: the exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


@dataclass
class HeldCommand:
    """``cmd`` forked and held before its first instruction (``start``), run by ``release``."""

    cmd: list[str]
    owner: Owner | None = None
    pid: int = 0
    returncode: int | None = None
    _gate: int = field(default=-1, repr=False)

    def start(self) -> int:
        """Fork the held process; returns its pid. Forked, not a new interpreter: fast."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only async-signal-safe-ish work until exec, and never return
            try:
                os.close(w)
                go = os.read(r, 1)
                os.close(r)
                if not go:
                    os._exit(CANCELLED)
                for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # as subprocess does: Python ignores them
                    signal.signal(sig, signal.SIG_DFL)
                owner = self.owner
                if owner is not None:
                    os.setgroups(list(owner.extra_groups) or [owner.group])
                    os.setgid(owner.group)
                    os.setuid(owner.user)
                env = owner.env if owner is not None and owner.env is not None else os.environ
                os.execvpe(self.cmd[0], self.cmd, env)
            except OSError as exc:
                os.write(2, f"agentsight: cannot run {self.cmd[0]}: {exc.strerror}\n".encode())
                os._exit(CANNOT_RUN)
            finally:
                os._exit(127)
        os.close(r)
        self.pid, self._gate = pid, w
        return pid

    @property
    def held(self) -> bool:
        return self._gate >= 0

    def release(self) -> None:
        """Let the command run (once)."""
        if self._gate >= 0:
            os.write(self._gate, b"g")
            self._close_gate()

    def cancel(self) -> None:
        """Close the gate unsent if it is still closed: the command exits without running."""
        self._close_gate()

    def _close_gate(self) -> None:
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1

    def poll(self) -> int | None:
        """The exit code once the command exited (reaped), else None."""
        if self.returncode is None and self.pid:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self._status_lost()
            if pid:
                self.returncode = exit_code(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit (at most ``timeout`` seconds); the exit code, or None if it still runs."""
        if self.poll() is not None or not self.pid:
            return self.returncode
        if timeout is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                return self._status_lost()
            self.returncode = exit_code(status)
            return self.returncode
        fd = os.pidfd_open(self.pid)
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        return self.poll()

    def _status_lost(self) -> int:
        """Its exit status went to another waiter: say so, and do not pass for a success."""
        os.write(2, f"agentsight: the exit status of {self.cmd[0]} (pid {self.pid}) was collected by another "
                    f"process; reporting {STATUS_LOST}\n".encode())
        self.returncode = STATUS_LOST
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
