"""The /proc helper: which processes live, their parents, names and start times, their trees.

Every walk of the process table goes through here (the eBPF sources seeding what existed
before their program was loaded, the system source and the sessions stage finding a tree,
the commands checking a pid), so there is one reading of ``/proc/PID/stat`` and one meaning
of "a process and its descendants". A process may exit at any point of a walk: what is gone
by the time it is read is left out, never an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcEntry", "alive", "children", "descendants", "pids", "read_stat", "scan_proc", "tree"]

PROC = "/proc"


@dataclass(frozen=True)
class ProcEntry:
    pid: int
    ppid: int
    start_boot_ns: int
    comm: str
    state: str = ""   # R, S, D, Z...
    session: int = 0


def pids() -> list[int]:
    """Every live process id (threads are not listed)."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def alive(pid: int) -> bool:
    """Whether a process with this id exists now."""
    return pid > 0 and os.path.exists(f"{PROC}/{pid}")


def read_stat(pid: int, ticks: int | None = None) -> ProcEntry | None:
    """One process's parent, start time (ns since boot), name, state and session; None once it is gone."""
    try:
        stat = Path(f"{PROC}/{pid}/stat").read_bytes()
    except OSError:
        return None
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    lparen, rparen = stat.find(b"("), stat.rfind(b")")
    fields = stat[rparen + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, session field 6, starttime field 22 (clock
    # ticks since boot)
    comm = stat[lparen + 1:rparen].decode("utf-8", "replace")
    return ProcEntry(pid, int(fields[1]), int(fields[19]) * (1_000_000_000 // ticks), comm,
                     fields[0].decode(), int(fields[3]))


def scan_proc() -> dict[int, ProcEntry]:
    """Every live process: pid -> (ppid, start time in boot ns, comm)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, ProcEntry] = {}
    for pid in pids():
        entry = read_stat(pid, ticks)
        if entry is not None:
            out[entry.pid] = entry
    return out


def descendants(roots: Iterable[int], parents: Mapping[int, int]) -> set[int]:
    """``roots`` and every process below them, given pid -> ppid."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` now: read from its threads' ``children`` files where
    the kernel has them (CONFIG_PROC_CHILDREN), else from a walk of the process table."""
    try:
        tasks = os.listdir(f"{PROC}/{pid}/task")
    except OSError:
        return []
    out: set[int] = set()
    for tid in tasks:
        try:
            out.update(int(k) for k in Path(f"{PROC}/{pid}/task/{tid}/children").read_text().split())
        except FileNotFoundError:
            if os.path.exists(f"{PROC}/{pid}/task/{tid}"):  # the thread is there, its children file is not
                return sorted(entry.pid for entry in scan_proc().values() if entry.ppid == pid)
        except OSError:
            continue  # the thread ended meanwhile
    return sorted(out)


def tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and every process below them now (read from /proc), each once, parents before
    their children."""
    children: dict[int, list[int]] = {}
    for entry in scan_proc().values():
        children.setdefault(entry.ppid, []).append(entry.pid)
    out: list[int] = []
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        level, todo = todo, []
        for pid in level:
            if pid not in seen:
                seen.add(pid)
                out.append(pid)
                todo.extend(sorted(children.get(pid, ())))
    return out
