"""Source ``ssl``: TLS plaintext from uprobes on the TLS library (bpf/ssl.bpf.c).

Emits ``ssl.data`` for every SSL_write / SSL_read / SSL_write_ex / SSL_read_ex call that
moved bytes::

    data = {"conn": "<pid>:<SSL* hex>", "dir": "write" | "read", "func": "SSL_write_ex",
            "len": bytes the call moved, "bytes": the plaintext (bytes),
            "truncated": bytes of the call not captured (0 normally),
            "latency_ns": time spent in the call, "uid": int}

``dir`` is from the traced process's side: ``write`` is what it sent. With
``handshake = true`` it also emits ``ssl.handshake`` ({"conn", "ok", "latency_ns",
"uid"}, latency from the first attempt). Every file it probes is announced once as
``ssl.attached`` ({"path", "dev", "inode", "probes"}) and logged.

Libraries are found at start (the system libssl, node, ``binary_path``, what running
processes map), after a traced process execs, and every ``rescan_s`` in the processes
being traced: the pid (or its tree's live processes), or without a pid filter the ones
that exec'd or made TLS calls since start. That last pass catches a library dlopen'ed
late (a Python agent importing its own libssl, a plugin); it reads each such process's
/proc/PID/maps and looks at a file only the first time it shows up.

Binaries with BoringSSL compiled in and nothing exported (Bun: Claude Code) are probed
at the SSL_write/SSL_read that :mod:`agentsight.kernel.tlsfind` finds in their code; binaries
with rustls on aws-lc (Codex) at the AEAD seal/open functions, whose records
:mod:`agentsight.kernel.tlsrecords` turns back into each connection's plaintext (``func`` is
then the AEAD function, ``conn`` is ``"<pid>:fd<fd>.<n>"``). Executables named on the
traced root's command line are looked at before it runs, so a ``record -- claude ...``
is probed from its first call.

Never silent: when a traced process starts a TCP connection and nothing it maps has a
probed TLS stack (a Go or rustls binary, a stack whose entry points could not be found),
or its probes were attached only after the connection started, an ``ssl.unprobed`` event
says so: {"path": its executable, "reason", "dest": "host:port", "late": bool, "stack"}.
Counted as ``unprobed_connections`` (and ``late_connections``).

Large calls reach user space as several ring-buffer records (bpf/ssl.h) that are
reassembled here. Losses are counted in ``stats``: ``kernel_lost`` records (and
``kernel_lost_bytes`` / ``kernel_lost_calls``) that found the ring full,
``kernel_untracked`` calls not followed because the in-flight map was full,
``incomplete`` reassemblies emitted short, ``read_errors`` chunks the kernel could not
read, ``truncated`` calls cut by ``max_bytes``. The periodic rescan counts its
``rescan_passes``, the ``rescan_pids`` whose maps it read and the ``rescan_us`` it took.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from agentsight.actors.sources.options import CHUNK, SSL, ring_pages
from agentsight.actors.sources.process import (
    U32,
    filter_defines,
    seed_names,
    seed_tree,
)
from agentsight.event import Event
from agentsight.kernel import bpfprog, procfs, tlslibs, tlsrecords
from agentsight.pipeline.component import Capabilities, OptionError, Source

__all__ = ["SslSource", "RECORD", "RECORD_FIELDS"]

log = logging.getLogger(__name__)

# struct ssl_record of bpf/ssl.h, field for field.
RECORD_FIELDS = ("ts_ns", "latency_ns", "ssl", "call_id", "ret_len", "pid", "tid", "uid", "offset",
                 "cap_len", "chunk_len", "kind", "func", "flags", "comm", "fd", "port", "family", "extra_len",
                 "extra")
RECORD = struct.Struct("<QQQQqIIIIIIBBH16siHHI16s")

REC_DATA, REC_HANDSHAKE, REC_EXEC, REC_CONNECT, REC_BIND = 1, 2, 3, 4, 5
FLAG_READ_FAILED = 1
FUNC_NAMES = {1: "SSL_write", 2: "SSL_read", 3: "SSL_write_ex", 4: "SSL_read_ex", 5: "SSL_do_handshake",
              6: "EVP_AEAD_CTX_seal", 7: "EVP_AEAD_CTX_seal_scatter", 8: "EVP_AEAD_CTX_open",
              9: "EVP_AEAD_CTX_open_gather"}
FUNC_DIRS = {1: "write", 2: "read", 3: "write", 4: "read", 6: "write", 7: "write", 8: "read", 9: "read"}
FN_SEAL, FN_SEAL_SCATTER, FN_OPEN, FN_OPEN_GATHER = 6, 7, 8, 9
AF_INET = 2
# Index of each counter in the kernel's per-CPU `drops` array, and its name in stats.
DROP_STATS = ("kernel_lost", "kernel_lost_bytes", "kernel_lost_calls", "kernel_untracked")

# bpf/ssl.bpf.c entry/return programs per function, for probes at the symbol.
_PLAIN_PROGRAMS = {
    "SSL_write": ("enter_write", "leave_write"),
    "SSL_read": ("enter_read", "leave_read"),
    "SSL_write_ex": ("enter_write_ex", "leave_write_ex"),
    "SSL_read_ex": ("enter_read_ex", "leave_read_ex"),
    "EVP_AEAD_CTX_seal": ("enter_seal", "leave_seal"),
    "EVP_AEAD_CTX_seal_scatter": ("enter_seal_scatter", "leave_seal_scatter"),
    "EVP_AEAD_CTX_open": ("enter_open", "leave_open"),
    "EVP_AEAD_CTX_open_gather": ("enter_open_gather", "leave_open_gather"),
}
# Syscall tracepoints that tie AEAD records to their socket (attached with the first AEAD library).
_AEAD_TRACEPOINTS = {
    "aead_in": ("sys_enter_read", "sys_enter_readv", "sys_enter_recvfrom", "sys_enter_recvmsg"),
    "aead_out": ("sys_enter_write", "sys_enter_writev", "sys_enter_sendto", "sys_enter_sendmsg"),
}
_CALLEE_PROGRAMS = {
    "SSL_write_ex": ("enter_write_ex_callee", "leave_callee"),
    "SSL_read_ex": ("enter_read_ex_callee", "leave_callee"),
}
# A multi-record call still missing chunks after this long lost them in the kernel.
_PARTIAL_TIMEOUT_S = 1.0
# When a traced process execs, look at its mappings again after these delays:
# the dynamic loader (and dlopen) map libraries after the exec event.
_RESCAN_DELAYS_S = (0.0, 0.3, 2.0)
# Without a pid filter, the processes the periodic rescan follows (exec'd or made TLS
# calls since start), oldest forgotten first; and at most this many maps read per pass.
_WATCH_MAX = 4096
_RESCAN_MAX_PIDS = 256
_STATS_EVERY_S = 0.5
# A connection is checked for TLS coverage this long after it started (after the exec
# rescans at 0.0 and 0.3 s have attached what the process maps).
_CONNECT_CHECK_S = 0.4
# ssl.unprobed events per process at most (the rest are counted).
_UNPROBED_PER_PID = 64


@dataclass
class _Partial:
    """Chunks of one call that arrived so far."""

    head: tuple[Any, ...]
    started: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    failed_at: int | None = None
    received: int = 0


class SslSource(Source):
    """TLS plaintext of SSL_write/SSL_read calls, captured whole with eBPF uprobes."""

    TYPE = "ssl"
    CAPS = Capabilities(needs_bpf=True, follow=True, settle=True)
    OPTIONS = SSL

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        if self.options["tree"] and not self.options["pid"]:
            raise OptionError("option 'tree' needs 'pid' (the root of the tree to trace)")
        bad = [p for p in self.options["binary_path"] if not isinstance(p, str)]
        if bad:
            raise OptionError(f"option 'binary_path' must be a list of paths, got {bad[0]!r}")
        self._bpf: bpfprog.Program | None = None
        self._finder = tlslibs.LibraryFinder()
        self._attached: set[tuple[str, int, str]] = set()
        self._out: list[Event] = []
        self._partials: dict[int, tuple[int, _Partial]] = {}  # tid -> (call_id, chunks)
        self._rescans: list[tuple[float, int]] = []
        self._watched: dict[int, None] = {}  # unfiltered: processes seen exec or call, oldest first
        self._next_rescan = float("inf")
        self._rescan_cursor = 0
        self._clock = bpfprog.BootClock()
        self._next_stats = 0.0
        self._comms: dict[bytes, str] = {}
        self._aead = tlsrecords.AeadStreams()
        self._aead_tracepoints = False
        self._attached_at: dict[tuple[int, int], int] = {}  # library (dev, inode) -> boot ns probed
        # (check at, CONNECT record, the process's mappings and executable when it connected)
        self._connects: list[tuple[float, tuple[Any, ...], Any, str]] = []
        self._unprobed: dict[int, int] = {}  # pid -> ssl.unprobed events sent
        self._reasons: dict[str, str] = {}  # executable -> why its TLS is not visible

    # -- program -----------------------------------------------------------

    def defines(self) -> dict[str, Any]:
        """The #defines that specialise bpf/ssl.bpf.c for these options."""
        o = self.options
        defines: dict[str, Any] = {
            "SSL_MAX_BYTES": o["max_bytes"],
            "SSL_CHUNK": CHUNK,
            "SSL_MAX_CHUNKS": -(-o["max_bytes"] // CHUNK),
            "SSL_RING_PAGES": ring_pages(o["ring_kib"]),
            # Wake the reader per 1/16 of the ring and CPU (at most 1 MiB), not per record.
            "SSL_WAKEUP_BYTES": min(o["ring_kib"] * 64, 1 << 20),
            "SSL_HANDSHAKE": o["handshake"],
            **filter_defines(o["pid"], [], o["tree"], o["comm"], uid=o["uid"]),
        }
        return defines

    def bpf_request(self) -> bpfprog.Request:
        """The program this source loads (``agentsight debug warm-bpf`` compiles it ahead)."""
        return bpfprog.Request("ssl", self.defines(), self._programs(), self._programs(aead=True))

    def program_text(self) -> str:
        """The final C this source loads (no root needed)."""
        return bpfprog.program_text("ssl", self.defines())

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        for path in self.options["binary_path"]:
            if not os.path.isfile(path):
                raise OptionError(f"binary_path {path!r} is not a file: give the path of an ELF binary or library")
        # The program compiles in a child process while the libraries to probe are looked for here.
        loading = self.bpf_request().start()
        try:
            found = self._libraries_at_start()
            self._bpf = bpf = loading.wait()
        except BaseException:
            loading.cancel()
            raise
        if self.options["tree"]:
            seed_tree(bpf["traced"], [self.options["pid"]])
        if self.options["comm"]:
            seed_names(bpf["named"], self.options["comm"])
        bpf.open_ring_buffer("events", self._on_record)
        for lib in found:
            self._attach(lib)
        # A process that exec'd while the program compiled was seen by no exec tracepoint: look
        # at them all again now (one read of each maps file; no file is inspected twice).
        for pid in self._initial_pids():
            for lib in self._finder.scan_pid(pid) or ():
                self._attach(lib)
        if self.options["pid"]:
            # A traced command starts once this returns and may exec a static binary with aws-lc
            # in it (Codex behind its node launcher) at any moment: its probes must not wait for
            # the AEAD programs then, or its first connection goes by unseen.
            bpf.complete()
        self._schedule_rescan()
        bpfprog.trim_heap()
        if not self._attached:
            log.warning("ssl: no TLS library found to probe yet; give binary_path for binaries "
                        "with OpenSSL/BoringSSL linked in")

    def poll(self, timeout: float) -> list[Event]:
        if self._bpf is None:
            raise RuntimeError("SslSource.poll() before open()")
        self._bpf.poll(max(0, int(timeout * 1000)))
        # The kernel wakes the reader only per SSL_WAKEUP_BYTES: take what is below that too.
        self._bpf.consume()
        now = time.monotonic()
        if self._rescans:
            self._run_rescans(now)
        if now >= self._next_rescan:
            self._rescan_traced()
            self._next_rescan = now + self.options["rescan_s"]
        if self._partials:
            self._flush_partials(now - _PARTIAL_TIMEOUT_S)
        if self._connects and self._connects[0][0] <= now:
            self._check_connects(now)
        for conn, content, head in self._aead.expire(now):
            self._emit_plain(head, conn, content)
        if now >= self._next_stats:
            self._read_drops()
            self._next_stats = now + _STATS_EVERY_S
        out, self._out = self._out, []
        return out

    def apply_options(self, changed: set[str]) -> None:
        if "rescan_s" in changed:
            self._schedule_rescan()

    def _schedule_rescan(self) -> None:
        every = self.options["rescan_s"]
        self._next_rescan = time.monotonic() + every if every else float("inf")

    def wait_fd(self) -> int | None:
        return None if self._bpf is None else self._bpf.wait_fd()

    def stop(self) -> list[Event]:
        if self._bpf is None:
            return []
        self._bpf.consume()
        self._flush_partials(float("inf"))
        self._check_connects(float("inf"))
        for conn, content, head in self._aead.expire(everything=True):
            self._emit_plain(head, conn, content)
        self._read_drops()
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        if self._bpf is not None:
            self._read_drops()
            self._bpf.close()
            self._bpf = None

    # -- attaching ---------------------------------------------------------

    def _programs(self, aead: bool = False) -> list[tuple[str, int]]:
        """The functions of bpf/ssl.bpf.c to load (besides its tracepoints). Those every capture
        uses load before open() returns, so a verifier rejection fails it in one line; the AEAD
        layer's (~1 s of verifying) follow while the source runs: a rejection then is an
        ``attach_errors`` count and a warning naming the binary that needed them."""
        if aead:
            names = {n for func in tlslibs.AEAD_FUNCS for n in _PLAIN_PROGRAMS[func]}
            return [(n, bpfprog.KPROBE) for n in sorted(names)] + [(n, bpfprog.TRACEPOINT) for n in _AEAD_TRACEPOINTS]
        names = {n for func in tlslibs.TLS_FUNCS for n in _PLAIN_PROGRAMS[func]}
        names |= {n for pair in _CALLEE_PROGRAMS.values() for n in pair}
        if self.options["handshake"]:
            names |= {"enter_handshake", "leave_handshake"}
        return [(n, bpfprog.KPROBE) for n in sorted(names)]

    def _libraries_at_start(self) -> list[tlslibs.TlsLibrary]:
        """The libraries to probe at start, in order: binary_path, the system's, the executables the
        traced root names, what running processes map."""
        found: list[tlslibs.TlsLibrary] = []
        for path in self.options["binary_path"]:
            lib = tlslibs.inspect_elf(path)
            if lib is None:
                raise OptionError(f"binary_path {path!r} exports none of {', '.join(tlslibs.TLS_FUNCS)}")
            self._finder.check(path)
            found.append(lib)
        if self.options["system_libs"]:
            node = tlslibs.node_path()
            found.extend(self._finder.check_all(tlslibs.system_library_paths() + ([node] if node else [])))
        for path in self._named_on_command_line():
            lib = self._finder.check(path)
            if lib is not None:
                found.append(lib)
        for pid in self._initial_pids():
            found.extend(self._finder.scan_pid(pid) or ())
        return found

    def _initial_pids(self) -> list[int]:
        """Processes whose mappings are scanned at start (all of them without a pid filter)."""
        pid = self.options["pid"]
        if not pid:
            return procfs.pids()
        if self.options["tree"]:
            return sorted(procfs.tree([pid]))
        return [pid]

    def follow(self, pid: int) -> bool:
        """A new process tree to follow (``record`` through a running collector): the executables
        its command line names and what it maps are probed now, before it is let run."""
        for path in self._named_on_command_line(pid):
            lib = self._finder.check(path)
            if lib is not None:
                self._attach(lib)
        for lib in self._finder.scan_pid(pid) or ():
            self._attach(lib)
        if self.options["tree"]:
            assert self._bpf is not None
            seed_tree(self._bpf["traced"], [pid])
        self._watch(pid)
        return True

    def settle(self, pids: list[int]) -> list[Event]:
        """A barrier passes: what waits for a check or a missing chunk goes out now."""
        self._check_connects(float("inf"))
        if self._partials:
            self._flush_partials(float("inf"))
        out, self._out = self._out, []
        return out

    def _named_on_command_line(self, pid: int | None = None) -> list[str]:
        """Executables named on the traced root's command line (``record -- ip netns exec
        NS claude ...``): looked at before the root runs them, so their first call is seen."""
        pid = pid or self.options["pid"]
        if not pid:
            return []
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [os.fsdecode(a) for a in f.read().split(b"\0") if a]
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except OSError:
            return []
        search = os.fsdecode(env.get(b"PATH", b"/usr/local/bin:/usr/bin:/bin")).split(":")
        found: list[str] = []
        for arg in argv:
            if arg.startswith("-") or len(arg) > 4096:
                continue
            candidates = [arg] if "/" in arg else [os.path.join(d, arg) for d in search if d]
            for path in candidates:
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    found.append(os.path.realpath(path))
                    break
        return list(dict.fromkeys(found))

    def _attach(self, lib: tlslibs.TlsLibrary) -> None:
        """Put the entry and return probes on one library; announce it."""
        # Without a tree to follow, the kernel installs the breakpoints in the traced
        # process only, so other processes using the same library pay nothing.
        pid = self.options["pid"] if self.options["pid"] and not self.options["tree"] else -1
        probes: list[str] = []
        if lib.problem is not None:
            self.count("unprobeable")
            log.warning("ssl: %s has %s compiled in, but its TLS functions were not found (%s): its TLS "
                        "traffic is not visible", lib.path, lib.found_by, lib.problem)
            return
        # Each function on its own, entry and return together: one the kernel refuses (another
        # tracer holds a probe at its address, see agentsight.kernel.libbpf) leaves the others probed.
        pairs = []
        for site in lib.sites:
            if site.via_callee and not self.options["fast_probes"]:
                site = tlslibs.ProbeSite(site.func, site.symbol, site.symbol, site.symbol)
            enter_fn, leave_fn = (_CALLEE_PROGRAMS if site.via_callee else _PLAIN_PROGRAMS)[site.func]
            pairs.append((site.describe(), site.entry, enter_fn, site.ret, leave_fn))
        if self.options["handshake"] and lib.handshake is not None:
            pairs.append((tlslibs.HANDSHAKE_FUNC, lib.handshake, "enter_handshake", lib.handshake, "leave_handshake"))
        failed: list[str] = []
        sites = {site.describe(): site for site in lib.sites}
        for name, entry, enter_fn, ret, leave_fn in pairs:
            try:
                self._probe_pair(lib.path, entry, enter_fn, ret, leave_fn, pid)
                probes.append(name)
            except Exception as exc:  # BpfError: the kernel refused, or the program is not loaded
                placed, why = self._probe_elsewhere(lib, name, sites.get(name), enter_fn, leave_fn, pid, exc)
                if placed:
                    probes.append(placed)
                else:
                    failed.append(why)
        if failed:
            self.count("attach_errors")
            log.warning("ssl: could not probe %s%s: %s", lib.path, "" if probes else " at all", "; ".join(failed))
        if not probes:
            return
        if any(site.func in tlslibs.AEAD_FUNCS for site in lib.sites):
            self._attach_aead_tracepoints()
        self.count("attached")
        self._attached_at[lib.key] = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        how = "exports" if lib.found_by == "exports" else f"found in the code ({lib.found_by})"
        log.info("ssl: probing %s (%s; %s)", lib.path, ", ".join(probes), how)
        self._out.append(Event("ssl.attached", time.time_ns(), self.name, data={
            "path": lib.path, "dev": lib.dev, "inode": lib.inode, "probes": probes, "found_by": lib.found_by,
            "search_ms": round(lib.search_s * 1000, 1)}))

    def _probe_elsewhere(self, lib: tlslibs.TlsLibrary, name: str, fast: tlslibs.ProbeSite | None, enter_fn: str,
                         leave_fn: str, pid: int, exc: Exception) -> tuple[str, str]:
        """After the kernel refused a function's probes: at its symbol when the refused ones were the
        faster placement past its prologue, else one instruction in (:meth:`_probe_displaced`).
        (what ``ssl.attached`` lists for it, "") when placed, ("", why not) otherwise."""
        if fast is not None and fast.via_callee:
            # The faster placement's addresses are taken (a probe another tracer left with
            # another reference counter): the function's own entry and return still work.
            plain_enter, plain_leave = _PLAIN_PROGRAMS[fast.func]
            try:
                self._probe_pair(lib.path, fast.symbol, plain_enter, fast.symbol, plain_leave, pid)
            except Exception as again:
                exc = bpfprog.BpfError(getattr(again, "errno", 0), f"{exc}; at its symbol: {again}")
            else:
                self.count("probes_at_symbol")
                return fast.func, ""
        func = name.split("+")[0]
        why = self._probe_displaced(lib, func, *_PLAIN_PROGRAMS.get(func, (enter_fn, leave_fn)), pid, exc)
        if why is not None:
            return "", f"{func}: {why}"
        self.count("probes_displaced")
        return f"{func} (displaced)", ""

    def _probe_displaced(self, lib: tlslibs.TlsLibrary, func: str, enter_fn: str, leave_fn: str, pid: int,
                         exc: Exception) -> str | None:
        """When the kernel refused a function's address because another tracer holds a probe
        there (EINVAL: see agentsight.kernel.libbpf), probe it one instruction in and on each of
        its ``ret``s instead (:func:`agentsight.kernel.tlslibs.displaced_site`). None when done,
        else why not (with the first error)."""
        if getattr(exc, "errno", 0) != errno.EINVAL or lib.found_by != "exports":
            return str(exc)
        site = tlslibs.displaced_site(lib.path, func, stack_args=func in tlslibs.AEAD_FUNCS)
        if isinstance(site, str):
            return f"{exc}; moved past its first instruction: not possible, {site}"
        # The return side is a plain probe on each ret: the leave program reads the return register.
        probes = [(site.entry, enter_fn, False), *((ret, leave_fn, False) for ret in site.rets)]
        try:
            self._probe_all(lib.path, probes, pid)
        except Exception as again:
            return f"{exc}; moved past its first instruction: {again}"
        log.info("ssl: %s of %s probed one instruction in and at its %d ret(s): another tracer holds its "
                 "entry", func, lib.path, len(site.rets))
        return None

    def _attach_aead_tracepoints(self) -> None:
        """Tie AEAD records to sockets: the syscall tracepoints, once (they cost every read/write)."""
        if self._aead_tracepoints:
            return
        assert self._bpf is not None
        try:
            for fn_name, points in _AEAD_TRACEPOINTS.items():
                for point in points:
                    self._bpf.attach_tracepoint(f"syscalls:{point}", fn_name)
        except Exception as exc:  # BpfError: the kernel refused, or the AEAD programs did not load
            self.count("attach_errors")
            log.warning("ssl: cannot tie AEAD records to their sockets (%s): they go out unbound", exc)
        self._aead_tracepoints = True

    def _probe_pair(self, path: str, entry: int, enter_fn: str, ret: int, leave_fn: str, pid: int) -> None:
        """Entry and return probes of one function, both or neither."""
        self._probe_all(path, [(entry, enter_fn, False), (ret, leave_fn, True)], pid)

    def _probe_all(self, path: str, probes: list[tuple[int, str, bool]], pid: int) -> None:
        """(address, program, is a return probe) for one function: all of them or none."""
        assert self._bpf is not None
        done = []
        try:
            for addr, fn_name, is_ret in probes:
                key = (path, addr, "r" if is_ret else "p")
                if key in self._attached:
                    continue
                attach = self._bpf.attach_uretprobe if is_ret else self._bpf.attach_uprobe
                done.append((key, attach(path, addr, fn_name, pid)))
                self._attached.add(key)
        except Exception:
            for key, link in done:
                self._bpf.detach(link)
                self._attached.discard(key)
            raise

    def _run_rescans(self, now: float) -> None:
        due = [pid for when, pid in self._rescans if when <= now]
        self._rescans = [(when, pid) for when, pid in self._rescans if when > now]
        for pid in dict.fromkeys(due):
            for lib in self._finder.scan_pid(pid) or ():
                self._attach(lib)

    def _watch(self, pid: int) -> None:
        """Remember a process the periodic rescan should follow (without a pid filter)."""
        if pid in self._watched:
            return
        self._watched[pid] = None
        if len(self._watched) > _WATCH_MAX:
            del self._watched[next(iter(self._watched))]

    def _traced_now(self) -> list[int]:
        """The processes the periodic rescan looks at."""
        pid = self.options["pid"]
        if not pid:
            return list(self._watched)
        if self.options["tree"]:
            assert self._bpf is not None
            return sorted(U32.unpack(k)[0] for k in self._bpf["traced"].keys())
        return [pid]

    def _rescan_traced(self) -> None:
        """Attach to TLS libraries the traced processes mapped since they were last looked at.

        Takes at most _RESCAN_MAX_PIDS per pass, going round when there are more.
        """
        started = time.perf_counter_ns()
        pids = self._traced_now()
        if len(pids) > _RESCAN_MAX_PIDS:
            start = self._rescan_cursor % len(pids)
            pids = (pids[start:] + pids[:start])[:_RESCAN_MAX_PIDS]
            self._rescan_cursor = start + _RESCAN_MAX_PIDS
        for pid in pids:
            libs = self._finder.scan_pid(pid)
            if libs is None:
                self._watched.pop(pid, None)
                continue
            for lib in libs:
                self._attach(lib)
        self.count("rescan_passes")
        self.count("rescan_pids", len(pids))
        self.count("rescan_us", (time.perf_counter_ns() - started) // 1000)

    # -- records -----------------------------------------------------------

    def _on_record(self, _ctx: Any, data: int, size: int) -> int:
        """Ring-buffer callback: decode one record (runs inside ring_buffer_poll)."""
        head = RECORD.unpack_from(ctypes.string_at(data, RECORD.size))
        kind = head[11]
        if kind == REC_DATA:
            payload = ctypes.string_at(data + RECORD.size, head[10])
            self._on_chunk(head, payload)
        elif kind == REC_HANDSHAKE:
            ts, latency, ssl, _, rc, pid, tid, uid = head[:8]
            self._out.append(Event("ssl.handshake", self._clock.wall_ns(ts), self.name, pid, tid,
                                   _comm(head[14]), {"conn": f"{pid}:{ssl:x}", "ok": rc == 1,
                                                     "latency_ns": latency, "uid": uid}))
        elif kind == REC_EXEC:
            now = time.monotonic()
            # Read now (a short-lived process may be gone by the rescan); at exec a dynamically
            # linked program maps only itself and its loader yet: only a static one is complete.
            mappings = tlslibs.exec_mappings(head[5])
            if mappings is not None:
                dynamic = any("/ld-linux" in path or "/ld-musl" in path for _, path in mappings)
                self._finder.remember(head[5], mappings, complete=not dynamic)
            self._rescans.extend((now + delay, head[5]) for delay in _RESCAN_DELAYS_S)
            self._watch(head[5])
            self._unprobed.pop(head[5], None)
        elif kind == REC_CONNECT:
            # What it maps is read now (a short-lived process may be gone by the check), or,
            # if it is gone already, what it mapped when last looked at.
            pid = head[5]
            mappings = tlslibs.exec_mappings(pid)
            if mappings is not None:
                self._finder.remember(pid, mappings)
            exe, mappings = self._finder.last_maps.get(pid, ("?", None))
            self._connects.append((time.monotonic() + _CONNECT_CHECK_S, head, mappings, exe))
        elif kind == REC_BIND:
            for conn, content, data_head in self._aead.bound(head[5], head[2], head[15]):
                self._emit_plain(data_head, conn, content)
        return 0

    def _on_chunk(self, head: tuple[Any, ...], payload: bytes) -> None:
        tid, call_id, offset, cap_len = head[6], head[3], head[8], head[9]
        failed = head[13] & FLAG_READ_FAILED
        if failed:
            self.count("read_errors")
        pending = self._partials.get(tid)
        if pending is not None and pending[0] != call_id:
            # The thread made another call: the older one will get no more chunks.
            del self._partials[tid]
            self._finish(pending[1])
            pending = None
        if pending is None:
            if offset == 0 and len(payload) == cap_len and not failed:
                self._emit(head, payload)
                return
            pending = (call_id, _Partial(head, time.monotonic()))
            self._partials[tid] = pending
        part = pending[1]
        if failed:
            part.failed_at = offset if part.failed_at is None else min(part.failed_at, offset)
        part.chunks[offset] = payload
        part.received += len(payload)
        if part.received >= cap_len:
            del self._partials[tid]
            self._finish(part)

    def _finish(self, part: _Partial) -> None:
        """Emit a reassembled call: its contiguous prefix if chunks are missing."""
        cap_len = part.head[9]
        pieces = []
        offset = 0
        while offset < cap_len and offset in part.chunks and offset != part.failed_at:
            piece = part.chunks[offset]
            pieces.append(piece)
            offset += len(piece)
        if offset < cap_len:
            self.count("incomplete")
        self._emit(part.head, b"".join(pieces))

    def _flush_partials(self, started_before: float) -> None:
        for tid, (_, part) in list(self._partials.items()):
            if part.started <= started_before:
                del self._partials[tid]
                self._finish(part)

    def _emit(self, head: tuple[Any, ...], payload: bytes) -> None:
        ts, latency, ssl, _, moved, pid, tid, uid = head[:8]
        func = head[12]
        if pid not in self._watched:
            self._watch(pid)
        if head[9] < moved:
            self.count("truncated")
        if func >= FN_SEAL:
            aad, aad_len = head[19], head[18]
            if func in (FN_SEAL, FN_SEAL_SCATTER):
                ready = self._aead.sealed(pid, ssl, aad, aad_len, payload, head)
            else:
                ready = self._aead.opened(pid, ssl, head[15], aad, aad_len, payload, head)
            for conn, content, data_head in ready:
                self._emit_plain(data_head, conn, content)
            self.stats.update(self._aead.stats)
            return
        self._emit_plain(head, f"{pid}:{ssl:x}", payload)

    def _emit_plain(self, head: tuple[Any, ...], conn: str, payload: bytes) -> None:
        """One ssl.data event: ``payload`` moved on ``conn`` by the call ``head`` describes."""
        ts, latency, _, _, moved, pid, tid, uid = head[:8]
        func = head[12]
        comm = self._comms.get(head[14])
        if comm is None:
            comm = self._comms[head[14]] = _comm(head[14])
        if func >= FN_SEAL:  # one record: its content is what the application moved
            moved = len(payload)
        self._out.append(Event("ssl.data", ts + self._clock.offset_ns, self.name, pid, tid, comm, {
            "conn": conn,
            "dir": FUNC_DIRS.get(func, "?"),
            "func": FUNC_NAMES.get(func, "?"),
            "len": moved,
            "bytes": payload,
            "truncated": moved - len(payload),
            "latency_ns": latency,
            "uid": uid,
        }))

    # -- what cannot be seen -----------------------------------------------

    def _check_connects(self, now: float) -> None:
        """Say so for each TCP connection of a traced process whose TLS is not probed (or late)."""
        due = [c for c in self._connects if c[0] <= now]
        self._connects = [c for c in self._connects if c[0] > now]
        for _, head, mappings, exe in due:
            pid = head[5]
            libs = self._finder.libraries_of(pid, mappings)
            if libs is None:
                self.count("connect_unchecked")  # gone before it could be looked at
                continue
            probed = [lib for lib in libs if lib.key in self._attached_at]
            if probed and min(self._attached_at[lib.key] for lib in probed) <= head[0]:
                continue
            late = bool(probed)
            stack: str | None
            if late:
                reason = "its TLS functions were probed only after this connection started: its first bytes may be missing"
                stack = probed[0].found_by
            else:
                broken = [lib for lib in libs if lib.problem]
                stack = broken[0].found_by if broken else None
                reason = (f"{broken[0].found_by} is compiled into {os.path.basename(broken[0].path)}, but its TLS "
                          f"functions were not found ({broken[0].problem})") if broken else self._reason(exe, mappings)
            self.count("late_connections" if late else "unprobed_connections")
            sent = self._unprobed.get(pid, 0)
            if sent >= _UNPROBED_PER_PID:
                self.count("unprobed_not_reported")
                continue
            self._unprobed[pid] = sent + 1
            self._out.append(Event("ssl.unprobed", head[0] + self._clock.offset_ns, self.name, pid, head[6],
                                   _comm(head[14]), {"path": exe, "reason": reason, "dest": _dest(head),
                                                     "late": late, "stack": stack, "uid": head[7]}))

    def _reason(self, exe: str, mappings: Any) -> str:
        reason = self._reasons.get(exe)
        if reason is None:
            mapped = [path for _, path in mappings or ()]
            reason = self._reasons[exe] = tlslibs.describe_unprobed(exe, mapped)
        return reason

    def _read_drops(self) -> None:
        """Copy the kernel's per-CPU drop counters (running totals) into stats."""
        if self._bpf is None:
            return
        table = self._bpf["drops"]
        for index, name in enumerate(DROP_STATS):
            total = table.sum(U32.pack(index))
            if total or name in self.stats:
                self.stats[name] = total


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _dest(head: tuple[Any, ...]) -> str:
    """host:port of a CONNECT record."""
    port, family, extra = head[16], head[17], head[19]
    if family == AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, extra[:4])}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, extra[:16])}]:{port}"
