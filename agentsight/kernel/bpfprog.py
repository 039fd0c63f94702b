"""Loading the eBPF programs in ``bpf/`` and using them, shared by every eBPF source.

- ``program_text(name, defines)`` gives the final C (what ``agentsight debug dump-bpf``
  prints, no root needed).
- ``require_bpf()`` turns "no root" / "no bcc" / "no kernel headers" into one-line
  :class:`BpfUnavailable` errors that say what to run.
- ``load(name, defines, programs)`` (or ``start(...).wait()``) compiles and loads with bcc in a
  short-lived child process (:mod:`agentsight.kernel.bpfload`) that hands the kernel objects over
  (SCM_RIGHTS) and exits; it returns a :class:`Program`.
- :class:`Program` is the one interface the sources use: maps by name, ring buffers with
  their record callbacks, uprobes / uretprobes / tracepoints attached at any time, ``close``.
  It works the fds through libbpf1 (:mod:`agentsight.kernel.libbpf`).
- ``trim_heap()`` gives back what loading and the first scans freed.
- ``BootClock`` converts the kernel's boot-time nanoseconds (``bpf_ktime_get_boot_ns``)
  to wall-clock nanoseconds, the same way in every source.

Why a child: bcc keeps LLVM/clang and its compiled module resident for as long as the
process lives (~80-110 MB PSS per source). The kernel objects outlive the process that
made them while another holds their fds, so the source process never imports bcc.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agentsight.kernel import libbpf
from agentsight.kernel.libbpf import BpfError, Map, RecordCallback
from agentsight.pipeline.component import FatalStartError

__all__ = ["BpfUnavailable", "BpfError", "program_text", "require_bpf", "start", "load", "warm", "Request",
           "Loading", "Program",
           "Map", "BootClock", "bpf_dir", "trim_heap", "KPROBE", "TRACEPOINT"]

# bcc's program types: uprobes and uretprobes are KPROBE programs.
KPROBE, TRACEPOINT = libbpf.PROG_KPROBE, libbpf.PROG_TRACEPOINT
CFLAGS = ["-Wno-macro-redefined", "-Wno-unused-value"]
# How long a compile may take (three sources compiling at once on two busy cores: seconds).
LOAD_TIMEOUT_S = 300.0

SETUP_HINT = "run: sudo scripts/setup.sh"


class BpfUnavailable(FatalStartError, RuntimeError):
    """eBPF cannot run here; the message is one line that says what to do."""


def bpf_dir() -> Path:
    """Where the C programs are: the installed ``agentsight.bpf`` package data."""
    return Path(str(resources.files("agentsight.bpf")))


def program_text(name: str, defines: dict[str, Any] | None = None) -> str:
    """The final C for ``bpf/<name>.bpf.c`` with ``#define``s for the options prepended.

    Local headers are inlined so the text is complete and auditable on its own.
    """
    root = bpf_dir()
    src = (root / f"{name}.bpf.c").read_text()
    lines = [f"// agentsight eBPF program {name}.bpf.c"]
    for key, value in sorted((defines or {}).items()):
        if isinstance(value, bool):
            value = int(value)
        lines.append(f"#define {key} {value}")
    out: list[str] = []
    for line in src.splitlines():
        stripped = line.strip()
        if stripped.startswith('#include "') and stripped.endswith('"'):
            header = stripped[len('#include "'):-1]
            out.append(f"// --- begin {header}")
            out.append((root / header).read_text())
            out.append(f"// --- end {header}")
        else:
            out.append(line)
    return "\n".join(lines + out) + "\n"


def require_bpf(import_bcc: bool = True) -> None:
    """Raise BpfUnavailable with a one-line reason unless eBPF can be loaded here.

    ``import_bcc=False`` only looks for the bcc package: the check the command-line
    processes make before starting actors, and the sources make before starting the loader
    (:func:`start`), so that none of them maps libbcc (~60 MB of LLVM): the loader child
    imports it for real and says so in one line when it cannot.
    """
    if os.geteuid() != 0:
        raise BpfUnavailable("eBPF capture needs root: run agentsight with sudo")
    if not import_bcc:
        if importlib.util.find_spec("bcc") is None:
            raise BpfUnavailable(f"bcc is not installed for this Python; {SETUP_HINT}")
    else:
        try:
            import bcc  # noqa: F401
        except ImportError as exc:
            raise BpfUnavailable(f"bcc is not importable ({exc}); {SETUP_HINT}") from None
    build = Path("/lib/modules") / os.uname().release / "build"
    if not build.exists():
        raise BpfUnavailable(f"no kernel headers at {build}; {SETUP_HINT}")
    if not Path("/sys/kernel/tracing/events").exists() and not Path("/sys/kernel/debug/tracing/events").exists():
        raise BpfUnavailable("tracefs is not mounted; run: sudo mount -t tracefs nodev /sys/kernel/tracing")


def start(name: str, defines: dict[str, Any] | None = None, programs: Iterable[tuple[str, int]] = (),
          later: Iterable[tuple[str, int]] = (), text: str | None = None) -> Loading:
    """Start compiling and loading ``bpf/<name>.bpf.c`` in a child process; ``.wait()`` for it.

    Every ``TRACEPOINT_PROBE`` is loaded and attached (bcc's autoload); ``programs`` lists the
    other functions to load before the program is handed over, as (name, type): ``KPROBE``
    for uprobes and uretprobes, ``TRACEPOINT`` for a tracepoint attached later. ``later``
    ones are verified after the hand-over, while the source runs, and arrive by themselves
    (:meth:`Program.poll`) or when first attached. The caller may work while it compiles.
    ``text`` replaces the C of ``bpf/<name>.bpf.c`` (tests).
    """
    require_bpf(import_bcc=False)
    request = {"name": name, "text": text if text is not None else program_text(name, defines), "cflags": CFLAGS,
               "programs": [[fn, kind] for fn, kind in programs], "later": [[fn, kind] for fn, kind in later]}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        loader = Path(__file__).with_name("bpfload.py")
        proc = subprocess.Popen([sys.executable, "-P", str(loader), str(theirs.fileno())], stdin=subprocess.PIPE,
                                pass_fds=[theirs.fileno()], close_fds=True)
    except OSError as exc:
        ours.close()
        raise BpfUnavailable(f"cannot start the eBPF loader: {exc}") from None
    finally:
        theirs.close()
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it died already: wait() says how
    return Loading(name, proc, ours)


@dataclass
class Request:
    """What a source asks the loader for: ``bpf/<name>.bpf.c`` with ``defines``, the ``programs``
    to load before the hand-over and the ``later`` ones (see :func:`start`)."""

    name: str
    defines: dict[str, Any]
    programs: list[tuple[str, int]] = field(default_factory=list)
    later: list[tuple[str, int]] = field(default_factory=list)
    text: str | None = None  # instead of bpf/<name>.bpf.c (tests)

    def start(self) -> Loading:
        return start(self.name, self.defines, self.programs, self.later, self.text)


def warm(request: Request) -> str:
    """Load ``request`` once and let it go, so that its compiled bytecode is in the compile cache
    (:mod:`agentsight.kernel.bpfcache`); how the loader got it: "hit" (kept already), "miss"
    (compiled now, and kept), "off" (the cache is off). BpfUnavailable as :func:`load`."""
    program = request.start().wait()
    try:
        program.complete()
        if program._late_error:
            raise BpfUnavailable(program._late_error)
        return program.cache
    finally:
        program.close()


def load(name: str, defines: dict[str, Any] | None = None, programs: Iterable[tuple[str, int]] = (),
         later: Iterable[tuple[str, int]] = (), text: str | None = None) -> Program:
    """Compile and load ``bpf/<name>.bpf.c`` (see :func:`start`); the loaded :class:`Program`."""
    return start(name, defines, programs, later, text).wait()


class Loading:
    """A loader child at work, and what it handed over so far (the dicts a Program shares)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.name = name
        self.proc = proc
        self.sock: socket.socket | None = sock
        self.maps: dict[str, Map] = {}
        self.progs: dict[str, tuple[int, int]] = {}
        self.links: dict[tuple[str, ...], int] = {}
        self.error = ""  # why the later programs did not come
        self.cache = ""  # "hit": made from the compile cache, "miss": compiled (and kept), "off"

    def wait(self, timeout: float = LOAD_TIMEOUT_S) -> Program:
        """The loaded program; BpfUnavailable (one line) when the loader failed."""
        try:
            end = self._receive(time.monotonic() + timeout)
        except BaseException:
            self._close_received()
            self.cancel()
            raise
        program = Program(self.name, self.maps, self.progs, self.links, self if end == "batch" else None)
        program.cache = self.cache
        if end == "all":
            self._reap()
        return program

    def ready(self) -> bool:
        """Whether the next batch has (started to) come."""
        return self.sock is not None and bool(select.select([self.sock], [], [], 0)[0])

    def rest(self, timeout: float = LOAD_TIMEOUT_S) -> None:
        """Receive the ``later`` programs; a failure is kept in ``error`` (the program runs on)."""
        if self.sock is None:
            return
        try:
            self._receive(time.monotonic() + timeout)
        except BpfUnavailable as exc:
            self.error = str(exc)
            self.cancel()
            return
        self._reap()

    def _receive(self, deadline: float) -> str:
        """Take messages until the end of a batch; its end ("batch" or "all")."""
        assert self.sock is not None
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, 1 << 16, 253)
            except TimeoutError:
                raise BpfUnavailable(f"the eBPF loader of bpf/{self.name}.bpf.c did not finish in time") from None
            objects: list[dict[str, Any]] = []
            msg: dict[str, Any] = {}
            if data:
                msg = json.loads(data)
                objects = msg.get("objects", [])
                self.cache = msg.get("cache", self.cache)
            for i, fd in enumerate(fds):  # each fd is ours from now on: kept, or closed
                desc: dict[str, Any] = objects[i] if i < len(objects) else {"kind": "?"}
                if desc["kind"] == "map":
                    self.maps[desc["name"]] = Map(desc["name"], fd, desc["type"], desc["key_size"],
                                                  desc["value_size"], desc["max_entries"])
                elif desc["kind"] == "prog":
                    self.progs[desc["name"]] = (fd, desc["type"])
                elif desc["kind"] in ("tracepoint", "raw_tracepoint"):
                    self.links[(desc["kind"], desc["target"], desc["program"])] = fd
                else:
                    os.close(fd)
            if not data:
                raise BpfUnavailable(f"the eBPF loader of bpf/{self.name}.bpf.c {self._how_it_ended()} "
                                     "before handing the program over (see its errors above)")
            if flags & socket.MSG_CTRUNC or len(objects) != len(fds):
                raise BpfUnavailable(f"the eBPF loader of bpf/{self.name}.bpf.c sent {len(objects)} objects, "
                                     f"{len(fds)} fds arrived (is the open files limit too low?)")
            if "error" in msg:
                raise BpfUnavailable(msg["error"])
            if msg.get("end"):
                return str(msg["end"])

    def _how_it_ended(self) -> str:
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return "closed its socket"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _close_received(self) -> None:
        for fd in [*self.links.values(), *(fd for fd, _ in self.progs.values()), *(m.fd for m in self.maps.values())]:
            os.close(fd)
        self.links.clear()
        self.progs.clear()
        self.maps.clear()

    def _reap(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.proc.wait()

    def cancel(self) -> None:
        """Stop the loader (if still running) and forget it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()


class Program:
    """A loaded eBPF program, held by fds in this process: maps, programs, attachments.

    Maps by name (``prog["events"]``), ring buffers read through their callbacks
    (``open_ring_buffer``, ``poll``, ``consume``), programs attached to uprobes, uretprobes
    and tracepoints at any time, and ``close`` that lets go of all of it: the kernel
    detaches and frees each object when its last fd closes.
    """

    def __init__(self, name: str, maps: dict[str, Map], progs: dict[str, tuple[int, int]],
                 links: dict[tuple[str, ...], int], pending: Loading | None = None) -> None:
        self.name = name
        self.maps = maps
        self.progs = progs
        self.links = links
        self._pending = pending
        self._late_error = ""  # why the later programs did not come
        self._rings = libbpf.RingBuffers()
        self.closed = False
        self.cache = ""  # how the loader got the bytecode: "hit" (compile cache), "miss" (compiled), "off"

    def __repr__(self) -> str:
        return (f"Program(bpf/{self.name}.bpf.c: {len(self.maps)} maps, {len(self.progs)} programs, "
                f"{len(self.links)} attachments)")

    def __getitem__(self, name: str | bytes) -> Map:
        """The map called ``name`` (bytes accepted, as bcc did)."""
        key = name.decode() if isinstance(name, bytes) else name
        try:
            return self.maps[key]
        except KeyError:
            raise KeyError(f"bpf/{self.name}.bpf.c has no map {key!r}") from None

    def fds(self) -> list[int]:
        """Every fd this program holds (maps, programs, attachments)."""
        return [m.fd for m in self.maps.values()] + [fd for fd, _ in self.progs.values()] + list(self.links.values())

    @property
    def loading(self) -> bool:
        """Whether ``later`` programs are still on their way."""
        return self._pending is not None

    def complete(self) -> None:
        """Wait for the ``later`` programs (a failure is kept: attaching one of them says why)."""
        self._take_pending(block=True)

    def program_fd(self, fn_name: str) -> int:
        """The fd of loaded function ``fn_name`` (waiting for the ``later`` ones if it is one)."""
        if fn_name not in self.progs and self._pending is not None:
            self._take_pending(block=True)
        try:
            return self.progs[fn_name][0]
        except KeyError:
            why = self._late_error or "it was not asked for: bpfprog.load(..., programs=...)"
            raise BpfError(errno.ENOENT, f"bpf/{self.name}.bpf.c:{fn_name} is not loaded: {why}") from None

    def _take_pending(self, block: bool) -> None:
        pending = self._pending
        if pending is None or not (block or pending.ready()):
            return
        pending.rest()
        self._late_error = pending.error
        self._pending = None

    # -- ring buffers --------------------------------------------------------

    def open_ring_buffer(self, map_name: str, callback: RecordCallback) -> None:
        """Read ring ``map_name`` with ``callback(ctx, address, size)`` during poll/consume."""
        self._rings.add(self[map_name], callback)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for records and run the callbacks; how many records."""
        if self._pending is not None:
            self._take_pending(block=False)
        return self._rings.poll(timeout_ms)

    def consume(self) -> int:
        """Run the callbacks on every record there is now, without waiting."""
        return self._rings.consume()

    def wait_fd(self) -> int | None:
        """An fd readable when the rings have records to read (None before a ring is opened)."""
        return self._rings.epoll_fd()

    # -- attaching -------------------------------------------------------------

    def attach_uprobe(self, path: str, addr: int, fn_name: str, pid: int = -1) -> tuple[str, ...]:
        """Run ``fn_name`` at virtual address ``addr`` of ELF ``path``, in ``pid`` or all (-1).
        Returns the attachment's key (for :meth:`detach`)."""
        return self._attach_u(path, addr, fn_name, pid, ret=False)

    def attach_uretprobe(self, path: str, addr: int, fn_name: str, pid: int = -1) -> tuple[str, ...]:
        """Run ``fn_name`` when the function at ``addr`` of ``path`` returns; the attachment's key."""
        return self._attach_u(path, addr, fn_name, pid, ret=True)

    def _attach_u(self, path: str, addr: int, fn_name: str, pid: int, ret: bool) -> tuple[str, ...]:
        key = ("uretprobe" if ret else "uprobe", path, hex(addr), str(pid), fn_name)
        if key in self.links:
            return key
        what = f"could not attach bpf/{self.name}.bpf.c:{fn_name} to {path} at {addr:#x}"
        prog_fd = self.program_fd(fn_name)
        try:
            offset = libbpf.file_offset(path, addr)
        except OSError as exc:
            raise BpfError(exc.errno or 0, f"{what}: {exc.strerror or exc}") from None
        self.links[key] = libbpf.attach_uprobe(prog_fd, path, offset, pid, ret, what)
        return key

    def attach_tracepoint(self, tp: str, fn_name: str) -> tuple[str, ...]:
        """Run ``fn_name`` (loaded as a TRACEPOINT program) on tracepoint ``category:event``."""
        key = ("tracepoint", tp, fn_name)
        if key in self.links:
            return key
        category, _, event = tp.partition(":")
        self.links[key] = libbpf.attach_tracepoint(self.program_fd(fn_name), category, event)
        return key

    def detach(self, key: tuple[str, ...]) -> None:
        """Undo one attachment (the kernel removes the probe when its fd closes)."""
        fd = self.links.pop(key, None)
        if fd is not None:
            os.close(fd)

    # -- the end ------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, detach everything and let the kernel free what no one else holds."""
        if self.closed:
            return
        self.closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._rings.close()
        _close_all(list(self.links.values()))
        for fd in [*(fd for fd, _ in self.progs.values()), *(m.fd for m in self.maps.values())]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.links.clear()
        self.progs.clear()
        self.maps.clear()


def _close_all(fds: list[int]) -> None:
    """Close attachment fds, several at a time: the kernel waits for a grace period in each
    detach (~70 ms for a uprobe or tracepoint here), and waits that run together end together
    (a record's 50 attachments: ~3 s one by one, about half that on 8 threads)."""
    def close(fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    if len(fds) < 4:
        for fd in fds:
            close(fd)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(fds))) as pool:
        list(pool.map(close, fds))


def trim_heap() -> None:
    """Give the free pages of the C heap back to the kernel (glibc's ``malloc_trim(0)``).

    A source calls it once its program is loaded and its first scans are done: what those
    freed stays in the process otherwise (~1-4 MB PSS measured, ``scripts/bench_memory.py
    --trim``; the other actors keep next to nothing there, so they do not call it).
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class BootClock:
    """Boot-time ns (``bpf_ktime_get_boot_ns``) -> wall-clock ns.

    The offset is measured once, as the midpoint of two CLOCK_REALTIME reads around
    one CLOCK_BOOTTIME read, and reused, so every event of a run uses the same mapping.
    """

    def __init__(self) -> None:
        best = None
        for _ in range(5):
            a = time.clock_gettime_ns(time.CLOCK_REALTIME)
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            c = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if best is None or c - a < best[0]:
                best = (c - a, (a + c) // 2 - b)
        assert best is not None
        self.offset_ns = best[1]

    def wall_ns(self, boot_ns: int) -> int:
        return boot_ns + self.offset_ns
