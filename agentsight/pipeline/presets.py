"""Pipelines built from command-line flags (`debug`, `record`, `top`).

A command describes what it wants in a :class:`Capture`; :meth:`Capture.pipeline`
turns that into the same document a pipeline.toml holds, so flags and files go
through one validator and one supervisor. The graph is always::

    ssl -> [ssl_filter] -> [http <- process] -> [http_filter] -> [sse] -> [llm]
                                                                   \\
    process, stdio, system ------------------------------> [sessions] -> [mcp] -> [redact] -> sinks

Sources publish nothing to the bus themselves: only the last stage does, after
redaction, so a tap never sees a credential the redactor would have removed.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from agentsight.pipeline.component import Option
from agentsight.pipeline.config import PipelineSpec, parse, validate
from agentsight.pipeline.registry import component_class
from agentsight.web import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["Capture", "CaptureError", "CaptureFlag", "capture_flags", "parse_extra", "build_spec", "port_problem",
           "needs_bpf"]


class CaptureError(ValueError):
    """A flag combination that cannot make a pipeline (one line for the user)."""


@dataclass(frozen=True)
class CaptureFlag:
    """A flag of the capture commands that sets one source option (declared on that option)."""

    source: str
    option: str
    declared: Option

    @property
    def param(self) -> str:
        """The flag as a Python parameter name (``--ssl-uid``: ``ssl_uid``)."""
        return self.declared.flag.lstrip("-").replace("-", "_")


def capture_flags() -> list[CaptureFlag]:
    """Every source option that is a flag of `debug` / `record`, in declaration order."""
    from agentsight.actors.sources.options import CAPTURE_SOURCES

    return [CaptureFlag(source, name, opt) for source, spec in CAPTURE_SOURCES.items()
            for name, opt in spec.items() if opt.flag]


@dataclass
class Capture:
    name: str = "debug"
    ssl: bool = False
    process: bool = False
    stdio: bool = False
    system: bool = False
    # Target: a process tree (pid + tree), a pid alone, a command name, or everything.
    pid: int = 0
    tree: bool = False
    comm: str = ""
    # Options of each source set by its flags (declared in agentsight.actors.sources.options,
    # see capture_flags): source type -> option -> value; an option not given keeps its default.
    source_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # analysis
    http: bool = False
    http_raw: bool = False
    sse_live: bool = False
    llm: bool = False
    sessions: bool = False
    mcp: bool = False  # MCP calls from stdio and HTTP, linked to the LLM calls (after sessions)
    root_pids: list[int] = field(default_factory=list)
    http_filter: list[str] = field(default_factory=list)
    ssl_filter: list[str] = field(default_factory=list)
    redact: bool = True
    # extra options for one source, from the arguments after `--`
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    # sinks
    console: bool = True
    console_format: str = "auto"
    console_topics: list[str] = field(default_factory=list)
    log_file: str = ""
    db: str = ""
    db_meta: dict[str, str] = field(default_factory=dict)
    server: bool = False
    server_host: str = DEFAULT_HOST
    server_port: int = DEFAULT_PORT
    server_token: str = ""
    bus: bool = True
    runtime_dir: str = ""
    # OpenTelemetry export (the otlp sink): OTLP/HTTP base URL, "" = off
    otel: str = ""
    otel_content: bool = False
    otel_attributes: list[str] = field(default_factory=lambda: ["genai"])
    otel_metrics: bool = True

    def flagged(self, source: str) -> dict[str, Any]:
        """The options of ``source`` its flags set (a flag not given is left out)."""
        return {k: v for k, v in self.source_options.get(source, {}).items() if v is not None}

    def sources(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        target = {"pid": self.pid, "tree": self.tree} if self.pid else {}
        comm = {"comm": self.comm} if self.comm else {}
        if self.ssl:
            out["ssl"] = {**target, **self.flagged("ssl"), **comm}
        if self.process:
            out["process"] = {**target, **self.flagged("process"), **comm}
        if self.stdio:
            if not self.pid and not self.comm:
                raise CaptureError("stdio capture needs a target: -p PID or -c COMM")
            out["stdio"] = {**target, **self.flagged("stdio"), **comm}
        if self.system:
            out["system"] = {"pid": self.pid, "tree": True, **self.flagged("system")}
        if not out:
            raise CaptureError("nothing to capture: every source is off")
        for src, opts in self.extra.items():
            if src not in out:
                raise CaptureError(f"options after -- are for the {src} source, which is off")
            out[src].update(opts)
        return out

    def pipeline(self) -> dict[str, Any]:
        """The pipeline document (what a pipeline.toml would hold)."""
        sources = self.sources()
        doc: dict[str, Any] = {"name": self.name, "sources": {}, "analyzers": {}, "sinks": {}}
        for name, opts in sources.items():
            doc["sources"][name] = {"type": name, "publish": False, **opts}
        stages = doc["analyzers"]
        others = [s for s in sources if s != "ssl"]
        tail: list[str] = []  # the inputs of the next stage
        if "ssl" in sources:
            tail = ["ssl"]
            if self.ssl_filter:
                stages["ssl_filter"] = {"type": "ssl_filter", "inputs": tail, "exclude": list(self.ssl_filter)}
                tail = ["ssl_filter"]
            if self.http:
                http_inputs = tail + (["process"] if "process" in sources else [])
                others = [s for s in others if s != "process"]
                stages["http"] = {"type": "http", "inputs": http_inputs, "raw": self.http_raw,
                                  "redact": self.redact}
                tail = ["http"]
                if self.http_filter:
                    stages["http_filter"] = {"type": "http_filter", "inputs": tail, "exclude": list(self.http_filter)}
                    tail = ["http_filter"]
                stages["sse"] = {"type": "sse", "inputs": tail, "live": self.sse_live}
                tail = ["sse"]
                if self.llm:
                    stages["llm"] = {"type": "llm", "inputs": tail, "redact": self.redact}
                    tail = ["llm"]
            elif self.http_filter:
                raise CaptureError("--http-filter needs the HTTP parser (--http-parser)")
        tail = tail + others
        if self.sessions:
            stages["sessions"] = {"type": "sessions", "inputs": tail, "root_pids": list(self.root_pids)}
            tail = ["sessions"]
        if self.mcp:
            # Without LLM calls to link to, a tool call has nothing to wait for.
            stages["mcp"] = {"type": "mcp", "inputs": tail, "redact": self.redact,
                             "link_wait_s": 3.0 if self.llm else 0.0}
            tail = ["mcp"]
        # What the analyzers redacted already is not redacted again (each byte once).
        upstream = ([p for stage, prefixes in (("http", ["http.", "sse."]), ("llm", ["llm."]), ("mcp", ["mcp."]))
                     if stage in stages for p in prefixes] if self.redact else [])
        stages["redact"] = {"type": "redact", "inputs": tail, "enabled": self.redact, "publish": self.bus,
                            "redacted_upstream": upstream}
        for name in stages:
            stages[name].setdefault("publish", False)
        tail = ["redact"]
        sinks = doc["sinks"]
        if self.console:
            sinks["console"] = {"type": "console", "inputs": tail, "format": self.console_format,
                                "topics": list(self.console_topics)}
        if self.log_file:
            sinks["log"] = {"type": "jsonl", "inputs": tail, "path": os.path.abspath(self.log_file)}
        if self.db:
            sinks["db"] = {"type": "sqlite", "inputs": tail, "path": os.path.abspath(self.db),
                           "meta": dict(self.db_meta)}
        if self.server:
            sinks["web"] = {"type": "web", "inputs": tail, "host": self.server_host, "port": self.server_port,
                            "token": self.server_token}
        if self.otel:
            sinks["otlp"] = {"type": "otlp", "inputs": tail, "endpoint": self.otel, "content": self.otel_content,
                             "attributes": list(self.otel_attributes), "metrics": self.otel_metrics}
        if not sinks:
            sinks["discard"] = {"type": "null", "inputs": tail}
        doc["bus"] = {"enabled": self.bus}
        if self.runtime_dir:
            doc["supervisor"] = {"runtime_dir": self.runtime_dir}
        return doc


def build_spec(doc: dict[str, Any]) -> PipelineSpec:
    """Validate a pipeline document; CaptureError with every problem on one line each."""
    spec, problems = parse(doc)
    problems += validate(spec)
    if problems:
        raise CaptureError("; ".join(str(p) for p in problems))
    return spec


def _literal(text: str) -> Any:
    """A value as TOML would read it (numbers, booleans, lists), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_extra(args: list[str], source: str) -> dict[str, dict[str, Any]]:
    """``--name value`` / ``--flag`` pairs after `--` become options of ``source``.

    Names are the source's option names with ``-`` for ``_`` (``--max-bytes 4096``);
    an unknown name is a CaptureError that lists the known ones.
    """
    cls = component_class("source", source)
    opts: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise CaptureError(f"after --, expected --OPTION [VALUE] for the {source} source, got {arg!r}")
        name, eq, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key not in cls.OPTIONS:
            known = ", ".join("--" + k.replace("_", "-") for k in cls.OPTIONS)
            raise CaptureError(f"the {source} source has no option --{name} (it has: {known})")
        option = cls.OPTIONS[key]
        types = option.type if isinstance(option.type, tuple) else (option.type,)
        if eq:
            raw = value
        elif bool in types and (i + 1 >= len(args) or args[i + 1].startswith("--")):
            raw = "true"
        else:
            if i + 1 >= len(args):
                raise CaptureError(f"--{name} needs a value")
            i += 1
            raw = args[i]
        parsed = _literal(raw)
        if list in types and not isinstance(parsed, list):
            parsed = [parsed]
        opts[key] = parsed
        i += 1
    return {source: opts} if opts else {}


def port_problem(host: str, port: int) -> str | None:
    """Why the web UI could not listen on host:port (checked before anything starts), or None."""
    import socket

    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot use {host!r} for the web UI: {exc.strerror or exc}"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            return (f"the web UI cannot listen on {host}:{port}: {exc.strerror or exc} "
                    "(pass --server-port to choose another)")
    return None


def needs_bpf(spec: PipelineSpec) -> bool:
    from agentsight.pipeline import check

    if check.isolated():  # asked of the child that checked the config: no component imported here
        return check.needs_bpf_in_child(spec)
    return any(component_class(c.kind, c.type).CAPS.needs_bpf for c in spec.components.values())
