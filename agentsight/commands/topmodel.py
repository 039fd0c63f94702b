"""`agentsight top`: agent sessions, live, one row each.

:class:`TopModel` is the pure part: feed it events (annotated by the ``sessions``
stage with ``data.session`` / ``data.agent``) and it keeps one :class:`Row` per
agent session: LLM calls, tokens, cost, processes, files, connections, the last
thing it did. Agents already running when top starts are given to it (:meth:`TopModel.seed`,
from :func:`agentsight.commands.topprocs.running_processes`), and so are CPU and RSS of each
live session's process tree at every refresh (:meth:`TopModel.sample`, from
:class:`agentsight.commands.topprocs.TreeUsage`): the model itself reads nothing. MCP calls
(``mcp.call``, over stdio or HTTP) count for the session of the agent that made them.
The command feeds it from a pipeline's bus: an existing one (``--pipeline``,
``--connect``) or one it starts itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agentsight.analysis.sessions import agent_kind
from agentsight.commands.render import mcp_server
from agentsight.event import Event

__all__ = ["Row", "RunningProcess", "TopModel", "SORT_KEYS", "TOPICS", "format_plain", "COLUMNS", "LEFT", "LAST", "cells"]

TOPICS = ["session.", "llm.call", "process.", "file.open", "net.connect", "ssl.unprobed", "mcp.call"]
SORT_KEYS = ("cost", "tokens", "calls", "mcp", "cpu", "rss", "age", "activity", "pid")


@dataclass(frozen=True)
class RunningProcess:
    """A process that was running when top started (what :meth:`TopModel.seed` takes)."""

    pid: int
    ppid: int
    name: str
    exe: str
    cmdline: list[str]
    start_ns: int


@dataclass
class Row:
    key: str
    agent: str
    pid: int
    comm: str = ""
    start_ns: int = 0
    state: str = "running"
    model: str = ""
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    unpriced: int = 0
    processes: int = 0
    files: int = 0
    network: int = 0
    cpu: float = 0.0
    rss: int = 0
    last_ns: int = 0
    last: str = ""
    unseen: int = 0  # connections whose TLS could not be seen (ssl.unprobed)
    mcp: int = 0  # MCP calls (requests and their replies, over stdio or HTTP)
    mcp_failed: int = 0  # of which not ok: an error, a tool error, no reply
    pids: set[int] = field(default_factory=set)

    def sort_value(self, key: str) -> Any:
        return {"cost": self.cost, "tokens": self.tokens_in + self.tokens_out, "calls": self.calls, "mcp": self.mcp,
                "cpu": self.cpu, "rss": self.rss, "age": -self.start_ns, "activity": self.last_ns,
                "pid": -self.pid}[key]


class TopModel:
    def __init__(self, pid: int = 0, comm: str = "") -> None:
        self.rows: dict[str, Row] = {}
        self.by_pid: dict[int, str] = {}
        self.filter_pid = pid
        self.filter_comm = comm
        self.events = 0

    # ------------------------------------------------------------------ input
    def seed(self, processes: Iterable[RunningProcess]) -> None:
        """Rows for the agents among processes that were running before top started (parents
        listed before their children)."""
        for p in processes:
            kind = agent_kind(p.exe, p.cmdline)
            if kind is None:
                continue
            parent = self.by_pid.get(p.ppid)
            if parent is not None and self.rows[parent].agent == kind:
                continue  # a helper process of an agent already listed
            row = Row(f"proc:{p.pid}", kind, p.pid, p.name, p.start_ns)
            row.pids.add(row.pid)
            self.rows[row.key] = row
            self.by_pid[row.pid] = row.key

    def _row_for(self, event: Event) -> Row | None:
        d = event.data
        sid = d.get("session")
        if isinstance(sid, str):
            row = self.rows.get(sid)
            if row is None:
                old = self.by_pid.get(event.pid) if event.topic == "session.start" else None
                agent = str(d.get("agent") or "agent")
                pid = int(d.get("pid") or event.pid) if event.topic.startswith("session.") else event.pid
                row = Row(sid, agent, pid, event.comm, int(d.get("start_ns") or event.ts_ns))
                if old is not None and old.startswith("proc:"):  # the /proc seed becomes the real session
                    seeded = self.rows.pop(old)
                    row.start_ns = min(row.start_ns, seeded.start_ns)
                self.rows[sid] = row
                self.by_pid[row.pid] = sid
            return row
        key = self.by_pid.get(event.pid)
        if key is None and event.topic == "mcp.call":  # no sessions stage: the row of the server's client
            client = d.get("client")
            key = self.by_pid.get(client.get("pid") or 0) if isinstance(client, dict) else None
        if key is not None:
            return self.rows.get(key)
        if event.topic == "llm.call":  # no sessions stage upstream: one row per calling process
            row = Row(f"pid:{event.pid}", "llm-client", event.pid, event.comm, event.ts_ns)
            self.rows[row.key] = row
            self.by_pid[event.pid] = row.key
            return row
        return None

    def feed(self, event: Event) -> None:
        self.events += 1
        row = self._row_for(event)
        if row is None:
            return
        d = event.data
        topic = event.topic
        row.pids.add(event.pid)
        self.by_pid.setdefault(event.pid, row.key)
        if topic == "session.end":
            code = d.get("exit_code")
            row.state = f"exited {code}" if code is not None else "exited"
            return
        if topic == "session.start":
            row.comm = str(d.get("comm") or row.comm)
            return
        row.last_ns = max(row.last_ns, event.ts_ns)
        if topic == "llm.call":
            usage = d.get("usage") or {}
            row.calls += 1
            row.model = str(d.get("model") or d.get("model_requested") or row.model)
            row.tokens_in += usage.get("input_tokens") or 0
            row.tokens_out += usage.get("output_tokens") or 0
            cost = (d.get("cost") or {}).get("total")
            if isinstance(cost, int | float):
                row.cost += cost
            else:
                row.unpriced += 1
            row.last = f"llm {row.model} ({d.get('status_code')})"
        elif topic == "process.exec":
            row.processes += 1
            argv = d.get("argv") or []
            row.last = "exec " + " ".join(str(a) for a in argv[:4])[:60]
        elif topic == "process.exit" and event.pid == row.pid and row.key.startswith(("proc:", "pid:")):
            row.state = f"exited {d.get('exit_code')}"
        elif topic == "file.open":
            row.files += 1
            row.last = f"open {d.get('path')}"[:60]
        elif topic == "net.connect":
            row.network += 1
            row.last = f"connect {d.get('address')}:{d.get('port')}"
        elif topic == "mcp.call":
            row.mcp += 1
            if d.get("status") != "ok":
                row.mcp_failed += 1
            what = d.get("tool") or d.get("uri") or d.get("prompt") or ""
            row.last = f"mcp {mcp_server(d)} {d.get('method')} {what}".strip()[:60]
        elif topic == "ssl.unprobed":
            row.unseen += 1
            exe = str(d.get("path") or "?").rsplit("/", 1)[-1]
            row.last = f"TLS {'seen late' if d.get('late') else 'not visible'}: {exe} -> {d.get('dest')}"

    # ------------------------------------------------------------------ resources
    def sample(self, usage: Callable[[int], tuple[float, int] | None]) -> None:
        """CPU % (100 = one core) and RSS of each running session's process tree, from ``usage``
        (:class:`agentsight.commands.topprocs.TreeUsage` reads them; None: the process is gone)."""
        for row in self.rows.values():
            if row.state != "running":
                row.cpu = 0.0
                continue
            got = usage(row.pid)
            if got is None:
                row.state = "exited"
                continue
            row.cpu, row.rss = got

    # ------------------------------------------------------------------ output
    def visible(self, sort: str = "cost") -> list[Row]:
        rows = [r for r in self.rows.values()
                if (not self.filter_pid or self.filter_pid == r.pid or self.filter_pid in r.pids)
                and (not self.filter_comm or self.filter_comm in r.comm or self.filter_comm in r.agent)]
        return sorted(rows, key=lambda r: r.sort_value(sort), reverse=True)


COLUMNS = ["agent", "pid", "state", "age", "model", "calls", "mcp", "tok in", "tok out", "cost", "procs", "files",
           "net", "cpu%", "rss", "last activity"]
LAST = len(COLUMNS) - 1  # the last activity: the one column that wraps
LEFT = {0, 2, 4, LAST}


def _age(ns: int, now_ns: int) -> str:
    s = max(0, (now_ns - ns) // 1_000_000_000)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f}M" if n else "-"


def cells(row: Row, now_ns: int) -> list[str]:
    since = f"{_age(row.last_ns, now_ns)} ago " if row.last_ns else ""
    cost = f"${row.cost:.4f}" + ("+?" if row.unpriced else "") if row.calls else "-"
    # "+N?": N connections whose calls could not be seen, so the count may be short.
    calls = str(row.calls) + (f" +{row.unseen}?" if row.unseen else "")
    mcp = f"{row.mcp}" + (f" ({row.mcp_failed} failed)" if row.mcp_failed else "") if row.mcp else "-"
    return [row.agent, str(row.pid), row.state, _age(row.start_ns, now_ns), row.model or "-", calls, mcp,
            f"{row.tokens_in:,}", f"{row.tokens_out:,}", cost, str(row.processes), str(row.files),
            str(row.network), f"{row.cpu:.0f}", _mib(row.rss), (since + row.last).strip() or "-"]


def format_plain(rows: list[Row], now_ns: int | None = None) -> str:
    from agentsight.commands.render import table

    now = now_ns or time.time_ns()
    if not rows:
        return "no agent sessions seen yet"
    return table(COLUMNS, [cells(r, now) for r in rows], left=LEFT)
