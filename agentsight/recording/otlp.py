"""OTLP/HTTP export with the OpenTelemetry SDK: GenAI spans and metrics, never blocking the caller.

:class:`OtlpExport` takes events (:meth:`feed`), maps them with
:class:`agentsight.analysis.genai.SpanMapper`, and hands the spans to the SDK
(``TracerProvider``, the official ``OTLPSpanExporter`` over HTTP/protobuf, which retries
transient failures with backoff until its timeout) and the measurements to a
``MeterProvider`` whose ``PeriodicExportingMetricReader`` sends them with
``OTLPMetricExporter``.

Spans go through :class:`ExportQueue`, a bounded queue with one export thread, instead
of the SDK's ``BatchSpanProcessor``: that one drops silently when full, and every span
that does not reach the receiver must be counted here. A span is *lost* when the queue
is full (the oldest queued one makes room), when its export fails for good (receiver
down, or too slow for the timeout, retries included), or when the export stops with it
still queued or in flight. :meth:`feed` never waits on the network: a receiver that is
down or slow costs spans, counted, never the pipeline's time.

Ids: each span's id is a hash of the key the mapper gave it (and of this host's name), so
spans can name parents that are still open, and a restarted exporter names the same ones.
The standard ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, compression,
certificates, per-signal endpoints when no endpoint is given), ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` are honoured by the SDK.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import requests
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agentsight.analysis.genai import SpanMapper, SpanSpec, call_measurements
from agentsight.event import Event

__all__ = ["ExportQueue", "OtlpExport", "KeyedIds", "signal_endpoint", "resolved_url", "TOKEN_BUCKETS",
           "DURATION_BUCKETS"]

log = logging.getLogger("agentsight.recording.otlp")

# The bucket boundaries the GenAI conventions advise for their client histograms.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
ENDED_GAUGE_NS = 120 * 10**9   # an ended session stays in the gauges this long (read at least once)


def signal_endpoint(base: str, signal: str) -> str:
    """``http://host:4318`` + ``traces`` -> ``http://host:4318/v1/traces`` (as OTEL_EXPORTER_OTLP_ENDPOINT)."""
    return f"{base.rstrip('/')}/v1/{signal}"


def resolved_url(endpoint: str, signal: str) -> str:
    """Where a signal goes: ``endpoint`` + ``/v1/<signal>``, else the SDK's rule: the per-signal
    variable (a full URL), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/<signal>``, else localhost:4318."""
    if endpoint:
        return signal_endpoint(endpoint, signal)
    full = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return full or signal_endpoint(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318", signal)


def _hash(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # 0 is the invalid id


class KeyedIds(IdGenerator):
    """Random ids, except for the span being started now: its ids come from :meth:`use`."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._span: int | None = None
        self._trace: int | None = None

    def use(self, span_id: int, trace_id: int) -> None:
        self._span, self._trace = span_id, trace_id

    def generate_span_id(self) -> int:
        value, self._span = self._span, None
        return value if value is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        value, self._trace = self._trace, None
        return value if value is not None else self._random.generate_trace_id()


class _Outcome:
    """How the last request of one signal ended (an HTTP status, or why there was none), for messages."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: str | None = None

    def reset(self) -> None:
        self.status, self.error = None, None

    def session(self) -> requests.Session:
        outcome = self

        class Session(requests.Session):
            def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
                try:
                    response = super().request(*args, **kwargs)
                except requests.exceptions.Timeout:
                    outcome.error = "no answer within the timeout"
                    raise
                except requests.exceptions.ConnectionError:
                    outcome.error = "cannot connect: down or unreachable"
                    raise
                outcome.status = response.status_code
                return response

        return Session()

    def reason(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "receiver unreachable or too slow"


class ExportQueue(SpanProcessor):
    """A bounded span queue, exported in batches by one thread; every span's fate is counted.

    ``counts``: ``queued`` (accepted), ``exported``, ``failed`` (its export failed for good),
    ``queue_full`` (pushed out of a full queue), ``unsent`` (still queued or in flight when
    the export stopped), ``batches_failed``. Lost = failed + queue_full + unsent.
    """

    def __init__(self, exporter: SpanExporter, *, max_queue: int = 4096, batch: int = 512,
                 delay_s: float = 1.0, stop_budget_s: float = 5.0, url: str = "",
                 outcome: _Outcome | None = None) -> None:
        self.exporter = exporter
        self.max_queue = max(1, max_queue)
        self.batch = max(1, min(batch, self.max_queue))
        self.delay_s = delay_s
        self.stop_budget_s = stop_budget_s
        self.url = url
        self.outcome = outcome
        self.counts = {"queued": 0, "exported": 0, "failed": 0, "queue_full": 0, "unsent": 0, "batches_failed": 0}
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._closed = False
        self._failing = False       # the last export failed (said once, until it works again)
        self._thread = threading.Thread(target=self._run, name="agentsight-otlp-spans", daemon=True)
        self._thread.start()

    # -- SpanProcessor
    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._cond:
            if self._closed:
                self.counts["unsent"] += 1
                return
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()  # the oldest makes room: when the receiver is back, recent spans matter more
                self.counts["queue_full"] += 1
            self._queue.append(span)
            self.counts["queued"] += 1
            if len(self._queue) >= self.batch:
                self._cond.notify()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until everything queued so far was exported or failed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            self._cond.notify()
            while (self._queue or self._in_flight) and time.monotonic() < deadline:
                self._cond.notify()
                self._cond.wait(0.05)
            return not self._queue and not self._in_flight

    def shutdown(self) -> None:
        """Export what is queued within the stop budget (1 s when the receiver is failing), count the rest."""
        with self._cond:
            if self._closed:
                return
            self._stopping = True
            budget = min(self.stop_budget_s, 1.0) if self._failing else self.stop_budget_s
            self._cond.notify()
        self._thread.join(budget)
        self.exporter.shutdown()  # ends a retry backoff in progress
        self._thread.join(0.5)
        with self._cond:
            self._closed = True
            self.counts["unsent"] += len(self._queue) + self._in_flight
            self._queue.clear()
            self._in_flight = 0

    # -- the export thread
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stopping and len(self._queue) < self.batch:
                    self._cond.wait(self.delay_s)
                if self._closed or (self._stopping and not self._queue):
                    return
                batch = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                self._in_flight = len(batch)
            if not batch:
                continue
            try:
                ok = self.exporter.export(batch) == SpanExportResult.SUCCESS
            except Exception:  # an exporter bug must not end the thread: the batch is lost, counted
                log.exception("span export raised")
                ok = False
            with self._cond:
                if self._closed:  # the stop counted this batch as unsent already
                    return
                self._in_flight = 0
                if ok:
                    self.counts["exported"] += len(batch)
                else:
                    self.counts["failed"] += len(batch)
                    self.counts["batches_failed"] += 1
                self._report(ok)
                self._cond.notify_all()

    def _report(self, ok: bool) -> None:
        if ok and self._failing:
            log.warning("OTLP export to %s works again", self.url)
        elif not ok and not self._failing:
            reason = self.outcome.reason() if self.outcome is not None else "export failed"
            log.warning("OTLP export to %s failed (%s): spans are counted as lost until it answers", self.url,
                        reason)
        self._failing = not ok

    def lost(self) -> int:
        c = self.counts
        return c["failed"] + c["queue_full"] + c["unsent"]


class _CountingMetricExporter(OTLPMetricExporter):
    """The official OTLP/HTTP metric exporter, counting its exports and saying once why they fail."""

    def __init__(self, outcome: _Outcome, url: str, **kwargs: Any) -> None:
        super().__init__(endpoint=url, **kwargs)
        self.outcome = outcome
        self.url = url
        self.exports = 0
        self.failed = 0
        self._said: str | None = None

    def export(self, metrics_data: MetricsData, timeout_millis: float | None = 10_000,
               **kwargs: Any) -> MetricExportResult:
        self.outcome.reset()
        result = super().export(metrics_data, timeout_millis, **kwargs)
        self.exports += 1
        if result == MetricExportResult.SUCCESS:
            self._said = None
            return result
        self.failed += 1
        reason = self.outcome.reason()
        if reason != self._said:
            self._said = reason
            hint = (": this receiver takes no OTLP metrics (set the otlp sink's metrics = false)"
                    if self.outcome.status in (404, 405, 415, 501) else "")
            log.warning("OTLP metrics export to %s failed (%s)%s", self.url, reason, hint)
        return result


class OtlpExport:
    """Events -> GenAI spans and metrics -> an OTLP/HTTP receiver (see the module docstring).

    ``endpoint`` is the base URL (``http://collector:4318``); empty: the SDK reads
    ``OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT`` (default ``http://localhost:4318``).
    ``span_exporter`` and ``metric_reader`` replace the OTLP ones (tests use the SDK's in-memory ones).
    """

    def __init__(self, endpoint: str = "", *, sets: Sequence[str] = ("genai",), content: bool = False,
                 max_content: int = 65536, traces: bool = True, metrics: bool = True,
                 metrics_interval_s: float = 15.0, timeout_s: float = 0.0, max_queue: int = 4096,
                 batch: int = 512, delay_s: float = 1.0, stop_budget_s: float = 5.0,
                 resource: dict[str, Any] | None = None, span_exporter: SpanExporter | None = None,
                 metric_reader: MetricReader | None = None) -> None:
        self.mapper = SpanMapper(sets=tuple(sets), content=content, max_content=max_content)
        self.stop_budget_s = stop_budget_s
        self._lock = threading.Lock()   # the mapper's session table is read by the metric thread
        host = socket.gethostname()
        self._salt = host
        attrs: dict[str, Any] = {"service.name": "agentsight", "host.name": host}
        try:
            from importlib.metadata import version
            attrs["service.version"] = version("agentsight")
        except Exception:
            pass
        # Ours, then the environment's (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, the SDK's telemetry.sdk.*),
        # then the sink's own `resource` option: each wins over the one before.
        detected = Resource.create({}).attributes
        attrs.update({k: v for k, v in detected.items()
                      if not (k == "service.name" and str(v).startswith("unknown_service"))})
        attrs.update(resource or {})
        self.resource = Resource(attrs)
        timeout = timeout_s if timeout_s > 0 else None
        self.trace_url = resolved_url(endpoint, "traces")
        self.metric_url = resolved_url(endpoint, "metrics")
        self.queue: ExportQueue | None = None
        self.tracer: trace_api.Tracer | None = None
        self.tracer_provider: TracerProvider | None = None
        self._ids = KeyedIds()
        if traces:
            outcome = _Outcome()
            exporter = span_exporter or OTLPSpanExporter(endpoint=self.trace_url, timeout=timeout,
                                                         session=outcome.session())
            self.queue = ExportQueue(_RecordingOutcome(exporter, outcome), max_queue=max_queue, batch=batch,
                                     delay_s=delay_s, stop_budget_s=stop_budget_s, url=self.trace_url,
                                     outcome=outcome)
            limits = None if os.environ.get("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT") else SpanLimits(max_span_attributes=4096)
            self.tracer_provider = TracerProvider(resource=self.resource, id_generator=self._ids, span_limits=limits)
            self.tracer_provider.add_span_processor(self.queue)
            self.tracer = self.tracer_provider.get_tracer("agentsight", str(attrs.get("service.version") or ""))
        self.meter_provider: MeterProvider | None = None
        self.metric_exporter: Any = None
        if metrics:
            reader = metric_reader
            if reader is None:
                outcome = _Outcome()
                self.metric_exporter = _CountingMetricExporter(outcome, self.metric_url, timeout=timeout,
                                                               session=outcome.session())
                reader = PeriodicExportingMetricReader(self.metric_exporter,
                                                       export_interval_millis=metrics_interval_s * 1000,
                                                       export_timeout_millis=stop_budget_s * 1000)
            self.meter_provider = MeterProvider(resource=self.resource, metric_readers=[reader])
            self._instruments()
        self.spans_created = 0
        self.map_errors = 0
        self._ended: list[tuple[int, dict[str, Any], dict[str, Any]]] = []

    # ------------------------------------------------------------------ metrics
    def _instruments(self) -> None:
        assert self.meter_provider is not None
        meter = self.meter_provider.get_meter("agentsight")
        self.histograms = {
            "gen_ai.client.token.usage": meter.create_histogram(
                "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS),
            "gen_ai.client.operation.duration": meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS),
            "gen_ai.client.operation.time_to_first_chunk": meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk", unit="s",
                description="Time to receive the first chunk of a streamed answer.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS),
        }
        gauges = [
            ("agentsight.session.cpu.percent", "%", "CPU of the session's process tree (100 = one core)",
             "cpu_percent"),
            ("agentsight.session.memory.rss", "By", "Resident memory of the session's process tree", "rss_bytes"),
            ("agentsight.session.processes.running", "{process}", "Processes in the session's tree at the last sample",
             "processes"),
            ("agentsight.session.processes", "{process}", "Processes the session has run so far", "processes_seen"),
        ]
        for name, unit, description, field in gauges:
            meter.create_observable_gauge(name, callbacks=[self._gauge(field)], unit=unit, description=description)

    def _gauge(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(values[field], attrs) for attrs, values in self._gauge_rows()
                    if isinstance(values.get(field), (int, float))]
        return observe

    def _gauge_rows(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        now = time.time_ns()
        with self._lock:
            self._ended = [e for e in self._ended if now - e[0] < ENDED_GAUGE_NS]
            return self.mapper.session_gauges() + [(attrs, values) for _, attrs, values in self._ended]

    # ------------------------------------------------------------------ spans
    def feed(self, events: Iterable[Event]) -> None:
        """Map and queue; never waits on the network."""
        wanted = self.mapper.TOPICS
        last = self.mapper.last_ns
        for e in events:
            if e.ts_ns > last:
                last = e.ts_ns
            if e.topic not in wanted:  # most of a capture (file opens, TLS and HTTP records): nothing to map
                continue
            try:
                with self._lock:
                    before = self._running_gauges() if e.topic == "session.end" else None
                    specs = self.mapper.feed(e)
                    if before is not None:
                        self._keep_ended(before)
                for spec in specs:
                    self.emit(spec)
                if e.topic == "llm.call" and self.meter_provider is not None:
                    extra = {"gen_ai.agent.name": e.data["agent"]} if isinstance(e.data.get("agent"), str) else None
                    for m in call_measurements(e.data, extra):
                        self.histograms[m.instrument].record(m.value, m.attributes)
            except Exception as exc:  # a record of a shape the mapping did not foresee costs itself only
                self.map_errors += 1
                if self.map_errors <= 5:
                    log.warning("could not map a %s event: %s: %s", e.topic, type(exc).__name__, exc)
        self.mapper.last_ns = max(self.mapper.last_ns, last)

    def _running_gauges(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        return {attrs["session.id"]: (attrs, values) for attrs, values in self.mapper.session_gauges()}

    def _keep_ended(self, before: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
        running = {sid for sid in self._running_gauges()}
        now = time.time_ns()
        self._ended += [(now, attrs, values) for sid, (attrs, values) in before.items() if sid not in running]

    def emit(self, spec: SpanSpec) -> None:
        if self.tracer is None:
            return
        trace_id = _hash(f"{self._salt}\0{spec.trace}", 16)
        context = Context()
        if spec.parent is not None:
            parent = SpanContext(trace_id, _hash(f"{self._salt}\0{spec.parent}", 8), is_remote=True,
                                 trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace_api.set_span_in_context(NonRecordingSpan(parent), context)
        links = [Link(SpanContext(trace_id, _hash(f"{self._salt}\0{k}", 8), is_remote=True,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED))) for k in spec.links]
        self._ids.use(_hash(f"{self._salt}\0{spec.key}", 8), trace_id)
        span = self.tracer.start_span(spec.name, context=context,
                                      kind=SpanKind.CLIENT if spec.kind == "client" else SpanKind.INTERNAL,
                                      attributes=spec.attributes, links=links, start_time=spec.start_ns)
        if spec.error is not None:
            span.set_status(Status(StatusCode.ERROR, spec.error))
        span.end(end_time=spec.end_ns)
        self.spans_created += 1

    # ------------------------------------------------------------------ counts and stop
    def counts(self) -> dict[str, int]:
        """Counters for the sink's stats; ``spans_lost`` is what never reached the receiver."""
        out: dict[str, int] = {"spans_created": self.spans_created, "map_errors": self.map_errors}
        if self.queue is not None:
            c = self.queue.counts
            out.update({"spans_exported": c["exported"], "spans_failed_export": c["failed"],
                        "spans_dropped_queue_full": c["queue_full"], "spans_unsent_at_stop": c["unsent"],
                        "span_batches_failed": c["batches_failed"], "spans_lost": self.queue.lost()})
        if isinstance(self.metric_exporter, _CountingMetricExporter):
            out.update({"metric_exports": self.metric_exporter.exports,
                        "metric_exports_failed": self.metric_exporter.failed})
        for k, v in self.mapper.stats.items():
            out[k] = v
        return out

    def close(self) -> None:
        """Emit what is still open, export what is queued within the stop budget, count the rest."""
        with self._lock:
            before = self._running_gauges()
            specs = self.mapper.close()
            self._keep_ended(before)
        for spec in specs:
            self.emit(spec)
        deadline = time.monotonic() + self.stop_budget_s
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()   # the queue's shutdown: bounded by the stop budget
        if self.meter_provider is not None:
            left = max(0.5, deadline - time.monotonic())
            try:
                self.meter_provider.shutdown(timeout_millis=left * 1000)
            except Exception:
                log.exception("metrics shutdown failed")


class _RecordingOutcome(SpanExporter):
    """Resets the outcome before each export, so a failure's reason is its own request's."""

    def __init__(self, inner: SpanExporter, outcome: _Outcome) -> None:
        self.inner = inner
        self.outcome = outcome

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.outcome.reset()
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
