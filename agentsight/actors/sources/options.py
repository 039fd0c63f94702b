"""The options of the capture sources (ssl, process, stdio, system), each declared once.

Each source takes its ``OPTIONS`` from here; an option that is also a flag of `debug` /
`record` says so (``flag``, ``flag_help``), and the command line and
:class:`agentsight.pipeline.presets.Capture` are built from that declaration. The module is
light on purpose (no eBPF, no bcc, no psutil): every command imports it at start.
"""

from __future__ import annotations

import os
from typing import Any

from agentsight.pipeline.component import Option

__all__ = ["SSL", "PROCESS", "STDIO", "SYSTEM", "CAPTURE_SOURCES", "COMM_MAX", "CHUNK", "MAX_CHUNKS",
           "PAGE_SIZE", "STDIO_MAX_BYTES_LIMIT", "check_comm", "check_pids", "check_ring_kib", "ring_pages"]

COMM_MAX = 15
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# ssl: a call is copied in chunks of CHUNK bytes, at most MAX_CHUNKS of them.
CHUNK = 16384
MAX_CHUNKS = 256
# stdio: the per-cpu scratch (a record plus max_bytes/2 of slack for vectored copies, see
# bpf/stdio.bpf.c) must stay under the kernel's 32 KiB per-cpu value limit.
STDIO_MAX_BYTES_LIMIT = 16384


def check_comm(value: str) -> str | None:
    """Option check: a comm prefix the kernel can compare (printable ASCII, 15 chars)."""
    if len(value) > COMM_MAX:
        return f"a process name has at most {COMM_MAX} characters, got {len(value)}"
    if value and not (value.isascii() and value.isprintable()):
        return "must be printable ASCII"
    return None


def check_pids(value: list[Any]) -> str | None:
    if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in value):
        return "must be a list of positive process ids"
    return None


def check_ring_kib(value: int) -> str | None:
    pages = value * 1024 // PAGE_SIZE
    if value * 1024 % PAGE_SIZE or pages < 1 or pages & (pages - 1):
        return f"must be a power of two number of {PAGE_SIZE // 1024} KiB pages, like 1024"
    return None


def ring_pages(ring_kib: int) -> int:
    """The ring buffer's size in pages (what BPF_RINGBUF_OUTPUT takes)."""
    return ring_kib * 1024 // PAGE_SIZE


def _ring(default_kib: int) -> Option:
    return Option(int, default_kib, "ring buffer size in KiB (a power of two number of pages)", check=check_ring_kib,
                  renamed_from=("ring_pages", lambda pages: pages * 4))


def _ssl_max_bytes(value: int) -> str | None:
    if not 1 <= value <= CHUNK * MAX_CHUNKS:
        return f"must be between 1 and {CHUNK * MAX_CHUNKS} (the kernel copies at most {MAX_CHUNKS} chunks of {CHUNK})"
    return None


def _rescan(value: float) -> str | None:
    if not 0 <= value <= 3600:
        return "must be between 0 (no periodic rescan) and 3600 seconds"
    return None


def _stdio_max_bytes(value: int) -> str | None:
    if not 1 <= value <= STDIO_MAX_BYTES_LIMIT:
        return f"must be between 1 and {STDIO_MAX_BYTES_LIMIT}, got {value}"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be more than 0, got {value}"


SSL: dict[str, Option] = {
    "pid": Option(int, 0, "trace only this process (0: every process)"),
    "tree": Option(bool, False, "also trace every descendant of pid, including later ones"),
    "uid": Option(int, -1, "trace only processes running as this uid (-1: any)",
                  flag="--ssl-uid", flag_help="TLS: only this user id (-1: any)."),
    "comm": Option(str, "", "only processes whose name starts with this (bpf/filter.h)", check=check_comm),
    "binary_path": Option(list, [], "more ELF files to probe (binaries with a TLS library linked in)",
                          flag="--binary-path", flag_help="TLS: another binary or library to probe (repeatable)."),
    "system_libs": Option(bool, True, "probe the system libssl and the node on PATH"),
    "max_bytes": Option(int, 4 << 20, "capture at most this many bytes per call; the rest is "
                        "reported as truncated", check=_ssl_max_bytes),
    "handshake": Option(bool, False, "also report SSL_do_handshake results and timing",
                        flag="--ssl-handshake", flag_help="TLS: also report handshakes."),
    "ring_kib": _ring(16384),
    "fast_probes": Option(bool, True, "probe past verified prologues where that avoids a single-step "
                          "(see agentsight.kernel.tlslibs); false puts every probe on its symbol"),
    "rescan_s": Option(float, 5.0, "look for newly loaded TLS libraries in the traced processes this "
                       "often (0: only at start and after exec)", live=True, check=_rescan),
}

PROCESS: dict[str, Option] = {
    "comm": Option(str, "", "only processes whose name starts with this", check=check_comm),
    "pid": Option(int, 0, "only this process (0 = any); with tree, its descendants too"),
    "pids": Option(list, [], "start with these processes and follow their descendants", check=check_pids),
    "tree": Option(bool, False, "follow the descendants of pid, in the kernel"),
    "duration": Option(int, 0, "report process.exit only for processes that lived this many ms",
                       flag="--duration", flag_help="process: report exits of processes that lived at least this "
                       "many ms."),
    "mode": Option(int, 0, "0 = all events, 1 = process lifecycle only (no file/net), "
                   "2 = only processes matching pid/comm and their descendants", choices=(0, 1, 2),
                   flag="--mode", flag_help="process: 0 all events, 1 lifecycle only, 2 only matching processes "
                   "and their descendants."),
    "ring_kib": _ring(1024),
    "open_window_ms": Option(int, 1000, "collapse repeated opens of one path by one pid within this window",
                             live=True),
    "open_rate": Option(int, 200, "at most this many file.open events per pid per second", live=True),
}

STDIO: dict[str, Option] = {
    "pid": Option(int, 0, "capture this process (0 = none); with tree, its descendants too"),
    "pids": Option(list, [], "start with these processes and follow their descendants", check=check_pids),
    "tree": Option(bool, False, "follow the descendants of pid, in the kernel"),
    "uid": Option(int, -1, "only processes of this user id (-1 = any)",
                  flag="--stdio-uid", flag_help="stdio: only this user id (-1: any)."),
    "comm": Option(str, "", "only processes whose name starts with this", check=check_comm),
    "follow": Option(bool, False, "start with no process and trace the trees clients ask for "
                     "(record through a running collector)"),
    "all_fds": Option(bool, False, "capture every file descriptor, not only 0, 1 and 2",
                      flag="--stdio-all-fds", flag_help="stdio: every fd, not only 0-2."),
    # The flag's default is "not given": `debug mcp` keeps the most then (STDIO_MAX_BYTES_LIMIT).
    "max_bytes": Option(int, 8192, "payload bytes kept per read/write (the rest is flagged)",
                        check=_stdio_max_bytes, flag="--stdio-max-bytes", flag_default=None,
                        flag_help="stdio: bytes kept per call (default 8192; 16384 for mcp)."),
    "ring_kib": _ring(1024),
}

SYSTEM: dict[str, Option] = {
    "pid": Option(int, 0, "sample this process (0 = the whole machine)"),
    "pids": Option(list, [], "sample these processes", check=check_pids),
    "tree": Option(bool, True, "include every descendant of the sampled processes"),
    "interval": Option(float, 1.0, "seconds between samples", check=_positive, live=True,
                       flag="--interval", flag_help="system: seconds between samples."),
    "cpu_threshold": Option(float, 0.0, "alert above this CPU percent (0 = off)", live=True,
                            flag="--cpu-threshold", flag_help="system: alert above this CPU %."),
    "rss_threshold_mb": Option(float, 0.0, "alert above this many MiB of RSS (0 = off)", live=True,
                               flag="--memory-threshold", flag_help="system: alert above this RSS in MiB."),
}

# The sources a capture (`debug`, `record`) can turn on, by type: where its flags come from.
CAPTURE_SOURCES: dict[str, dict[str, Option]] = {"ssl": SSL, "process": PROCESS, "stdio": STDIO, "system": SYSTEM}
