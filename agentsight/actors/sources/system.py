"""Source ``system``: CPU, memory and thread counts of a process tree (or the machine), sampled.

Every ``interval`` seconds it emits ``system.sample``. For a tree (``pid``/``pids``):
{scope: "tree", pids, cpu_percent (100 = one full core), rss_bytes, threads, processes,
children, alerts}. System-wide: {scope: "system", cpu_percent (100 = every core busy),
cpu_count, mem_used_bytes, mem_total_bytes, mem_percent, load1, processes, alerts}.

Thresholds (``cpu_threshold`` percent, ``rss_threshold_mb`` for the tree's RSS or the
machine's used memory) mark a sample's ``alerts`` while exceeded and emit
``system.alert`` {metric, value, threshold, state: "firing" | "resolved"} when a
metric crosses them. No eBPF: psutil reads /proc.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import psutil

from agentsight.actors.sources.options import SYSTEM
from agentsight.actors.sources.process import require_pids
from agentsight.event import Event, now_ns
from agentsight.kernel import procfs
from agentsight.pipeline.component import Source

__all__ = ["SystemSource", "Thresholds"]

MB = 1024 * 1024


class Thresholds:
    """Which metrics are over their threshold, and the transitions since the last sample.

    A threshold of 0 (or less) is off. ``check`` returns the alerts to emit: "firing"
    when a metric goes over, "resolved" when it comes back to or below it.
    """

    def __init__(self, limits: Mapping[str, float]) -> None:
        self.limits = dict(limits)
        self.firing: set[str] = set()

    def check(self, values: Mapping[str, float]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for metric, limit in self.limits.items():
            if limit <= 0 or metric not in values:
                continue
            over = values[metric] > limit
            if over != (metric in self.firing):
                (self.firing.add if over else self.firing.discard)(metric)
                out.append({"metric": metric, "value": values[metric], "threshold": limit,
                            "state": "firing" if over else "resolved"})
        return out


class SystemSource(Source):
    """Periodic resource samples of a process tree or of the whole machine."""

    TYPE = "system"
    OPTIONS = SYSTEM

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._roots = [p for p in [self.options["pid"], *self.options["pids"]] if p]
        self._procs: dict[int, psutil.Process] = {}
        self._thresholds = Thresholds({})
        self._next = 0.0
        self.apply_options(set(self.options))
        self.stats.update({"samples": 0, "alerts": 0, "vanished": 0})

    def apply_options(self, changed: set[str]) -> None:
        limits = {"cpu_percent": self.options["cpu_threshold"],
                  "rss_mb" if self._roots else "mem_used_mb": self.options["rss_threshold_mb"]}
        self._thresholds.limits = limits

    def open(self) -> None:
        require_pids(self._roots, "pid" if self.options["pid"] else "pids")
        # cpu_percent() measures since the previous call: prime every counter now.
        if self._roots:
            self._members()
        else:
            psutil.cpu_percent(None)
        self._next = time.monotonic() + self.options["interval"]

    def poll(self, timeout: float) -> list[Event]:
        if self.finished:
            time.sleep(timeout)
            return []
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(max(0.0, timeout))
            return []
        time.sleep(max(0.0, wait))
        # Keep the cadence; after a stall, skip the missed ticks instead of bursting.
        self._next = max(self._next + self.options["interval"], time.monotonic())
        return self.sample()

    def _members(self) -> list[psutil.Process]:
        """The live processes of the tree, reusing Process objects so cpu_percent has a baseline."""
        found: dict[int, psutil.Process] = {}
        for root in self._roots:
            try:
                proc = self._procs.get(root) or psutil.Process(root)
                if proc.is_running():
                    found[root] = proc
            except psutil.NoSuchProcess:
                continue
        if self.options["tree"] and found:
            for pid in procfs.tree(list(found)):
                if pid not in found:
                    try:
                        found[pid] = self._procs.get(pid) or psutil.Process(pid)
                    except psutil.NoSuchProcess:
                        continue
        for pid, proc in found.items():
            if pid not in self._procs:
                try:
                    proc.cpu_percent(None)
                except psutil.Error:
                    pass
        self._procs = found
        return list(found.values())

    def sample(self) -> list[Event]:
        """Take one sample now; return it (and any alert transitions)."""
        ts = now_ns()
        if self._roots:
            data = self._tree_sample()
            if data is None:
                self.finished = True
                return []
            pid = self._roots[0]
            root = self._procs.get(pid)
            try:
                comm = root.name() if root is not None else ""
            except psutil.Error:
                comm = ""
        else:
            data = self._system_sample()
            pid, comm = 0, ""
        metrics = {k: float(v) for k, v in data.items() if k in self._thresholds.limits}
        alerts = self._thresholds.check(metrics)
        data["alerts"] = sorted(self._thresholds.firing)
        self.count("samples")
        out = [Event("system.sample", ts, self.name, pid, pid, comm, data)]
        for alert in alerts:
            self.count("alerts")
            out.append(Event("system.alert", ts, self.name, pid, pid, comm, alert))
        return out

    def _tree_sample(self) -> dict[str, Any] | None:
        members = self._members()
        if not members:
            return None
        cpu = 0.0
        rss = threads = alive = 0
        for proc in members:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
                alive += 1
            except psutil.Error:  # exited or became a zombie since _members()
                self.count("vanished")
        return {
            "scope": "tree",
            "pids": list(self._roots),
            "cpu_percent": round(cpu, 1),
            "rss_bytes": rss,
            "rss_mb": round(rss / MB, 1),
            "threads": threads,
            "processes": alive,
            "children": max(0, alive - sum(1 for p in members if p.pid in self._roots)),
        }

    def _system_sample(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        used = mem.total - mem.available
        return {
            "scope": "system",
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count() or 0,
            "mem_used_bytes": used,
            "mem_used_mb": round(used / MB, 1),
            "mem_total_bytes": mem.total,
            "mem_percent": mem.percent,
            "load1": os.getloadavg()[0],
            "processes": len(psutil.pids()),
        }
