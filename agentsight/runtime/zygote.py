"""The zygote: a process that has imported what every actor needs, forked once per actor.

Every actor process is a Python interpreter with pyzmq, msgpack and the actor runtime
imported: ~13 MB each, most of it the heap those imports build. Forked from one process
that imported them once, the actors share those pages copy-on-write, and PSS divides them
among the processes that map them instead of paying them once per actor.

Started by the supervisor (:class:`Zygote`) as ``python -m agentsight.runtime.zygote FD``;
FD is its end of a ``SOCK_SEQPACKET`` socketpair, the only socket it has. It binds and
connects nothing, and has no zmq context and no thread: a fork of it starts clean.

Theory of operation. The zygote imports the common modules, freezes the garbage
collector (what is imported now is never collected: the collector would otherwise write
to those pages and unshare them) and says ``ready``. Each request is a JSON message with
three file descriptors (the child's stdin, stdout, stderr, passed as ``SCM_RIGHTS``):
``{"spec": PATH, "env": {...}, "cwd": DIR, "umask": N}``. The zygote forks a child,
which forks the actor and exits; the actor, an orphan now, is adopted by the supervisor
(a child subreaper), so the supervisor waits for it as for any child of its own and reads
its exit code. The zygote answers ``{"pid": PID}`` once the intermediate child is gone,
that is once the actor is the supervisor's. The actor then does what
``python -m agentsight.runtime.actor SPEC`` does: its own session, its stdio, the
supervisor's environment and directory, and death with the supervisor (PDEATHSIG, set
once it has been adopted).

The zygote dies with the supervisor (PDEATHSIG) and exits when the supervisor closes its
end. A zygote that is gone (killed) only costs the next spawn a ``Popen``: the supervisor
starts a fresh one for the spawns after it (see :meth:`Zygote.spawn`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agentsight.kernel import procfs

__all__ = ["Zygote", "ForkedActor", "ActorProcess", "PRELOAD"]

# What every actor imports: forked from a process that has them, their pages are shared.
PRELOAD = ("zmq", "msgpack", "agentsight.event", "agentsight.wire", "agentsight.runtime.actor",
           "agentsight.runtime.bus", "setproctitle", "logging", "json")
READY_TIMEOUT_S = 10.0   # the zygote's imports, on a loaded 2-core machine
ANSWER_TIMEOUT_S = 5.0   # one fork
MAX_MESSAGE = 1 << 20
STATUS_LOST = 255  # the return code of an actor whose exit status someone else collected
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except OSError:
        return False


# ------------------------------------------------------------------ the supervisor's side
class ForkedActor:
    """An actor forked by the zygote and adopted by the supervisor: the part of
    :class:`subprocess.Popen` the supervisor uses (``pid``, ``returncode``, ``poll``, ``wait``)."""

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self.returncode: int | Any = None  # as typeshed types Popen's: None until it has exited
        self.status_lost = False  # reaped by someone else: how it ended is not known
        self._zygote = zygote

    def poll(self) -> int | None:
        if self.returncode is None:
            self._zygote.reap_orphans()
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                # Taken as a crash (restarted, and said), never as a clean end: a source that
                # "exits 0" is finished and would not be started again.
                self.status_lost = True
                self.returncode = STATUS_LOST
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"actor {self.pid}", timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode


ActorProcess = ForkedActor | subprocess.Popen[bytes]


class Zygote:
    """The supervisor's handle on its zygote: spawns actors through it, or says it cannot.

    :meth:`spawn` returns None when there is no working zygote (it could not start, or it
    was killed): the caller starts that actor with ``Popen`` and the zygote is started again
    in the background for the next spawns.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.ready = False
        self.subreaper = False
        self.started_at = 0.0
        self._last_reap = 0.0

    # -- lifecycle
    def start(self) -> None:
        """Start a zygote process (does not wait for it: :meth:`spawn` does)."""
        self.close()
        if not self.subreaper:
            self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if not self.subreaper:
            return  # the actors would not be ours to wait for: no zygote
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentsight.runtime.zygote", str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()], start_new_session=True)
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self.sock = ours
        self.ready = False
        self.started_at = time.monotonic()

    def close(self) -> None:
        """Stop the zygote (the actors it forked are not its: they go on)."""
        if self.sock is not None:
            self.sock.close()   # the zygote exits on EOF
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self.ready = False

    def shutdown(self) -> None:
        """Close the zygote and stop being a subreaper (the supervisor is done)."""
        self.close()
        self.reap_orphans(force=True)
        if self.subreaper:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)
            self.subreaper = False

    def _gone(self) -> None:
        """The zygote died or misbehaved: drop it, start another for the next spawns."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.start()

    # -- spawning
    def spawn_actor(self, spec_path: Path, env: dict[str, str]) -> ActorProcess:
        """An actor process for ``spec_path``: forked by the zygote, else started with Popen."""
        forked = self.spawn(spec_path, env)
        if forked is not None:
            return forked
        return subprocess.Popen([sys.executable, "-m", "agentsight.runtime.actor", str(spec_path)],
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def spawn(self, spec_path: Path, env: dict[str, str]) -> ForkedActor | None:
        """Fork an actor for ``spec_path``; None when the zygote cannot (use Popen)."""
        if self.sock is None:
            self.start()
            if self.sock is None:
                return None
        if not self.ready and not self._await_ready():
            return None
        umask = os.umask(0o022)
        os.umask(umask)
        request = json.dumps({"spec": str(spec_path), "env": env, "cwd": os.getcwd(), "umask": umask}).encode()
        with open(os.devnull, "rb") as devnull:
            try:
                assert self.sock is not None
                # stdin from /dev/null, stdout and stderr ours (what Popen gives an actor)
                socket.send_fds(self.sock, [request], [devnull.fileno(), 1, 2])
                answer = self._recv(ANSWER_TIMEOUT_S)
            except OSError:
                answer = None
        if answer is None or not isinstance(answer.get("pid"), int):
            self._gone()
            return None
        return ForkedActor(answer["pid"], self)

    def _await_ready(self) -> bool:
        left = READY_TIMEOUT_S - (time.monotonic() - self.started_at)
        answer = self._recv(max(0.0, left))
        if answer is None or not answer.get("ready"):
            self._gone()  # the next spawn tries the new one
            return False
        self.ready = True
        return True

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        assert self.sock is not None
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MAX_MESSAGE)
        except OSError:  # timeout, reset
            return None
        if not data:
            return None
        try:
            answer: dict[str, Any] = json.loads(data)
        except ValueError:
            return None
        return answer

    # -- orphans
    def reap_orphans(self, force: bool = False) -> None:
        """Wait for processes we adopted as a subreaper that are not actors (say a helper of an
        actor killed with -9): no one else will, and each would stay a zombie.

        An adopted orphan is told from a child of our own by its session: a child of ours is
        in our session or leads its own; an orphan stays in the session of the actor it
        came from. Checked at most once a second."""
        now = time.monotonic()
        if not self.subreaper or (not force and now - self._last_reap < 1.0):
            return
        self._last_reap = now
        me = os.getpid()
        ours = os.getsid(0)
        for pid in procfs.children(me):
            stat = procfs.read_stat(pid)
            if stat is None or stat.state != "Z":
                continue
            if stat.ppid == me and stat.session not in (pid, ours):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


# --------------------------------------------------------------------- the zygote's side
def _serve(sock: socket.socket, supervisor: int) -> None:
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
        except OSError:
            return
        if not data:
            return  # the supervisor closed its end
        try:
            request = json.loads(data)
            pid = _fork(sock, request, fds, supervisor)
            answer: dict[str, Any] = {"pid": pid}
        except (OSError, ValueError, KeyError) as exc:
            answer = {"error": str(exc)}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(answer).encode())


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int], supervisor: int) -> int:
    """Fork the actor through an intermediate child (so that it is adopted); its pid."""
    if len(fds) != 3:
        raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate child: fork the actor, say its pid, exit
        try:
            os.close(r)
            actor = os.fork()
            if actor == 0:
                os.close(w)
                _become_actor(sock, request, fds, supervisor)  # never returns
            os.write(w, str(actor).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        text = pipe.read()
    os.waitpid(middle, 0)  # the actor is the supervisor's now
    if not text:
        raise OSError("the actor could not be forked")
    return int(text)


def _become_actor(sock: socket.socket, request: dict[str, Any], fds: list[int], supervisor: int) -> None:
    """In the forked actor: become what ``python -m agentsight.runtime.actor SPEC`` would be, run it, exit."""
    code: int = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        sock.detach()  # its fd is closed below; the socket object must not close a reused number later
        os.closerange(3, _max_fd())
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.umask(int(request.get("umask", 0o022)))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [sys.modules["agentsight.runtime.actor"].__file__ or "", request["spec"]]
        # Adopted by the supervisor once the intermediate child is gone; PDEATHSIG is set
        # after that (the actor's main sets it and checks its parent is the supervisor).
        deadline = time.monotonic() + 5
        while os.getppid() != supervisor and time.monotonic() < deadline:
            time.sleep(0.0005)
        from agentsight.runtime import actor

        result = actor.main([request["spec"]])
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        _exit_like_interpreter(code)


def _exit_like_interpreter(code: int) -> None:
    """Exit as the interpreter would at the end of a program: atexit handlers, stdio flushed."""
    try:
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads, as at exit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (a closed pipe must not change the exit code)
                pass
        os._exit(code)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    supervisor = int(argv[1])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us (EOF), not the terminal
    try:
        import setproctitle

        setproctitle.setproctitle("agentsight: zygote")
    except ImportError:
        pass
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()  # what is imported now stays: the collector must not touch (and unshare) its pages
    sock.send(json.dumps({"ready": True}).encode())
    _serve(sock, supervisor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
