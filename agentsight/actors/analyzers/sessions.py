"""Stage ``sessions``: attribute every event to its process and agent session.

Wraps :class:`agentsight.analysis.sessions.SessionTracker`: each event gets
``data.session`` and ``data.agent`` and the stage emits ``session.start`` /
``session.end``. ``root_pids`` are sessions of their own (what ``record`` runs);
they and their ancestors-to-be are read from /proc when the stage starts, so a
tree that began before the capture is still attributed. It needs to see every
event, so run it with one worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psutil

from agentsight.analysis.sessions import SessionTracker
from agentsight.event import Event
from agentsight.kernel import procfs
from agentsight.pipeline.component import Analyzer, Capabilities, Option

__all__ = ["Sessions"]


class Sessions(Analyzer):
    TYPE = "sessions"
    CAPS = Capabilities(tick=True)
    OPTIONS = {
        "root_pids": Option(list, [], "pids that start a recorded session (with their descendants)"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        roots = {int(p) for p in self.options["root_pids"]}
        self.tracker = SessionTracker(root_pids=roots, source=name)
        self._pending: list[Event] = []
        for pid in sorted(roots):
            self._pending += self._seed_tree(pid)

    def _seed_tree(self, pid: int) -> list[Event]:
        out: list[Event] = []
        if not procfs.alive(pid):
            return out
        for member in procfs.tree([pid]):
            try:
                p = psutil.Process(member)
                with p.oneshot():
                    out += self.tracker.seed(p.pid, p.ppid(), p.name(), p.exe() or "", p.cmdline(),
                                             int(p.create_time() * 1e9))
            except psutil.Error:
                continue
        return out

    def process(self, event: Event) -> Iterable[Event]:
        out = self.tracker.feed(event)
        if self._pending:
            out, self._pending = [*self._pending, *out], []
        return out

    def tick(self, now_ns: int) -> Iterable[Event]:
        self.stats["processes"] = len(self.tracker.processes)
        self.stats["sessions"] = len(self.tracker.sessions)
        out, self._pending = self._pending, []
        return out
