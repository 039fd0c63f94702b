"""Component types by name, imported only when used.

Lazy imports keep bcc (and its ~130 MB of LLVM) out of every process that does
not run an eBPF source, and let `validate` check a config on a machine without bcc.
"""

from __future__ import annotations

import importlib

from agentsight.pipeline.component import Component

__all__ = ["TYPES", "component_class", "known_types", "UnknownType"]

TYPES: dict[str, dict[str, str]] = {
    "source": {
        "generator": "agentsight.actors.sources.generator:Generator",
        "replay": "agentsight.actors.sources.replay:Replay",
        "bus": "agentsight.actors.sources.bus:BusSource",
        "ssl": "agentsight.actors.sources.ssl:SslSource",
        "process": "agentsight.actors.sources.process:ProcessSource",
        "stdio": "agentsight.actors.sources.stdio:StdioSource",
        "system": "agentsight.actors.sources.system:SystemSource",
    },
    "analyzer": {
        "passthrough": "agentsight.actors.analyzers.passthrough:Passthrough",
        "annotate": "agentsight.actors.analyzers.annotate:Annotate",
        "http": "agentsight.actors.analyzers.http:Http",
        "sse": "agentsight.actors.analyzers.sse:Sse",
        "llm": "agentsight.actors.analyzers.llm:Llm",
        "filter": "agentsight.actors.analyzers.filters:EventFilter",
        "http_filter": "agentsight.actors.analyzers.filters:HttpFilter",
        "ssl_filter": "agentsight.actors.analyzers.filters:SslFilter",
        "redact": "agentsight.actors.analyzers.redact:Redact",
        "sessions": "agentsight.actors.analyzers.sessions:Sessions",
        "mcp": "agentsight.actors.analyzers.mcp:Mcp",
    },
    "sink": {
        "jsonl": "agentsight.actors.sinks.jsonl:JsonlSink",
        "sqlite": "agentsight.actors.sinks.sqlite:SqliteSink",
        "console": "agentsight.actors.sinks.console:ConsoleSink",
        "null": "agentsight.actors.sinks.null:NullSink",
        "web": "agentsight.actors.sinks.web:WebSink",
        "otlp": "agentsight.actors.sinks.otlp:OtlpSink",
        "clients": "agentsight.actors.sinks.clients:ClientsSink",
    },
}


class UnknownType(LookupError):
    pass


def known_types(kind: str) -> list[str]:
    return sorted(TYPES.get(kind, {}))


def component_class(kind: str, type_name: str) -> type[Component]:
    try:
        target = TYPES[kind][type_name]
    except KeyError:
        raise UnknownType(
            f"unknown {kind} type {type_name!r} (known: {', '.join(known_types(kind))})"
        ) from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Component] = getattr(module, attr)
    return cls
