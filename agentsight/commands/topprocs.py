"""What `top` reads from /proc for its model (:class:`agentsight.commands.topmodel.TopModel`,
which reads nothing itself): the processes running when it starts, and the CPU and memory of
each session's process tree at every refresh (psutil; trees from :mod:`agentsight.kernel.procfs`).
"""

from __future__ import annotations

import os
import time

import psutil

from agentsight.commands.topmodel import RunningProcess
from agentsight.kernel import procfs

__all__ = ["running_processes", "TreeUsage"]


def running_processes() -> list[RunningProcess]:
    """Every running process, oldest first (for a user who is not root, only that user's own, as
    the collector shows them)."""
    me = os.geteuid()
    out: list[RunningProcess] = []
    for p in psutil.process_iter(["pid", "ppid", "name", "exe", "cmdline", "create_time", "uids"]):
        info = p.info
        if me != 0 and (info.get("uids") is None or info["uids"].real != me):
            continue
        out.append(RunningProcess(info["pid"], info.get("ppid") or 0, info.get("name") or "", info.get("exe") or "",
                                  list(info.get("cmdline") or []),
                                  int((info.get("create_time") or time.time()) * 1e9)))
    return sorted(out, key=lambda r: (r.start_ns, r.pid))


class TreeUsage:
    """CPU % (100 = one core) and RSS of a process and its descendants, now.

    Called with a root pid: (cpu, rss), or None once the root is gone. The psutil objects are
    kept between calls, since a process's CPU % is measured from the previous call."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def __call__(self, root: int) -> tuple[float, int] | None:
        if not procfs.alive(root):
            return None
        cpu, rss = 0.0, 0
        for pid in procfs.tree([root]):
            try:
                p = psutil.Process(pid)
                cached = self._procs.get(pid)
                if cached is None or cached.create_time() != p.create_time():
                    cached = self._procs[pid] = p
                    cached.cpu_percent(None)  # the first call primes the counter
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
            except psutil.Error:
                continue
        return cpu, rss
