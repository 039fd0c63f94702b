"""Stage ``mcp``: MCP tool calls over stdio and HTTP, tied to the LLM calls that asked for them.

Wraps :class:`agentsight.analysis.mcp.McpCalls`: ``stdio.data`` (a server's fd 0 reads and fd 1
writes), ``http.exchange`` / ``http.stream.*`` (streamable HTTP and HTTP+SSE), ``process.*``
(command lines, exits) and ``llm.call`` in; ``mcp.call``, ``mcp.notification`` and
``mcp.session.end`` out (record layout in docs/analyzers.md). Every input event passes
through; an ``llm.call`` whose tool calls or tool results are MCP calls gains ``data.mcp``.
Place it after ``sessions`` (records then carry the agent session) and before ``redact``;
run it with one worker: a tool call and the LLM call that asked for it come from different
processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psutil

from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

if TYPE_CHECKING:
    from agentsight.analysis.mcp import McpCalls, ProcInfo

__all__ = ["Mcp", "proc_info"]


def _positive(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def proc_info(pid: int) -> ProcInfo | None:
    """A process that was running before the capture saw it start: parent, name, command line (/proc)."""
    from agentsight.analysis.mcp import ProcInfo

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            exe = None
            try:
                exe = p.exe() or None
            except psutil.Error:
                pass
            return ProcInfo(p.ppid(), p.name(), p.cmdline() or None, exe)
    except psutil.Error:
        return None


class Mcp(Analyzer):
    TYPE = "mcp"
    CAPS = Capabilities(tick=True)
    DEFAULT_PARTITION = "pid"
    OPTIONS = {
        "redact": Option(bool, True, "replace credentials in arguments, params, results and command lines", live=True),
        "link_wait_s": Option((int, float), 3.0, "seconds a tools/call waits for the llm.call that asked for it "
                              "(0: emit at once, no wait)", live=True, check=_positive),
        "exit_grace_s": Option((int, float), 1.0, "seconds after a server's exit before its unanswered requests "
                               "are reported (its last writes may still be on their way)", live=True,
                               check=_positive),
        "max_message_bytes": Option(int, 8 << 20, "longest stdio message kept (longer lines are counted, "
                                    "not parsed)"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        o = self.options
        # Imported here: an upstream actor imports this module only for DEFAULT_PARTITION.
        from agentsight.analysis.mcp import McpCalls

        self.calls: McpCalls = McpCalls(source=name, redact=o["redact"], link_wait_s=float(o["link_wait_s"]),
                              exit_grace_s=float(o["exit_grace_s"]), max_message=o["max_message_bytes"],
                              proc_lookup=proc_info)

    def apply_options(self, changed: set[str]) -> None:
        self.calls.redact = self.options["redact"]
        self.calls.link_wait_s = float(self.options["link_wait_s"])
        self.calls.exit_grace_s = float(self.options["exit_grace_s"])

    def process(self, event: Event) -> Iterable[Event]:
        out = self.calls.feed(event)
        return [event, *out] if out else (event,)

    def tick(self, now_ns: int) -> Iterable[Event]:
        out = self.calls.tick()
        self.stats.update(self.calls.stats.as_dict())
        return out

    def flush(self) -> Iterable[Event]:
        out = self.calls.flush()
        self.stats.update(self.calls.stats.as_dict())
        return out
