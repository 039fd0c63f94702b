"""MCP (Model Context Protocol) calls read from stdio pipes and HTTP exchanges.

Records (layout in docs/analyzers.md): ``mcp.call`` (one request and its reply, or why none
came), ``mcp.notification``, ``mcp.session.end`` (one conversation's counts when it ends).

Theory of operation
-------------------
A *channel* is one MCP conversation between a client and a server.

**stdio.** A local server is a process the agent started with pipes on its stdin and
stdout. The ``stdio`` source captures that process's reads of fd 0 (what the client wrote
to it) and writes to fd 1 (what it answers), so both directions of the pipe are seen on the
server's side, in the order they happened; the channel is keyed by the server's pid. Each
direction goes through a :class:`~agentsight.analysis.jsonrpc.LineFramer` (newline framing
across reads and partial writes, capture cuts, retried writes). A pipe becomes MCP with its
first JSON-RPC 2.0 message; from then on a line that is not one is *garbage*: counted
(``garbage_lines``/``garbage_bytes``, also the lines that came before) and skipped. The
server's command line comes from ``process.exec`` (or ``proc_lookup`` for a process that
started before the capture), its client is the nearest ancestor that is not a launcher
(``npx``, ``uvx``, a shell). When the server exits, requests still waiting are reported as
``no_reply`` once ``exit_grace_s`` has passed (the exit and the last writes travel by
different sources), then the channel's ``mcp.session.end``.

**HTTP** (streamable HTTP, and the older HTTP+SSE transport). An ``http.exchange`` whose
request body is JSON-RPC 2.0 with an MCP method or MCP headers is a client's POST: its
messages, then the answer's (an ``application/json`` body, or every event of a
``text/event-stream`` one, each at its own time). The channel is the ``Mcp-Session-Id``
(request or response header; the legacy transport's ``session_id`` query), else the
client process and URL (2026-07-28 sessionless requests pair within their exchange). A GET
event stream (server-to-client messages) is read live from ``http.stream.chunk`` when its
head names the session, else when it ends; a response whose request was not seen yet waits
in the channel for it. A DELETE ends the session; so does the client's exit.

**Pairing** is by request id per channel and direction (servers send requests too:
``sampling/createMessage``, ``roots/list``, ``elicitation/create``). ``notifications/cancelled``
closes its request as ``cancelled``. A message cut by the capture (longer than the source's
``max_bytes``) still completes its call when its id can be read, or when it is the only
request waiting (``truncated: true``, the captured text in ``partial``).

**The model.** ``tools/call`` records go through :class:`~agentsight.analysis.mcplink.ToolLinker`
with the ``llm.call`` records that pass this stage: ``llm`` on the call, ``mcp`` on the LLM calls.
An unlinked tool run is held up to ``link_wait_s`` for the LLM call that asked for it (it can
reach this stage later than the stdio or HTTP records of the run).

Arguments, params, results, errors and command lines are redacted (:mod:`.redact`) unless
``redact`` is off. Pure logic: no zmq, no bcc, no /proc (``proc_lookup`` is injected).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from agentsight.analysis.httpstream import header_value
from agentsight.analysis.jsonrpc import Line, LineFramer, decode_messages, id_key, scan_prefix
from agentsight.analysis.mcplink import ToolLinker, ToolRun, meta_tool_use_ids
from agentsight.analysis.redact import redact_value
from agentsight.analysis.sse import SseParser, as_bytes, is_event_stream, parse_sse
from agentsight.event import Event, repair

__all__ = ["McpCalls", "McpStats", "ProcInfo", "is_mcp_method", "span_attributes", "span_name", "TOPICS",
           "STATUSES", "LAUNCHERS"]

TOPICS = ("mcp.call", "mcp.notification", "mcp.session.end")
STATUSES = ("ok", "error", "tool_error", "no_reply", "cancelled", "unfinished")
CLIENT, SERVER = "client", "server"  # who sent a message
_OTHER = {CLIENT: SERVER, SERVER: CLIENT}
_MCP_PREFIXES = ("tools/", "resources/", "prompts/", "notifications/", "logging/", "completion/", "sampling/",
                 "elicitation/", "roots/", "server/", "tasks/")
# Processes that start a server without being its client (their child is).
LAUNCHERS = frozenset({"sh", "bash", "dash", "zsh", "env", "npx", "npm", "npm exec", "pnpm", "yarn", "bunx", "uvx",
                       "uv", "pipx", "timeout", "nohup", "sudo", "setsid", "stdbuf", "node-npx"})
_PARTIAL_MAX = 4096  # characters of a cut message kept in ``partial``


def is_mcp_method(method: Any) -> bool:
    """A method of the MCP protocol (or one of its namespaces)."""
    return isinstance(method, str) and (method in ("initialize", "ping") or method.startswith(_MCP_PREFIXES))


@dataclass
class ProcInfo:
    """What the stage knows of a process (from process events or ``proc_lookup``)."""

    ppid: int | None = None
    comm: str = ""
    argv: list[str] | None = None
    exe: str | None = None


@dataclass
class McpStats:
    messages: int = 0
    calls: int = 0
    notifications: int = 0
    garbage_lines: int = 0
    garbage_bytes: int = 0
    cut_messages: int = 0
    lost_bytes: int = 0
    rewritten_bytes: int = 0
    oversize: int = 0
    unanswered: int = 0
    orphan_responses: int = 0
    non_mcp_jsonrpc: int = 0
    linked_tool_calls: int = 0
    held: int = 0
    channels: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Request:
    id: Any
    method: str | None
    params: Any
    sender: str
    ts_ns: int
    size: int
    cut: bool = False
    partial: str | None = None


@dataclass
class _Channel:
    key: str
    transport: str
    mcp_session: str | None
    server: dict[str, Any]
    client: dict[str, Any]
    pid: int  # the process the records are about: the server (stdio) or the client (HTTP)
    tid: int
    comm: str
    session: str | None = None
    agent: str | None = None
    client_pid: int | None = None
    hold_orphans: bool = False
    protocol_version: str | None = None
    is_mcp: bool = False
    pending: dict[str, _Request] = field(default_factory=dict)
    orphans: dict[str, tuple[dict[str, Any], int, int]] = field(default_factory=dict)
    frames: dict[str, LineFramer] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("messages", "calls", "notifications", "unanswered", "garbage_lines", "garbage_bytes", "cut_messages"), 0))
    pre_lines: int = 0
    pre_bytes: int = 0
    n: int = 0
    ts_start_ns: int = 0
    exited: float | None = None  # clock() when its process exited
    exit_ts_ns: int = 0
    exit_code: Any = None
    exit_signal: str | None = None

    def scope(self) -> str:
        return self.session if self.session else f"pid:{self.client_pid or self.pid}"


@dataclass
class _Held:
    run: ToolRun
    event: Event
    since: float


@dataclass
class _LiveStream:
    parser: SseParser
    session: str | None
    event: Event
    buffered: list[tuple[str, int]] = field(default_factory=list)  # (data, ts) before the channel was known


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _text(v: Any) -> str:
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    return v if isinstance(v, str) else ""


def _exit_reason(ch: _Channel) -> str:
    if ch.transport != "stdio":
        return "the client exited"
    if ch.exit_signal:
        return f"the server was killed ({ch.exit_signal})"
    return "the server exited" + (f" (exit code {ch.exit_code})" if ch.exit_code is not None else "")


def _query_session(query: Any, target: Any = None) -> str | None:
    """The legacy HTTP+SSE transport's session id, from a query string or a URL."""
    q = _text(query)
    if not q and isinstance(target, str) and "?" in target:
        q = target.split("?", 1)[1]
    if not q:
        return None
    params = parse_qs(q)
    for name in ("session_id", "sessionId"):
        if params.get(name):
            return params[name][0]
    return None


class McpCalls:
    """Stage logic: stdio, HTTP, process and llm.call events in; ``mcp.*`` records out (see module doc)."""

    def __init__(self, *, source: str = "mcp", redact: bool = True, link_wait_s: float = 3.0,
                 exit_grace_s: float = 1.0, max_message: int = 8 << 20, max_channels: int = 4096,
                 max_pending: int = 4096, proc_lookup: Callable[[int], ProcInfo | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.redact = redact
        self.link_wait_s = link_wait_s
        self.exit_grace_s = exit_grace_s
        self.max_message = max_message
        self.max_channels = max_channels
        self.max_pending = max_pending
        self.proc_lookup = proc_lookup
        self.clock = clock
        self.stats = McpStats()
        self.linker = ToolLinker()
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._procs: OrderedDict[int, ProcInfo] = OrderedDict()
        self._held: list[_Held] = []
        self._live: dict[tuple[Any, Any], _LiveStream] = {}

    # ------------------------------------------------------------------ entry points

    def feed(self, event: Event) -> list[Event]:
        """The records ``event`` completes (the event itself is not returned; an ``llm.call`` may
        be annotated in place)."""
        topic = event.topic
        try:
            if topic == "stdio.data":
                return self._stdio(event)
            if topic == "llm.call":
                return self._llm(event)
            if topic == "http.exchange":
                return self._exchange(event)
            if topic == "http.stream.head":
                return self._stream_head(event)
            if topic == "http.stream.chunk":
                return self._stream_chunk(event)
            if topic.startswith("process."):
                return self._process(event)
        except Exception:  # a shape this code did not foresee: counted, never fatal
            self.stats.errors += 1
        return []

    def tick(self) -> list[Event]:
        """Release held tool runs whose wait is over and close channels whose process exited."""
        now = self.clock()
        out: list[Event] = []
        if self._held:
            due = [h for h in self._held if now - h.since >= self.link_wait_s]
            for h in due:
                out += self._release(h)
        for ch in [c for c in self._channels.values() if c.exited is not None and now - c.exited >= self.exit_grace_s]:
            out += self._close(ch, _exit_reason(ch), ch.exit_ts_ns, "no_reply")
        self.stats.channels = len(self._channels)
        self.stats.held = len(self._held)
        return out

    def flush(self) -> list[Event]:
        """The end of the input: every channel closed (requests still waiting are ``unfinished``), every
        held run released."""
        out: list[Event] = []
        for ch in list(self._channels.values()):
            if ch.exited is not None:
                out += self._close(ch, _exit_reason(ch), ch.exit_ts_ns, "no_reply")
            else:
                out += self._close(ch, "the capture ended", 0, "unfinished")
        for h in list(self._held):
            out += self._release(h)
        self.stats.channels = 0
        self.stats.held = 0
        return out

    # ------------------------------------------------------------------ processes

    def _proc(self, pid: int) -> ProcInfo | None:
        info = self._procs.get(pid)
        if info is None and self.proc_lookup is not None and pid > 0:
            info = self.proc_lookup(pid)
            if info is not None:
                self._remember(pid, info)
        return info

    def _remember(self, pid: int, info: ProcInfo) -> None:
        self._procs[pid] = info
        self._procs.move_to_end(pid)
        while len(self._procs) > 65536:
            self._procs.popitem(last=False)

    def _client_of(self, pid: int) -> tuple[int | None, ProcInfo | None]:
        """The server's client: its nearest ancestor that is not a launcher (else its parent)."""
        info = self._proc(pid)
        parent = info.ppid if info else None
        first: tuple[int | None, ProcInfo | None] = (parent, self._proc(parent) if parent else None)
        seen = 0
        while parent and seen < 16:
            p = self._proc(parent)
            if p is None:
                break
            name = (p.comm or "").strip()
            base = (p.argv[0].rsplit("/", 1)[-1] if p.argv else "")
            if name not in LAUNCHERS and base not in LAUNCHERS and not name.startswith("npm "):
                return parent, p
            parent = p.ppid
            seen += 1
        return first

    def _process(self, event: Event) -> list[Event]:
        d = event.data
        pid = event.pid
        if event.topic == "process.fork":
            ppid = d.get("ppid")
            parent = self._procs.get(ppid) if isinstance(ppid, int) else None
            self._remember(pid, ProcInfo(ppid if isinstance(ppid, int) else None, event.comm,
                                         parent.argv if parent else None, parent.exe if parent else None))
        elif event.topic == "process.exec":
            info = self._procs.get(pid) or ProcInfo()
            ppid = d.get("ppid")
            if isinstance(ppid, int):
                info.ppid = ppid
            argv = d.get("argv")
            info.argv = [_text(a) or str(a) for a in argv] if isinstance(argv, list) else info.argv
            info.exe = _str(d.get("filename")) or info.exe
            info.comm = event.comm
            self._remember(pid, info)
            ch = self._channels.get(f"stdio:{pid}")
            if ch is not None:  # the pipe was seen before the exec (the sources race): who it is, now
                self._identify(ch, event.comm)
        elif event.topic == "process.exit":
            ch = self._channels.get(f"stdio:{pid}")
            now = self.clock()
            if ch is not None and ch.exited is None:
                ch.exited, ch.exit_ts_ns, ch.exit_code = now, event.ts_ns, d.get("exit_code")
                if d.get("signal"):
                    ch.exit_signal = _str(d.get("signal_name")) or f"signal {d.get('signal')}"
            for c in self._channels.values():
                if c.transport == "http" and c.client_pid == pid and c.exited is None:
                    c.exited, c.exit_ts_ns = now, event.ts_ns
        return []

    def _server_identity(self, pid: int, comm: str) -> dict[str, Any]:
        info = self._proc(pid)
        argv = list(info.argv) if info and info.argv else None
        return {"pid": pid, "comm": (info.comm if info and info.comm else comm), "argv": argv,
                "exe": info.exe if info else None}

    # ------------------------------------------------------------------ channels

    def _new_channel(self, ch: _Channel) -> _Channel:
        self._channels[ch.key] = ch
        while len(self._channels) > self.max_channels:
            old = next(iter(self._channels.values()))
            self._drop(old)
        self.stats.channels = len(self._channels)
        return ch

    def _drop(self, ch: _Channel) -> None:
        """Forget a channel without records (one never MCP, or pushed out by newer ones)."""
        self._channels.pop(ch.key, None)

    def _stdio_channel(self, event: Event) -> _Channel:
        key = f"stdio:{event.pid}"
        ch = self._channels.get(key)
        if ch is not None:
            self._channels.move_to_end(key)
            return ch
        d = event.data
        ch = _Channel(key, "stdio", f"stdio:{event.pid}@{event.ts_ns}", {}, {}, event.pid, event.pid, event.comm,
                      _str(d.get("session")), _str(d.get("agent")), ts_start_ns=event.ts_ns)
        ch.frames = {CLIENT: LineFramer(self.max_message), SERVER: LineFramer(self.max_message)}
        self._identify(ch, event.comm)
        return self._new_channel(ch)

    def _identify(self, ch: _Channel, comm: str) -> None:
        """A stdio server's command line and its client, as far as known (names from initialize kept)."""
        ch.server.update(self._server_identity(ch.pid, comm))
        cpid, cinfo = self._client_of(ch.pid)
        if cpid is not None or ch.client_pid is None:
            ch.client.update({"pid": cpid, "comm": cinfo.comm if cinfo else None,
                              "argv": list(cinfo.argv) if cinfo and cinfo.argv else None})
            ch.client_pid = cpid

    def _http_channel(self, event: Event, sid: str | None, host: str | None, path: str | None) -> _Channel:
        key = f"http:{sid}" if sid else f"http:{event.pid}:{host}{path}"
        ch = self._channels.get(key)
        if ch is not None:
            self._channels.move_to_end(key)
            if ch.exited is not None:
                ch.exited = None  # still in use: its client lives on (a pid reused)
            return ch
        d = event.data
        server = {"url": f"https://{host or '?'}{path or ''}", "host": host, "path": path}
        client = {"pid": event.pid, "comm": event.comm}
        ch = _Channel(key, "http", sid, server, client, event.pid, event.tid, event.comm, _str(d.get("session")),
                      _str(d.get("agent")), client_pid=event.pid, hold_orphans=True, ts_start_ns=event.ts_ns)
        return self._new_channel(ch)

    # ------------------------------------------------------------------ stdio

    def _stdio(self, event: Event) -> list[Event]:
        d = event.data
        fd, direction = d.get("fd"), d.get("dir")
        if fd == 0 and direction == "read":
            sender = CLIENT
        elif fd == 1 and direction == "write":
            sender = SERVER
        else:
            return []
        payload = as_bytes(d.get("bytes"))
        size = d.get("len")
        missing = size - len(payload) if isinstance(size, int) and size > len(payload) else 0
        ch = self._stdio_channel(event)
        if ch.session is None and isinstance(d.get("session"), str):
            ch.session, ch.agent = d["session"], _str(d.get("agent"))
        framer = ch.frames[sender]
        before = (framer.lost_bytes, framer.rewritten_bytes, framer.oversize)
        lines = framer.feed(payload, missing, rewrite_check=sender == SERVER)
        self.stats.lost_bytes += framer.lost_bytes - before[0]
        self.stats.rewritten_bytes += framer.rewritten_bytes - before[1]
        self.stats.oversize += framer.oversize - before[2]
        out: list[Event] = []
        for line in lines:
            out += self._line(ch, line, sender, event.ts_ns)
        if not ch.is_mcp and not framer.pending and not ch.frames[_OTHER[sender]].pending and ch.pre_lines > 10_000:
            self._drop(ch)  # a busy process that never spoke MCP: do not keep its state forever
        return out

    def _junk(self, ch: _Channel, size: int) -> None:
        if ch.is_mcp:
            ch.counts["garbage_lines"] += 1
            ch.counts["garbage_bytes"] += size
            self.stats.garbage_lines += 1
            self.stats.garbage_bytes += size
        else:
            ch.pre_lines += 1
            ch.pre_bytes += size

    def _become_mcp(self, ch: _Channel) -> None:
        if ch.is_mcp:
            return
        ch.is_mcp = True
        # What the pipe carried before its first message was not MCP either: garbage too.
        ch.counts["garbage_lines"] += ch.pre_lines
        ch.counts["garbage_bytes"] += ch.pre_bytes
        self.stats.garbage_lines += ch.pre_lines
        self.stats.garbage_bytes += ch.pre_bytes
        ch.pre_lines = ch.pre_bytes = 0

    def _line(self, ch: _Channel, line: Line, sender: str, ts: int) -> list[Event]:
        if not line.kept:
            if line.cut and ch.is_mcp:
                ch.counts["cut_messages"] += 1
                self.stats.cut_messages += 1
                return []
            self._junk(ch, line.size)
            return []
        if line.cut:
            return self._cut(ch, line, sender, ts)
        msgs = decode_messages(line.data)
        if msgs is None:
            self._junk(ch, line.size)
            return []
        self._become_mcp(ch)
        out: list[Event] = []
        each = line.size // len(msgs)
        for kind, msg in msgs:
            out += self._message(ch, kind, msg, sender, ts, each)
        return out

    def _cut(self, ch: _Channel, line: Line, sender: str, ts: int) -> list[Event]:
        """A message whose end the capture did not keep: complete what it can."""
        values, names = scan_prefix(line.data)
        if values.get("jsonrpc") != "2.0" and not ({"method", "result", "error"} & set(names)):
            if ch.is_mcp:
                ch.counts["cut_messages"] += 1
                self.stats.cut_messages += 1
            return []
        self._become_mcp(ch)
        ch.counts["cut_messages"] += 1
        self.stats.cut_messages += 1
        partial = line.data.decode("utf-8", "replace")[:_PARTIAL_MAX]
        method = values.get("method")
        rid = values.get("id")
        if isinstance(method, str):
            if rid is None and "id" not in names:
                return self._notify(ch, method, None, sender, ts, truncated=True)
            if "id" not in values:
                # The id comes after the params (the TypeScript SDK writes it last): not readable.
                return []
            msg = {"jsonrpc": "2.0", "id": rid, "method": method}
            return self._request(ch, msg, sender, ts, line.size, cut=True, partial=partial)
        if "result" in names or "error" in names:
            requester = _OTHER[sender]
            req: _Request | None = None
            if "id" in values:
                req = ch.pending.pop(requester + id_key(rid), None)
            else:
                waiting = [k for k in ch.pending if k.startswith(requester)]
                if len(waiting) == 1:  # the only request waiting in that direction: this answers it
                    req = ch.pending.pop(waiting[0])
            if req is None:
                self.stats.orphan_responses += 1
                return []
            status = "error" if "error" in names and "result" not in names else None
            return self._finish(ch, req, None, ts, size=line.size, status=status, truncated=True, partial=partial,
                                note="the reply was longer than the capture keeps per read/write: its result is cut")
        return []

    # ------------------------------------------------------------------ messages

    def _message(self, ch: _Channel, kind: str, msg: dict[str, Any], sender: str, ts: int,
                 size: int) -> list[Event]:
        ch.counts["messages"] += 1
        self.stats.messages += 1
        if kind == "request":
            return self._request(ch, msg, sender, ts, size)
        if kind == "notification":
            return self._notify(ch, msg["method"], msg.get("params"), sender, ts)
        requester = _OTHER[sender]
        rid = msg.get("id")
        key = requester + id_key(rid)
        req = ch.pending.pop(key, None) if rid is not None else None
        if req is None:
            if ch.hold_orphans and rid is not None:
                ch.orphans[key] = (msg, ts, size)  # its request may come later (a GET stream read at its end)
                if len(ch.orphans) <= self.max_pending:
                    return []
                key, (msg, ts, size) = next(iter(ch.orphans.items()))  # the oldest goes out unpaired
                del ch.orphans[key]
                requester = CLIENT if key.startswith(CLIENT) else SERVER
            self.stats.orphan_responses += 1
            return self._finish(ch, None, msg, ts, size=size, requester=requester,
                                note="its request was not seen (the capture began later)")
        return self._finish(ch, req, msg, ts, size=size)

    def _request(self, ch: _Channel, msg: dict[str, Any], sender: str, ts: int, size: int, cut: bool = False,
                 partial: str | None = None) -> list[Event]:
        out: list[Event] = []
        key = sender + id_key(msg["id"])
        old = ch.pending.pop(key, None)
        if old is not None:
            out += self._finish(ch, old, None, ts, status="no_reply",
                                note="a new request used its id before a reply came")
        params = msg.get("params")
        method = msg.get("method")
        if method == "initialize" and sender == CLIENT:
            p = _dict(params)
            info = _dict(p.get("clientInfo"))
            ch.client.update({"name": _str(info.get("name")), "version": _str(info.get("version"))})
            ch.protocol_version = _str(p.get("protocolVersion")) or ch.protocol_version
        req = _Request(msg["id"], _str(method), params, sender, ts, size, cut, partial)
        orphan = ch.orphans.pop(key, None)
        if orphan is not None:
            return out + self._finish(ch, req, orphan[0], orphan[1], size=orphan[2])
        ch.pending[key] = req
        if len(ch.pending) > self.max_pending:
            first = next(iter(ch.pending))
            out += self._finish(ch, ch.pending.pop(first), None, ts, status="no_reply",
                                note=f"more than {self.max_pending} requests waited on this channel")
        return out

    def _notify(self, ch: _Channel, method: str, params: Any, sender: str, ts: int,
                truncated: bool = False) -> list[Event]:
        out: list[Event] = []
        ch.counts["notifications"] += 1
        self.stats.notifications += 1
        if method == "notifications/cancelled":
            rid = _dict(params).get("requestId")
            req = ch.pending.pop(sender + id_key(rid), None) if rid is not None else None
            if req is not None:
                reason = _str(_dict(params).get("reason"))
                out += self._finish(ch, req, None, ts, status="cancelled",
                                    note=f"cancelled by the {sender}" + (f": {reason}" if reason else ""))
        record = {"transport": ch.transport, "mcp_session": ch.mcp_session, "server": dict(ch.server),
                  "client": dict(ch.client), "direction": sender, "method": method, "params": params,
                  "truncated": truncated, "session": ch.session, "agent": ch.agent}
        out.append(self._event("mcp.notification", ts, ch, record))
        return out

    def _finish(self, ch: _Channel, req: _Request | None, resp: dict[str, Any] | None, ts: int, *, size: int = 0,
                status: str | None = None, note: str | None = None, truncated: bool = False,
                partial: str | None = None, requester: str | None = None) -> list[Event]:
        """One ``mcp.call``: a request and its reply (``resp``), or the request and why none came."""
        method = req.method if req else None
        params = _dict(req.params) if req else {}
        result = resp.get("result") if resp else None
        error = resp.get("error") if resp else None
        if resp is not None and method == "initialize" and isinstance(result, dict):
            info = _dict(result.get("serverInfo"))
            ch.server.update({"name": _str(info.get("name")), "version": _str(info.get("version"))})
            ch.protocol_version = _str(result.get("protocolVersion")) or ch.protocol_version
        if status is None:
            if error is not None:
                status = "error"
            elif method == "tools/call" and isinstance(result, dict) and result.get("isError") is True:
                status = "tool_error"
            elif resp is None and not truncated:
                status = "no_reply"
            else:
                status = "ok"
        if status in ("no_reply", "unfinished"):
            ch.counts["unanswered"] += 1
            self.stats.unanswered += 1
        ch.counts["calls"] += 1
        self.stats.calls += 1
        ch.n += 1
        tool = _str(params.get("name")) if method == "tools/call" else None
        rest = {k: v for k, v in params.items() if k != "arguments"} if params else (req.params if req else None)
        notes = []
        if req is not None and req.cut:
            notes.append("the request was longer than the capture keeps per read/write: its params are cut")
        if note:
            notes.append(note)
        t0 = req.ts_ns if req else None
        answered = resp is not None or truncated
        record: dict[str, Any] = {
            "call_id": f"{ch.mcp_session or ch.key}#{ch.n}",
            "transport": ch.transport, "mcp_session": ch.mcp_session, "protocol_version": ch.protocol_version,
            "server": dict(ch.server), "client": dict(ch.client),
            "direction": req.sender if req else (requester or CLIENT),
            "id": req.id if req else (resp.get("id") if resp else None),
            "method": method, "tool": tool,
            "arguments": params.get("arguments") if method in ("tools/call", "prompts/get") else None,
            "uri": _str(params.get("uri")), "prompt": _str(params.get("name")) if method == "prompts/get" else None,
            "params": rest,
            "result": result, "error": error, "status": status,
            "ts_request_ns": t0, "ts_response_ns": ts if answered else None,
            "latency_ms": round((ts - t0) / 1e6, 3) if answered and t0 is not None else None,
            "request_bytes": req.size if req else None, "response_bytes": size if answered else None,
            "truncated": truncated or bool(req and req.cut),
            "partial": partial if partial is not None else (req.partial if req else None),
            "notes": notes, "llm": None, "session": ch.session, "agent": ch.agent,
        }
        if self.redact:
            record = redact_value(record)
        record = repair(record)
        event = self._event("mcp.call", ts, ch, record, wrapped=True)
        if method != "tools/call" or tool is None:
            return [event]
        run = ToolRun(record["call_id"], tool, record["arguments"], t0 or ts,
                      meta_ids=meta_tool_use_ids(params.get("_meta")))
        if self.linker.on_tool_run(ch.scope(), run):
            self._apply_link(event, run)
            return [event]
        if self.link_wait_s > 0:
            run.held = event
            self._held.append(_Held(run, event, self.clock()))
            self.stats.held = len(self._held)
            return []
        return [event]

    def _event(self, topic: str, ts: int, ch: _Channel, record: dict[str, Any], wrapped: bool = False) -> Event:
        if not wrapped:
            if self.redact:
                record = redact_value(record)
            record = repair(record)
        return Event(topic, ts, self.source, ch.pid, ch.tid, ch.comm, record)

    # ------------------------------------------------------------------ the model

    def _apply_link(self, event: Event, run: ToolRun) -> None:
        ask = run.ask
        if ask is None:
            return
        event.data["llm"] = {"tool_call_id": ask.id, "tool_name": ask.name, "match": ask.match,
                             "asked_by": ask.llm}
        self.stats.linked_tool_calls += 1

    def _release(self, held: _Held) -> list[Event]:
        if held in self._held:
            self._held.remove(held)
        self.stats.held = len(self._held)
        self._apply_link(held.event, held.run)
        held.run.held = None
        return [held.event]

    def _llm(self, event: Event) -> list[Event]:
        d = event.data
        scope = d["session"] if isinstance(d.get("session"), str) and d["session"] else f"pid:{event.pid}"
        out: list[Event] = []
        for run in self.linker.on_llm_call(scope, event):
            held = next((h for h in self._held if h.run is run), None)
            if held is not None:
                out += self._release(held)
        return out

    # ------------------------------------------------------------------ HTTP

    def _exchange(self, event: Event) -> list[Event]:
        d = event.data
        req, resp = _dict(d.get("request")), _dict(d.get("response"))
        method = _str(req.get("method"))
        live = self._live.pop((d.get("conn"), d.get("seq")), None)
        sid = (header_value(req.get("headers"), "mcp-session-id") or header_value(resp.get("headers"), "mcp-session-id")
               or _query_session(req.get("query"), req.get("target")))
        host, path = _str(d.get("host")) or _str(req.get("host")), _str(req.get("path"))
        if method == "GET" and resp and is_event_stream(_str(resp.get("content_type"))):
            return self._get_stream(event, live, sid, host, path, resp)
        if method == "DELETE" and sid:
            ch = self._channels.get(f"http:{sid}")
            return self._close(ch, "the client ended the session", event.ts_ns, "no_reply") if ch else []
        if method != "POST":
            return []
        msgs = decode_messages(as_bytes(req.get("body"))) if req.get("body") else None
        if msgs is None:
            return []
        hinted = sid or header_value(req.get("headers"), "mcp-protocol-version") or any(
            is_mcp_method(m.get("method")) for _, m in msgs)
        if not hinted and f"http:{event.pid}:{host}{path}" not in self._channels:
            self.stats.non_mcp_jsonrpc += 1
            return []
        ch = self._http_channel(event, sid, host, path)
        if ch.session is None and isinstance(d.get("session"), str):
            ch.session, ch.agent = d["session"], _str(d.get("agent"))
        ch.is_mcp = True
        out: list[Event] = []
        t_req = _int(d.get("ts_request_start_ns"), event.ts_ns)
        body_size = _int(req.get("body_size"), 0)
        sent = []
        for kind, msg in msgs:
            out += self._message(ch, kind, msg, CLIENT, t_req, body_size // len(msgs))
            if kind == "request":
                sent.append(CLIENT + id_key(msg["id"]))
        t_end = _int(d.get("ts_response_end_ns"), event.ts_ns)
        if resp:
            for data, ts, sz in self._answer(resp, t_end):
                answer = decode_messages(data)
                if answer is None:
                    continue
                for kind, msg in answer:
                    out += self._message(ch, kind, msg, SERVER, ts, sz // len(answer))
        status = resp.get("status_code") if resp else None
        for key in sent:
            waiting = ch.pending.get(key)
            if waiting is None or waiting.ts_ns != t_req:
                continue
            if not resp:
                out += self._finish(ch, ch.pending.pop(key), None, t_end, status="no_reply",
                                    note="no response came (the connection closed first)")
            elif isinstance(status, int) and status >= 400:
                body = _text(resp.get("body_text") or resp.get("body"))[:1000]
                error = {"code": None, "message": f"HTTP {status} {_text(resp.get('reason'))}".strip(),
                         "http_status": status, "body": body}
                out += self._finish(ch, ch.pending.pop(key), {"error": error}, t_end, size=len(body))
        return out

    def _answer(self, resp: dict[str, Any], t_end: int) -> list[tuple[str, int, int]]:
        """The JSON-RPC frames of a response body: (text, time, size)."""
        ctype = _str(resp.get("content_type")) or ""
        if is_event_stream(ctype):
            sse = _dict(resp.get("sse"))
            events = sse.get("events") if isinstance(sse.get("events"), list) else None
            if events is None:
                events = [e.as_dict() for e in parse_sse(as_bytes(resp.get("body")))]
            return [(_text(e.get("data")), _int(e.get("ts_ns"), t_end), len(_text(e.get("data"))))
                    for e in events if isinstance(e, dict) and e.get("data")]
        body = resp.get("body")
        if body:
            text = _text(body)
            return [(text, t_end, len(text))]
        return []

    def _stream_head(self, event: Event) -> list[Event]:
        d = event.data
        if d.get("method") != "GET" or not is_event_stream(_str(d.get("content_type"))):
            return []
        sid = header_value(d.get("headers"), "mcp-session-id")
        self._live[(d.get("conn"), d.get("seq"))] = _LiveStream(SseParser(), sid, event)
        while len(self._live) > self.max_channels:
            self._live.pop(next(iter(self._live)))
        return []

    def _stream_chunk(self, event: Event) -> list[Event]:
        d = event.data
        live = self._live.get((d.get("conn"), d.get("seq")))
        if live is None:
            return []
        out: list[Event] = []
        for ev in live.parser.feed(as_bytes(d.get("data")), event.ts_ns):
            if ev.event == "endpoint" and live.session is None:
                live.session = _query_session(None, ev.data)
                continue
            live.buffered.append((ev.data, ev.ts_ns or event.ts_ns))
        if live.session is not None:
            out += self._server_messages(live.event, live.session, live.buffered)
            live.buffered = []
        return out

    def _server_messages(self, head: Event, sid: str | None, frames: list[tuple[str, int]],
                         host: str | None = None, path: str | None = None) -> list[Event]:
        out: list[Event] = []
        ch: _Channel | None = None
        for data, ts in frames:
            msgs = decode_messages(data)
            if msgs is None:
                continue
            if ch is None:
                hd = head.data
                ch = self._http_channel(head, sid, host or _str(hd.get("host")), path or _str(hd.get("path")))
                ch.is_mcp = True
            for kind, msg in msgs:
                out += self._message(ch, kind, msg, SERVER, ts, len(data) // len(msgs))
        return out

    def _get_stream(self, event: Event, live: _LiveStream | None, sid: str | None, host: str | None,
                    path: str | None, resp: dict[str, Any]) -> list[Event]:
        """A server-to-client event stream that ended: what was not read live."""
        if live is not None:
            session = live.session or sid
            return self._server_messages(event, session, live.buffered, host, path)
        frames = []
        session = sid
        for data, ts, _ in self._answer(resp, event.ts_ns):
            frames.append((data, ts))
        sse = _dict(resp.get("sse"))
        for e in sse.get("events") or []:
            if isinstance(e, dict) and e.get("event") == "endpoint" and session is None:
                session = _query_session(None, _text(e.get("data")))
        return self._server_messages(event, session, frames, host, path)

    # ------------------------------------------------------------------ the end of a channel

    def _close(self, ch: _Channel | None, reason: str, ts: int, status: str) -> list[Event]:
        if ch is None or ch.key not in self._channels:
            return []
        out: list[Event] = []
        ts = ts or max([r.ts_ns for r in ch.pending.values()] + [ch.ts_start_ns])
        for sender, framer in ch.frames.items():
            line = framer.close()
            if line is not None and ch.is_mcp:
                out += self._line(ch, line, sender, ts)
        for key in list(ch.pending):
            req = ch.pending.pop(key)
            out += self._finish(ch, req, None, ts, status=status, note=f"no reply: {reason}")
        for key, (msg, t, size) in list(ch.orphans.items()):
            ch.orphans.pop(key)
            self.stats.orphan_responses += 1
            out += self._finish(ch, None, msg, t, size=size, requester=CLIENT if key.startswith(CLIENT) else SERVER,
                                note="its request was not seen")
        self._channels.pop(ch.key, None)
        self.stats.channels = len(self._channels)
        if ch.is_mcp:
            record = {"transport": ch.transport, "mcp_session": ch.mcp_session, "server": dict(ch.server),
                      "client": dict(ch.client), "protocol_version": ch.protocol_version, "reason": reason,
                      **ch.counts,
                      "lost_bytes": sum(f.lost_bytes for f in ch.frames.values()),
                      "rewritten_bytes": sum(f.rewritten_bytes for f in ch.frames.values()),
                      "oversize": sum(f.oversize for f in ch.frames.values()),
                      "ts_start_ns": ch.ts_start_ns, "ts_end_ns": ts, "exit_code": ch.exit_code,
                      "exit_signal": ch.exit_signal,
                      "session": ch.session, "agent": ch.agent}
            out.append(self._event("mcp.session.end", ts, ch, record))
        return out


def span_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes of an ``mcp.call`` (the GenAI ``execute_tool`` and MCP conventions):
    what an exporter puts on its span. The parent is the chat span of ``record["llm"]["asked_by"]``."""
    server = _dict(record.get("server"))
    attrs: dict[str, Any] = {
        "mcp.method.name": record.get("method"),
        "mcp.session.id": record.get("mcp_session"),
        "mcp.protocol.version": record.get("protocol_version"),
        "jsonrpc.request.id": None if record.get("id") is None else str(record.get("id")),
        "network.transport": "pipe" if record.get("transport") == "stdio" else "tcp",
        "server.address": server.get("host"),
    }
    if record.get("tool"):
        link = _dict(record.get("llm"))
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": record.get("tool"),
                      "gen_ai.tool.call.id": link.get("tool_call_id"),
                      "gen_ai.tool.call.arguments": json.dumps(record.get("arguments"), ensure_ascii=False),
                      "gen_ai.tool.call.result": json.dumps(record.get("result"), ensure_ascii=False)})
    if record.get("status") not in ("ok", None):
        err = _dict(record.get("error"))
        attrs["error.type"] = str(err.get("code")) if err.get("code") is not None else record.get("status")
        if err.get("code") is not None:
            attrs["rpc.response.status_code"] = str(err.get("code"))
    return {k: v for k, v in attrs.items() if v is not None}


def span_name(record: dict[str, Any]) -> str:
    """``execute_tool <tool>`` for a tool call, else ``<method>`` (the MCP conventions' span name)."""
    if record.get("tool"):
        return f"execute_tool {record['tool']}"
    return str(record.get("method") or "mcp")
