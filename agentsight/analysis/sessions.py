"""Processes and agent sessions: which agent did this command, file access or LLM call belong to.

:class:`SessionTracker` keeps a process table from ``process.fork`` /
``process.exec`` / ``process.exit`` events and groups processes into
*sessions*. A session is rooted at an **agent process**:

- an exec whose program or arguments name a known agent (:data:`AGENT_PATTERNS`:
  Claude Code, Codex, Gemini CLI, Qwen Code, aider, goose, opencode...), including
  Node agents run as ``node .../cli.js``, Python ones run as ``python -m x``, and
  the native binaries npm installs inside a package (``.../bin/claude.exe``);
- a pid given as a recording root (``agentsight record -- CMD``);
- a process seen making an LLM call (``llm.call``) while in no session: an agent
  written on an SDK, whatever its name (kind ``llm-client``).

Every descendant belongs to its nearest agent ancestor's session, so the shell
a tool spawned sits under the agent that asked for it, beside its LLM calls. An
agent started by a tool (through a shell, say) is a sub-agent: a session of its
own whose ``parent`` is the session it was started from. An agent process that a
process *of the same agent* starts directly is not: the npm launcher of Codex
(``node .../codex.js``) running the native ``codex``, Gemini CLI relaunching
itself with more heap, or Codex re-executing itself as its sandbox helper are one
agent, so the child stays in its parent's session.
:meth:`SessionTracker.feed` annotates any event that has a pid with
``data["session"]`` and ``data["agent"]`` and emits ``session.start`` /
``session.end``. No I/O: pre-existing processes are added with :meth:`seed`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agentsight.event import Event

__all__ = ["AGENT_PATTERNS", "ProcessInfo", "Session", "SessionTracker", "agent_kind"]

# (kind, regex) searched in the exec'd file's path and basename and in argv[0] (argv[1:4] when the
# program is an interpreter). Each names an entry point, not a package: a package also ships helpers
# (Claude Code and Codex vendor ripgrep) that are tools of the agent, not agents.
_NPM_NATIVE = r"(\.exe)?$"  # npm installs native binaries under package bins, on Linux too, as X.exe
AGENT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("claude-code", re.compile(
        r"(^|/)claude(\.exe)?$"  # claude on PATH (npm bin link, ~/.local/bin/claude)
        r"|@anthropic-ai/claude-code/(cli\.js|bin/claude" + _NPM_NATIVE + r")"
        r"|claude-code-(linux|darwin|win32)-[a-z0-9-]+/claude" + _NPM_NATIVE +  # platform package binary
        r"|(^|/)claude/versions/[0-9][^/]*$")),  # the native installer's ~/.local/share/claude/versions/X.Y.Z
    ("codex", re.compile(
        r"(^|/)codex(-[a-z0-9_-]+)?" + _NPM_NATIVE +  # codex, codex-x86_64-unknown-linux-musl
        r"|@openai/codex/bin/codex\.js$")),
    ("gemini-cli", re.compile(r"(^|/)gemini$|@google/gemini-cli/(bundle/gemini|dist/index)\.js$")),
    ("qwen-code", re.compile(r"(^|/)qwen$|@qwen-code/qwen-code/(cli-entry|cli|bundle/qwen|dist/index)\.js$")),
    ("aider", re.compile(r"(^|/)aider$|^aider(\.main)?$")),
    ("goose", re.compile(r"(^|/)goose$")),
    ("opencode", re.compile(r"(^|/)opencode" + _NPM_NATIVE + r"|opencode-ai/bin/opencode(\.js)?$")),
    ("cursor-agent", re.compile(r"(^|/)cursor-agent$|cursor-agent/versions/[^/]+/index\.js$")),
    ("copilot", re.compile(r"(^|/)copilot$|@github/copilot/(npm-loader|index)\.js$")),
    ("amp", re.compile(r"(^|/)amp" + _NPM_NATIVE + r"|@sourcegraph/amp/dist/main\.js$")),
    ("crush", re.compile(r"(^|/)crush$|@charmland/crush/run-crush\.js$")),
    ("kilocode", re.compile(r"(^|/)kilo(code)?$|@kilocode/cli/(bin/kilo|dist/index\.js)$")),
    ("cline", re.compile(r"(^|/)cline$")),
    ("continue", re.compile(r"(^|/)cn$|@continuedev/cli/dist/(cn|index)\.js$")),
    ("openhands", re.compile(r"(^|/)openhands$|^openhands(\.cli(\.main)?)?$")),
    ("auggie", re.compile(r"(^|/)auggie$|@augmentcode/auggie/augment\.mjs$")),
]
_INTERPRETERS = re.compile(r"^(node|nodejs|bun|deno|python[0-9.]*|pypy[0-9.]*|uv|npx)$")


def agent_kind(filename: str, argv: list[str]) -> str | None:
    """The agent an exec starts, from its program and arguments, or None."""
    base = os.path.basename(filename)
    if _INTERPRETERS.match(base) or (argv and _INTERPRETERS.match(os.path.basename(argv[0]))):
        # node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js, python -m aider.main ...;
        # argv[0] too: cursor-agent runs its bundled node as `exec -a cursor-agent node index.js`.
        candidates = [a for a in argv[1:4] if not a.startswith("-")] + argv[:1]
        if not _INTERPRETERS.match(base):
            candidates.append(filename)
    else:
        candidates = [filename, *argv[:1]]
    for kind, rx in AGENT_PATTERNS:
        if any(rx.search(c) for c in candidates):
            return kind
    return None


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    ppid: int = 0
    comm: str = ""
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    start_ns: int = 0
    exit_ns: int | None = None
    exit_code: int | None = None
    session: str | None = None
    kind: str | None = None  # the agent its program is (agent_kind of exe/argv), a fork inherits it

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "comm": self.comm, "exe": self.exe, "argv": self.argv,
                "start_ns": self.start_ns, "exit_ns": self.exit_ns, "exit_code": self.exit_code,
                "session": self.session, "kind": self.kind}


@dataclass(slots=True)
class Session:
    id: str
    agent: str
    pid: int
    start_ns: int
    parent: str | None = None  # the session this one was started from (a sub-agent)
    end_ns: int | None = None
    pids: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.id, "agent": self.agent, "pid": self.pid, "start_ns": self.start_ns,
                "parent": self.parent, "end_ns": self.end_ns, "pids": sorted(self.pids)}


class SessionTracker:
    """Process table + session attribution. Feed every event; get it back annotated, plus session events."""

    def __init__(self, *, root_pids: set[int] | None = None, source: str = "sessions",
                 max_exited: int = 10000) -> None:
        self.root_pids = set(root_pids or ())
        self.source = source
        self.max_exited = max_exited
        self.processes: dict[int, ProcessInfo] = {}
        self.sessions: dict[str, Session] = {}
        self._exited: OrderedDict[int, None] = OrderedDict()

    # ------------------------------------------------------------------ queries

    def process(self, pid: int) -> ProcessInfo | None:
        return self.processes.get(pid)

    def session_of(self, pid: int) -> Session | None:
        p = self.processes.get(pid)
        return self.sessions.get(p.session) if p is not None and p.session else None

    def tree(self, session_id: str) -> list[ProcessInfo]:
        """Processes of a session, parents before children."""
        procs = [p for p in self.processes.values() if p.session == session_id]
        return sorted(procs, key=lambda p: (p.start_ns, p.pid))

    # ------------------------------------------------------------------ input

    def seed(self, pid: int, ppid: int, comm: str = "", exe: str = "", argv: list[str] | None = None,
             start_ns: int = 0) -> list[Event]:
        """Add a process that existed before tracing started (read from /proc by the caller)."""
        return self._exec(pid, ppid, comm, exe, list(argv or []), start_ns, None)

    def feed(self, event: Event) -> list[Event]:
        """Update the table from process events, annotate the event, return it plus session events."""
        d = event.data
        out: list[Event] = []
        if event.topic == "process.fork":
            # The process source's fork record: the event's pid is the child, data.ppid the parent.
            parent, child = _pid(d.get("ppid"), 0), _pid(d.get("child_pid"), event.pid)
            if child:
                out += self._fork(parent, child, event.comm, event.ts_ns, event)
        elif event.topic == "process.exec":
            pid = _pid(d.get("pid"), event.pid)
            argv = [str(a) for a in d.get("argv") or []]
            ppid = _pid(d.get("ppid"), 0)
            out += self._exec(pid, ppid, event.comm, str(d.get("filename") or ""), argv, event.ts_ns, event)
        elif event.topic == "process.exit":
            out += self._exit(_pid(d.get("pid"), event.pid), event.ts_ns, d.get("exit_code"), event)
        elif event.topic == "llm.call" and event.pid and self.session_of(event.pid) is None:
            out += self._start_session(self._ensure(event.pid, event.comm, event.ts_ns), "llm-client", event.ts_ns,
                                       event)
        self.annotate(event)
        return [event, *out]

    def annotate(self, event: Event) -> Event:
        """Set ``data["session"]``/``data["agent"]`` from the event's pid (None when unattributed)."""
        s = self.session_of(event.pid) if event.pid else None
        if s is None and event.topic == "process.fork":
            s = self.session_of(_pid(event.data.get("child_pid"), 0))
        event.data["session"] = s.id if s else None
        event.data["agent"] = s.agent if s else None
        return event

    # ------------------------------------------------------------------ transitions

    def _ensure(self, pid: int, comm: str, ts: int) -> ProcessInfo:
        p = self.processes.get(pid)
        if p is None:
            p = self.processes[pid] = ProcessInfo(pid, comm=comm, start_ns=ts)
        return p

    def _fork(self, parent: int, child: int, comm: str, ts: int, cause: Event) -> list[Event]:
        pp = self._ensure(parent, comm, ts)
        c = self.processes[child] = ProcessInfo(child, parent, pp.comm, pp.exe, list(pp.argv), ts)
        c.session, c.kind = pp.session, pp.kind
        if c.session:
            self.sessions[c.session].pids.add(child)
        if child in self.root_pids and c.session is None:
            return self._start_session(c, "recorded", ts, cause)
        return []

    def _exec(self, pid: int, ppid: int, comm: str, exe: str, argv: list[str], ts: int,
              cause: Event | None) -> list[Event]:
        p = self.processes.get(pid)
        if p is None:
            p = self.processes[pid] = ProcessInfo(pid, ppid, start_ns=ts)
            parent = self.processes.get(ppid)
            p.session = parent.session if parent else None
            if p.session:
                self.sessions[p.session].pids.add(pid)
        if ppid:
            p.ppid = ppid
        p.comm = comm or os.path.basename(exe)[:15]
        p.exe, p.argv = exe, argv
        kind = agent_kind(exe, argv)
        # The program this process ran until now (a fork's parent's), or its parent's: when that is
        # the same agent, this exec is that agent going on (launcher -> native binary), not a sub-agent.
        parent = self.processes.get(p.ppid)
        same_agent = kind is not None and kind in (p.kind, parent.kind if parent else None)
        p.kind = kind
        current = self.sessions.get(p.session) if p.session else None
        if kind is not None and not (same_agent and current and current.agent == kind):
            return self._start_session(p, kind, ts, cause)
        if p.session is None and pid in self.root_pids:
            return self._start_session(p, "recorded", ts, cause)
        return []

    def _start_session(self, p: ProcessInfo, kind: str, ts: int, cause: Event | None) -> list[Event]:
        sid = f"{p.pid}@{ts}"
        s = Session(sid, kind, p.pid, ts, parent=p.session)
        self.sessions[sid] = s
        p.session = sid
        s.pids.add(p.pid)
        # descendants already known (a session found late, e.g. on its first LLM call) move with it
        for child in self._descendants(p.pid):
            old = child.session
            if old is None or old == s.parent:
                if old:
                    self.sessions[old].pids.discard(child.pid)
                child.session = sid
                s.pids.add(child.pid)
        data = {**s.as_dict(), "exe": p.exe, "argv": p.argv, "comm": p.comm}
        return [Event("session.start", ts, self.source, p.pid, cause.tid if cause else p.pid, p.comm, data)]

    def _descendants(self, pid: int) -> list[ProcessInfo]:
        children: dict[int, list[ProcessInfo]] = {}
        for q in self.processes.values():
            children.setdefault(q.ppid, []).append(q)
        out, todo = [], [pid]
        while todo:
            for c in children.get(todo.pop(), []):
                if c.pid != pid and c not in out:
                    out.append(c)
                    todo.append(c.pid)
        return out

    def _exit(self, pid: int, ts: int, code: Any, cause: Event) -> list[Event]:
        p = self.processes.get(pid)
        if p is None:
            return []
        p.exit_ns, p.exit_code = ts, code if isinstance(code, int) else None
        out: list[Event] = []
        s = self.sessions.get(p.session) if p.session else None
        if s is not None and s.pid == pid and s.end_ns is None:
            s.end_ns = ts
            out.append(Event("session.end", ts, self.source, pid, cause.tid, p.comm,
                             {**s.as_dict(), "exit_code": p.exit_code}))
        self._exited[pid] = None
        while len(self._exited) > self.max_exited:  # forget the oldest exited processes
            old, _ = self._exited.popitem(last=False)
            gone = self.processes.pop(old, None)
            if gone and gone.session in self.sessions:
                self.sessions[gone.session].pids.discard(old)
        return out


def _pid(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default
