"""Sink ``otlp``: LLM calls, tool calls and agent sessions as OpenTelemetry GenAI traces and metrics.

Exports over OTLP/HTTP (protobuf) with the official OpenTelemetry SDK to a collector or
any OTLP receiver (Phoenix, Langfuse, Tempo, Jaeger...): one ``invoke_agent`` span per
agent session, one ``chat``/``generate_content`` span per ``llm.call`` under it, one
``execute_tool`` span per tool call the model asked for; the GenAI client metrics
(``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``) and per-session CPU,
RSS and process counts. The mapping is :mod:`agentsight.analysis.genai`, the export
:mod:`agentsight.recording.otlp`; the attribute names and which receiver reads which are in
``docs/otlp.md``.

Nothing here is durable, so the runtime's acknowledgement (after ``flush``) means
"queued for export". Export runs in background threads: ``write`` never waits on the
network. What does not reach the receiver (queue full, receiver down or too slow past
its retries, still queued at the stop) is counted in ``spans_lost``, which the runtime
adds to this actor's ``dropped``.
"""

from __future__ import annotations

from typing import Any

from agentsight.analysis.genai import ATTRIBUTE_SETS
from agentsight.event import Event
from agentsight.pipeline.component import Option, Sink

__all__ = ["OtlpSink"]


def _endpoint(value: str) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        return f"{value!r} is not an http:// or https:// URL (the OTLP/HTTP base URL, e.g. http://127.0.0.1:4318)"
    return None


def _sets(value: list[Any]) -> str | None:
    bad = [v for v in value if v not in ATTRIBUTE_SETS]
    if bad or not value:
        return f"must name attribute sets among {', '.join(ATTRIBUTE_SETS)}, got {value!r}"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be more than 0, got {value}"


class OtlpSink(Sink):
    TYPE = "otlp"
    OPTIONS = {
        "endpoint": Option(str, "", "OTLP/HTTP base URL (/v1/traces and /v1/metrics are appended); empty: "
                                    "OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal variables", check=_endpoint),
        "attributes": Option(list, ["genai"], "attribute sets: genai (OpenTelemetry GenAI conventions), "
                                              "openinference (Phoenix, Arize)", check=_sets),
        "content": Option(bool, False, "also export prompts, answers, tool arguments and results (redacted)"),
        "max_content": Option(int, 65536, "characters kept per content attribute (0: all)"),
        "traces": Option(bool, True, "export spans"),
        "metrics": Option(bool, True, "export metrics (Phoenix takes none: set false for it)"),
        "metrics_interval": Option(float, 15.0, "seconds between metric exports", check=_positive),
        "timeout": Option(float, 0.0, "seconds an export may take, retries included (0: OTEL_EXPORTER_OTLP_TIMEOUT "
                                      "or 10)"),
        "queue_size": Option(int, 4096, "spans waiting for export at most; past it the oldest are dropped, counted",
                             check=lambda v: None if v > 0 else "must be more than 0"),
        "batch_size": Option(int, 512, "spans per export request", check=lambda v: None if v > 0 else
                             "must be more than 0"),
        "delay": Option(float, 1.0, "seconds a partial batch waits before it is sent", check=_positive),
        "stop_timeout": Option(float, 5.0, "seconds the stop may spend exporting what is queued", check=_positive),
        "resource": Option(dict, {}, "resource attributes added to OTEL_RESOURCE_ATTRIBUTES (service.name ...)"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.export: Any = None

    def open(self) -> None:
        import logging

        from agentsight.recording.otlp import OtlpExport

        # The SDK logs every failed batch; this sink says it once and counts the rest.
        logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
        o = self.options
        self.export = OtlpExport(
            o["endpoint"], sets=tuple(o["attributes"]), content=o["content"], max_content=o["max_content"],
            traces=o["traces"], metrics=o["metrics"], metrics_interval_s=o["metrics_interval"],
            timeout_s=o["timeout"], max_queue=o["queue_size"], batch=o["batch_size"], delay_s=o["delay"],
            stop_budget_s=o["stop_timeout"], resource={str(k): v for k, v in o["resource"].items()})

    def write(self, events: list[Event]) -> None:
        self.export.feed(events)

    def flush(self) -> None:
        # Called every 0.2 s by the runtime: the export threads' counts become this sink's stats.
        if self.export is not None:
            self.stats.update(self.export.counts())

    def close(self) -> None:
        if self.export is not None:
            self.export.close()
            self.stats.update(self.export.counts())
            self.export = None
