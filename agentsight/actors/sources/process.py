"""Source ``process``: process lifecycle, file opens and connects, from eBPF tracepoints.

Topics:

- ``process.exec``  {ppid, filename, argv, argv_truncated, uid}
- ``process.fork``  {ppid, child_pid, parent_tid} (the event's pid is the child)
- ``process.exit``  {ppid, exit_code, signal, signal_name, duration_ms}
- ``file.open``     {path, flags, flag_names, mode, dfd, ret, count, repeat}
- ``net.connect``   {family, address, port, fd, ret}

The kernel side (``bpf/process.bpf.c``) filters by pid, process tree and comm and
sends fixed records (``bpf/process.h``) through a ring buffer; this module mirrors
those records once (``HEADER`` ... ``CONNECT``) and decodes them with
``struct.unpack_from``. Repeated opens of one path by one pid are collapsed and
rate-limited here (:class:`OpenCollapser`); whatever is dropped is counted in
``stats``, as are ring-buffer reserve failures (``kernel_lost``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import signal
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsight.actors.sources.options import PROCESS, check_comm, ring_pages
from agentsight.event import Event, now_ns
from agentsight.kernel.bpfprog import BootClock, Map, Program, Request, trim_heap
from agentsight.kernel.procfs import alive, descendants, scan_proc
from agentsight.pipeline.component import Capabilities, OptionError, Source

__all__ = [
    "ProcessSource",
    "OpenCollapser",
    "decode_record",
    "process_defines",
    "check_comm",
    "tracepoint_exists",
    "tracepoint_has_field",
]

# ---- the records of bpf/process.h, mirrored once ---------------------------------

KIND_EXEC, KIND_FORK, KIND_EXIT, KIND_OPEN, KIND_CONNECT = 1, 2, 3, 4, 5

HEADER = struct.Struct("<IIIIQ16s")  # kind, pid, tid, uid, ts_ns, comm
EXEC = struct.Struct("<IIIHH256s")  # ppid, old_tid, args_len, argc, flags, filename
EXEC_ARGS_OFFSET = HEADER.size + EXEC.size
FORK = struct.Struct("<II")  # child_pid, pad
EXIT = struct.Struct("<IIiiQ")  # ppid, flags, exit_code, signal, duration_ns
OPEN = struct.Struct("<qiIII256s")  # ret, dfd, open_flags, mode, flags, path
CONNECT = struct.Struct("<qII112s")  # ret, fd, addrlen, addr

EXEC_ARGS_TRUNCATED, EXEC_ARGS_MISSING, EXEC_FILENAME_TRUNCATED = 1, 2, 4
U32 = struct.Struct("=I")  # the pid keys of the maps
PROC_INFO = struct.Struct("=QII")  # struct proc_info of bpf/process.bpf.c: start_ns, ppid, pad

EXIT_START_KNOWN, EXIT_CODE_KNOWN, EXIT_SIGNALED = 1, 2, 4
OPEN_PATH_TRUNCATED = 1

AT_FDCWD = -100
ARGS_SIZE = 2048

_OPEN_FLAG_NAMES = [
    (name, getattr(os, name))
    for name in ("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC",
                 "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_PATH", "O_TMPFILE")
    if hasattr(os, name)
]


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def open_flag_names(flags: int) -> list[str]:
    """``O_RDONLY|O_CLOEXEC`` style names for open(2) flags."""
    names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3]]
    for name, bit in _OPEN_FLAG_NAMES:
        if name == "O_TMPFILE":
            if flags & bit == bit:
                names.append(name)
        elif flags & bit and not (name == "O_DIRECTORY" and flags & os.O_TMPFILE == os.O_TMPFILE):
            names.append(name)
    return names


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        if signal.SIGRTMIN < sig <= signal.SIGRTMAX:
            return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
        return f"SIG{sig}"


def sockaddr(raw: bytes) -> tuple[str, str, int] | None:
    """(family, address, port) of a raw ``struct sockaddr``; None for other families."""
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], "little")
    if family == 2 and len(raw) >= 8:
        return "ipv4", str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big")
    if family == 10 and len(raw) >= 24:
        return "ipv6", str(ipaddress.IPv6Address(raw[8:24])), int.from_bytes(raw[2:4], "big")
    if family == 1:
        path = raw[2:]
        if path[:1] == b"\0":  # abstract namespace: not NUL-terminated
            return "unix", "@" + path[1:].rstrip(b"\0").decode("utf-8", "replace"), 0
        return "unix", _cstr(path), 0
    return None


def decode_record(raw: bytes, wall_ns: Callable[[int], int], source: str) -> Event | None:
    """One ring-buffer record of ``bpf/process.h`` -> an Event (None for an unknown kind)."""
    kind, pid, tid, uid, ts, comm_raw = HEADER.unpack_from(raw, 0)
    comm = _cstr(comm_raw)
    ts_ns = wall_ns(ts)
    off = HEADER.size
    if kind == KIND_EXEC:
        ppid, old_tid, args_len, argc, flags, filename = EXEC.unpack_from(raw, off)
        args = raw[EXEC_ARGS_OFFSET:EXEC_ARGS_OFFSET + min(args_len, ARGS_SIZE)]
        argv = [a.decode("utf-8", "replace") for a in args.split(b"\0")[:argc]]
        data: dict[str, Any] = {
            "ppid": ppid,
            "filename": _cstr(filename),
            "argv": argv,
            "argv_truncated": bool(flags & (EXEC_ARGS_TRUNCATED | EXEC_ARGS_MISSING)),
            "uid": uid,
        }
        if flags & EXEC_ARGS_MISSING:
            data["argv_missing"] = True
        if flags & EXEC_FILENAME_TRUNCATED:
            data["filename_truncated"] = True
        if old_tid != pid:
            data["old_tid"] = old_tid
        return Event("process.exec", ts_ns, source, pid, pid, comm, data)
    if kind == KIND_FORK:
        (child,) = FORK.unpack_from(raw, off)[:1]
        data = {"ppid": pid, "child_pid": child, "parent_tid": tid, "uid": uid}
        return Event("process.fork", ts_ns, source, child, child, comm, data)
    if kind == KIND_EXIT:
        ppid, flags, code, sig, duration = EXIT.unpack_from(raw, off)
        data = {
            "ppid": ppid,
            "exit_code": code if flags & EXIT_CODE_KNOWN else None,
            "signal": sig if flags & EXIT_SIGNALED else None,
            "signal_name": signal_name(sig) if flags & EXIT_SIGNALED else None,
            "duration_ms": duration / 1e6 if flags & EXIT_START_KNOWN else None,
            "uid": uid,
        }
        return Event("process.exit", ts_ns, source, pid, tid, comm, data)
    if kind == KIND_OPEN:
        ret, dfd, open_flags, mode, flags, path = OPEN.unpack_from(raw, off)
        data = {
            "path": _cstr(path),
            "flags": open_flags,
            "flag_names": open_flag_names(open_flags),
            "mode": mode,
            "ret": ret,
            "count": 1,
        }
        if dfd != AT_FDCWD:
            data["dfd"] = dfd
        if flags & OPEN_PATH_TRUNCATED:
            data["path_truncated"] = True
        return Event("file.open", ts_ns, source, pid, tid, comm, data)
    if kind == KIND_CONNECT:
        ret, fd, addrlen, addr = CONNECT.unpack_from(raw, off)
        parsed = sockaddr(addr[:addrlen])
        if parsed is None:
            return None
        family, address, port = parsed
        data = {"family": family, "address": address, "port": port, "fd": fd, "ret": ret}
        return Event("net.connect", ts_ns, source, pid, tid, comm, data)
    return None


# ---- collapsing repeated opens -----------------------------------------------------

@dataclass
class _Repeat:
    first_ns: int
    last: Event
    count: int = 0


class OpenCollapser:
    """Collapse repeated opens of one path by one pid, then rate-limit per pid.

    The first open of (pid, path, flags, success) passes with ``count`` 1; repeats
    within ``window_ns`` of it are only counted, and leave as one ``file.open`` with
    ``count`` n and ``repeat`` true when the window ends (or the pid exits). First
    opens beyond ``rate`` per second per pid are dropped and counted in ``dropped``.
    So the ``count``s emitted plus ``dropped`` always equal the opens seen.
    """

    def __init__(self, window_ns: int, rate: int, max_keys: int = 4096) -> None:
        self.window_ns = window_ns
        self.rate = rate
        self.max_keys = max_keys
        self.dropped = 0
        self.collapsed = 0
        self._repeats: dict[tuple[int, str, int, bool], _Repeat] = {}
        self._buckets: dict[int, tuple[float, int]] = {}  # pid -> (tokens, at ns)

    def add(self, ev: Event) -> list[Event]:
        """Take one ``file.open``; return what to emit now (zero, one or more events)."""
        out = self.expire(ev.ts_ns)
        key = (ev.pid, ev.data["path"], ev.data["flags"], ev.data["ret"] >= 0)
        rep = self._repeats.get(key)
        if rep is not None:
            rep.count += 1
            rep.last = ev
            self.collapsed += 1
            return out
        if len(self._repeats) >= self.max_keys:
            out.extend(self._emit(next(iter(self._repeats))))
        self._repeats[key] = _Repeat(ev.ts_ns, ev)
        if self._take_token(ev.pid, ev.ts_ns):
            out.append(ev)
        else:
            self.dropped += 1
        return out

    def _take_token(self, pid: int, ts_ns: int) -> bool:
        tokens, at = self._buckets.get(pid, (float(self.rate), ts_ns))
        tokens = min(float(self.rate), tokens + max(0, ts_ns - at) * self.rate / 1e9)
        ok = tokens >= 1.0
        self._buckets[pid] = (tokens - 1.0 if ok else tokens, ts_ns)
        return ok

    def _emit(self, key: tuple[int, str, int, bool]) -> list[Event]:
        rep = self._repeats.pop(key)
        if not rep.count:
            return []
        last = rep.last
        data = dict(last.data, count=rep.count, repeat=True, first_ns=rep.first_ns)
        return [Event("file.open", last.ts_ns, last.source, last.pid, last.tid, last.comm, data)]

    def expire(self, now: int) -> list[Event]:
        """Emit the repeats whose window ended by ``now`` (wall ns)."""
        out: list[Event] = []
        while self._repeats:
            key, rep = next(iter(self._repeats.items()))
            if rep.first_ns + self.window_ns > now:
                break
            out.extend(self._emit(key))
        return out

    def forget(self, pid: int) -> list[Event]:
        """The process exited: emit its pending repeats and drop its state."""
        out: list[Event] = []
        for key in [k for k in self._repeats if k[0] == pid]:
            out.extend(self._emit(key))
        self._buckets.pop(pid, None)
        return out

    def drain(self) -> list[Event]:
        """Emit every pending repeat (at stop)."""
        out: list[Event] = []
        for key in list(self._repeats):
            out.extend(self._emit(key))
        return out


# ---- kernel features and program defines ---------------------------------------------

TRACEFS = ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")


def _format_file(category: str, event: str) -> Path | None:
    for root in TRACEFS:
        path = Path(root) / category / event / "format"
        if os.path.exists(path):  # False, not PermissionError, when tracefs is closed to this user
            return path
    return None


def tracepoint_exists(category: str, event: str) -> bool:
    return _format_file(category, event) is not None


def tracepoint_has_field(category: str, event: str, field_name: str) -> bool:
    path = _format_file(category, event)
    if path is None:
        return False
    try:
        text = path.read_text()
    except OSError:
        return False
    return any(line.strip().startswith("field:") and line.split(";")[0].split()[-1] == field_name
               for line in text.splitlines())




def filter_defines(pid: int, pids: list[int], tree: bool, comm: str, seed_by_comm: bool = False,
                   uid: int = -1) -> dict[str, Any]:
    """The FILTER_* macros of ``bpf/filter.h`` for these options."""
    follow = bool(pids) or (tree and pid > 0) or seed_by_comm
    defines: dict[str, Any] = {
        "FILTER_TREE": int(follow),
        "FILTER_PID": 0 if follow else pid,
        "FILTER_UID": uid,
        "FILTER_COMM_LEN": len(comm),
    }
    if comm:
        defines["FILTER_COMM"] = json.dumps(comm)  # a valid C literal for printable ASCII
    return defines


def process_defines(options: Mapping[str, Any], have_sys_open: bool = True,
                    have_group_dead: bool = True) -> dict[str, Any]:
    """Every macro ``bpf/process.bpf.c`` is compiled with, from resolved options."""
    mode = options["mode"]
    defines = filter_defines(options["pid"], options["pids"], options["tree"], options["comm"],
                             seed_by_comm=mode == 2 and bool(options["comm"]))
    if mode == 2:
        defines["FILTER_TREE"] = 1
        defines["FILTER_PID"] = 0
    defines.update({
        "SEED_BY_COMM": int(mode == 2 and bool(options["comm"])),
        "TRACE_FILES": int(mode != 1),
        "HAVE_SYS_OPEN": int(have_sys_open),
        "HAVE_GROUP_DEAD": int(have_group_dead),
        "MIN_DURATION_NS": int(options["duration"]) * 1_000_000,
        "RING_PAGES": ring_pages(options["ring_kib"]),
    })
    return defines


def seed_tree(table: Map, roots: Iterable[int], comm: str = "") -> int:
    """Put ``roots`` (and live processes named ``comm``...) with all descendants in ``traced``.

    Scans /proc twice: forks that happen between the first scan and the map update
    are only followed by the kernel if their parent was already in the map.
    Returns how many pids were added.
    """
    added: set[int] = set()
    for _ in range(2):
        procs = scan_proc()
        start = set(roots) | {p.pid for p in procs.values() if comm and p.comm.startswith(comm)}
        for pid in descendants(start, {p.pid: p.ppid for p in procs.values()}) - added:
            table.update(U32.pack(pid), b"\x01")
            added.add(pid)
    return len(added)


def seed_names(table: Map, prefix: str) -> int:
    """Put every live process whose name starts with ``prefix`` in the ``named`` map.

    The kernel keeps the map current from then on (exec, fork, exit: bpf/filter.h);
    this covers the processes that existed before the program was loaded. Scans twice,
    like :func:`seed_tree`, for forks made while the first scan ran. Returns the count.
    """
    added: set[int] = set()
    for _ in range(2):
        for entry in scan_proc().values():
            if entry.pid not in added and entry.comm.startswith(prefix):
                table.update(U32.pack(entry.pid), b"\x01")
                added.add(entry.pid)
    return len(added)


def require_pids(pids: Iterable[int], option: str) -> None:
    """Raise a one-line OptionError for a pid that is not a live process."""
    for pid in pids:
        if not alive(pid):
            raise OptionError(f"option {option!r}: no process with pid {pid} is running")


def read_lost(table: Map) -> int:
    """Sum of a per-cpu u64 counter at index 0."""
    return table.sum(U32.pack(0))


# ---- the source ------------------------------------------------------------------------

class ProcessSource(Source):
    """exec/fork/exit, file opens and connects of all processes, a pid, a tree or a comm."""

    TYPE = "process"
    CAPS = Capabilities(needs_bpf=True)
    OPTIONS = PROCESS

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        opts = self.options
        if opts["mode"] == 2 and not (opts["pid"] or opts["pids"] or opts["comm"]):
            raise OptionError("mode 2 (filter) needs pid, pids or comm")
        self._bpf: Program | None = None
        self._clock: BootClock | None = None
        self._out: list[Event] = []
        self._opens = OpenCollapser(opts["open_window_ms"] * 1_000_000, opts["open_rate"])
        self.stats.update({"kernel_lost": 0, "file_open_collapsed": 0, "file_open_ratelimited": 0,
                           "decode_errors": 0})

    def defines(self) -> dict[str, Any]:
        return process_defines(
            self.options,
            have_sys_open=tracepoint_exists("syscalls", "sys_enter_open"),
            have_group_dead=tracepoint_has_field("sched", "sched_process_exit", "group_dead"),
        )

    def bpf_request(self) -> Request:
        """The program this source loads (``agentsight debug warm-bpf`` compiles it ahead)."""
        return Request("process", self.defines())

    def open(self) -> None:
        opts = self.options
        roots = [p for p in [opts["pid"], *opts["pids"]] if p]
        require_pids(roots, "pid" if opts["pid"] else "pids")
        request = self.bpf_request()
        defines = request.defines
        self._bpf = bpf = request.start().wait()
        self._clock = BootClock()
        if defines["FILTER_TREE"]:
            seed_tree(bpf["traced"], roots, opts["comm"] if opts["mode"] == 2 else "")
        if opts["comm"]:
            seed_names(bpf["named"], opts["comm"])
        info = bpf["info"]
        for entry in scan_proc().values():
            info.update(U32.pack(entry.pid), PROC_INFO.pack(entry.start_boot_ns, entry.ppid, 0))
        bpf.open_ring_buffer("events", self._on_record)
        trim_heap()

    def apply_options(self, changed: set[str]) -> None:
        self._opens.window_ns = self.options["open_window_ms"] * 1_000_000
        self._opens.rate = self.options["open_rate"]

    def _on_record(self, _ctx: Any, data: int, size: int) -> None:
        assert self._clock is not None
        try:
            ev = decode_record(ctypes.string_at(data, size), self._clock.wall_ns, self.name)
        except (struct.error, ValueError):
            self.count("decode_errors")
            return
        if ev is None:
            self.count("decode_errors")
        elif ev.topic == "file.open":
            self._out.extend(self._opens.add(ev))
        elif ev.topic == "process.exit":
            self._out.extend(self._opens.forget(ev.pid))
            self._out.append(ev)
        else:
            self._out.append(ev)

    def _take(self, extra: list[Event]) -> list[Event]:
        assert self._bpf is not None
        out, self._out = self._out, []
        out.extend(extra)
        self.stats["kernel_lost"] = read_lost(self._bpf["lost"])
        self.stats["file_open_collapsed"] = self._opens.collapsed
        self.stats["file_open_ratelimited"] = self._opens.dropped
        return out

    def poll(self, timeout: float) -> list[Event]:
        if self._bpf is None:
            raise RuntimeError("ProcessSource.poll() before open()")
        self._bpf.poll(max(0, int(timeout * 1000)))
        return self._take(self._opens.expire(now_ns()))

    def wait_fd(self) -> int | None:
        return None if self._bpf is None else self._bpf.wait_fd()

    def stop(self) -> list[Event]:
        if self._bpf is None:
            return []
        self._bpf.consume()
        return self._take(self._opens.drain())

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.close()
            self._bpf = None

