"""Source ``stdio``: what chosen processes read from stdin and write to stdout/stderr.

Topic ``stdio.data`` with data {fd, dir ("read" | "write"), bytes, len, truncated}:
``bytes`` is the payload as raw bytes, cut at ``max_bytes`` (then ``truncated`` is
true and ``len`` is the full size). Enough to follow a local MCP server's
JSON-RPC over stdio. The kernel side is ``bpf/stdio.bpf.c``; its one record
(``bpf/stdio.h``) is mirrored here as ``RECORD``. Ring-buffer reserve failures
are counted in ``stats["kernel_lost"]``.

read(2), write(2), readv(2) and writev(2) are traced, with the same event for
both kinds: a vectored call's payload is its iovecs' bytes joined, taken from its
first 8 iovecs (``len`` still counts them all). A write(2) is reported as asked
(``len`` = count, even if it then fails); read, readv and writev as done (``len``
= bytes moved, nothing on error). Payloads moved with pread/pwrite,
preadv/pwritev, splice or sendfile are not seen.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from agentsight.actors.sources.process import (
    check_comm,
    check_pages,
    check_pids,
    filter_defines,
    read_lost,
    require_pids,
    seed_names,
    seed_tree,
    tracepoint_has_field,
)
from agentsight.event import Event
from agentsight.kernel.bpfprog import BootClock, Program, load
from agentsight.pipeline.component import Capabilities, Option, OptionError, Source

__all__ = ["StdioSource", "decode_stdio", "stdio_defines", "RECORD", "MAX_BYTES_LIMIT"]

# struct stdio_event of bpf/stdio.h without its payload:
# pid, tid, uid, fd, ts_ns, comm, len, dir, captured
RECORD = struct.Struct("<IIIIQ16sQII")
DIRECTIONS = ("read", "write")
# The per-cpu scratch (a record plus max_bytes/2 of slack for vectored copies, see
# bpf/stdio.bpf.c) must stay under the kernel's 32 KiB per-cpu value limit.
MAX_BYTES_LIMIT = 16384


def decode_stdio(raw: bytes, wall_ns: Callable[[int], int], source: str) -> Event:
    """One ring-buffer record of ``bpf/stdio.h`` -> a ``stdio.data`` Event."""
    pid, tid, _uid, fd, ts, comm, length, direction, captured = RECORD.unpack_from(raw, 0)
    payload = raw[RECORD.size:RECORD.size + captured]
    if len(payload) != captured or direction > 1:
        raise ValueError(f"malformed stdio record ({len(raw)} bytes, captured {captured})")
    data = {
        "fd": fd,
        "dir": DIRECTIONS[direction],
        "bytes": payload,
        "len": length,
        "truncated": captured < length,
    }
    name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
    return Event("stdio.data", wall_ns(ts), source, pid, tid, name, data)


def stdio_defines(options: Mapping[str, Any], have_group_dead: bool = True) -> dict[str, Any]:
    """Every macro ``bpf/stdio.bpf.c`` is compiled with, from resolved options."""
    defines = filter_defines(options["pid"], options["pids"], options["tree"], options["comm"],
                             uid=options["uid"])
    if options.get("follow"):  # an empty traced set that clients fill (see StdioSource.follow)
        defines["FILTER_TREE"], defines["FILTER_PID"] = 1, 0
    defines.update({
        "ALL_FDS": int(options["all_fds"]),
        "MAX_BYTES": options["max_bytes"],
        "RING_PAGES": options["ring_pages"],
        "HAVE_GROUP_DEAD": int(have_group_dead),
    })
    return defines


def _check_max_bytes(value: int) -> str | None:
    if not 1 <= value <= MAX_BYTES_LIMIT:
        return f"must be between 1 and {MAX_BYTES_LIMIT}, got {value}"
    return None


class StdioSource(Source):
    """read/write/readv/writev payloads on fds 0-2 (or all fds) of a pid, a process tree, a uid or a comm."""

    TYPE = "stdio"
    CAPS = Capabilities(needs_bpf=True, follow=True)
    OPTIONS: ClassVar[dict[str, Option]] = {
        "pid": Option(int, 0, "capture this process (0 = none); with tree, its descendants too"),
        "pids": Option(list, [], "start with these processes and follow their descendants",
                       check=check_pids),
        "tree": Option(bool, False, "follow the descendants of pid, in the kernel"),
        "uid": Option(int, -1, "only processes of this user id (-1 = any)"),
        "comm": Option(str, "", "only processes whose name starts with this", check=check_comm),
        "follow": Option(bool, False, "start with no process and trace the trees clients ask for "
                         "(record through a running collector)"),
        "all_fds": Option(bool, False, "capture every file descriptor, not only 0, 1 and 2"),
        "max_bytes": Option(int, 8192, "payload bytes kept per read/write (the rest is flagged)",
                            check=_check_max_bytes),
        "ring_pages": Option(int, 256, "ring buffer size in 4 KiB pages (a power of two)",
                             check=check_pages),
    }

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        opts = self.options
        if not (opts["pid"] or opts["pids"] or opts["comm"] or opts["uid"] >= 0 or opts["follow"]):
            raise OptionError("stdio capture needs pid, pids, comm, uid or follow (it would trace every process)")
        self._bpf: Program | None = None
        self._clock: BootClock | None = None
        self._out: list[Event] = []
        self.stats.update({"kernel_lost": 0, "decode_errors": 0, "truncated": 0})

    def defines(self) -> dict[str, Any]:
        return stdio_defines(self.options, tracepoint_has_field("sched", "sched_process_exit", "group_dead"))

    def open(self) -> None:
        opts = self.options
        roots = [p for p in [opts["pid"], *opts["pids"]] if p]
        require_pids(roots, "pid" if opts["pid"] else "pids")
        defines = self.defines()
        self._bpf = bpf = load("stdio", defines)
        self._clock = BootClock()
        if defines["FILTER_TREE"]:
            seed_tree(bpf["traced"], roots)
        if opts["comm"]:
            seed_names(bpf["named"], opts["comm"])
        bpf.open_ring_buffer("events", self._on_record)

    def follow(self, pid: int) -> bool:
        """Trace a new process tree rooted at ``pid`` (with ``follow``, or any tree capture)."""
        if not self.defines()["FILTER_TREE"]:
            return False
        assert self._bpf is not None
        seed_tree(self._bpf["traced"], [pid])
        return True

    def _on_record(self, _ctx: Any, data: int, size: int) -> None:
        assert self._clock is not None
        try:
            ev = decode_stdio(ctypes.string_at(data, size), self._clock.wall_ns, self.name)
        except (struct.error, ValueError):
            self.count("decode_errors")
            return
        if ev.data["truncated"]:
            self.count("truncated")
        self._out.append(ev)

    def _take(self) -> list[Event]:
        assert self._bpf is not None
        out, self._out = self._out, []
        self.stats["kernel_lost"] = read_lost(self._bpf["lost"])
        return out

    def poll(self, timeout: float) -> list[Event]:
        if self._bpf is None:
            raise RuntimeError("StdioSource.poll() before open()")
        self._bpf.poll(max(0, int(timeout * 1000)))
        return self._take()

    def stop(self) -> list[Event]:
        if self._bpf is None:
            return []
        self._bpf.consume()
        return self._take()

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.close()
            self._bpf = None
