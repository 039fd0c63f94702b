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
from typing import Any

from agentsight.actors.sources.options import STDIO, STDIO_MAX_BYTES_LIMIT, ring_pages
from agentsight.actors.sources.process import (
    filter_defines,
    read_lost,
    require_pids,
    seed_names,
    seed_tree,
    tracepoint_has_field,
)
from agentsight.event import Event
from agentsight.kernel.bpfprog import BootClock, Program, Request
from agentsight.pipeline.component import Capabilities, OptionError, Source

__all__ = ["StdioSource", "decode_stdio", "stdio_defines", "RECORD", "MAX_BYTES_LIMIT"]

# struct stdio_event of bpf/stdio.h without its payload:
# pid, tid, uid, fd, ts_ns, comm, len, dir, captured
RECORD = struct.Struct("<IIIIQ16sQII")
DIRECTIONS = ("read", "write")
MAX_BYTES_LIMIT = STDIO_MAX_BYTES_LIMIT  # see agentsight.actors.sources.options


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
        "RING_PAGES": ring_pages(options["ring_kib"]),
        "HAVE_GROUP_DEAD": int(have_group_dead),
    })
    return defines


class StdioSource(Source):
    """read/write/readv/writev payloads on fds 0-2 (or all fds) of a pid, a process tree, a uid or a comm."""

    TYPE = "stdio"
    CAPS = Capabilities(needs_bpf=True, follow=True)
    OPTIONS = STDIO

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

    def bpf_request(self) -> Request:
        """The program this source loads (``agentsight debug warm-bpf`` compiles it ahead)."""
        return Request("stdio", self.defines())

    def open(self) -> None:
        opts = self.options
        roots = [p for p in [opts["pid"], *opts["pids"]] if p]
        require_pids(roots, "pid" if opts["pid"] else "pids")
        request = self.bpf_request()
        defines = request.defines
        self._bpf = bpf = request.start().wait()
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

    def wait_fd(self) -> int | None:
        return None if self._bpf is None else self._bpf.wait_fd()

    def stop(self) -> list[Event]:
        if self._bpf is None:
            return []
        self._bpf.consume()
        return self._take()

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.close()
            self._bpf = None
