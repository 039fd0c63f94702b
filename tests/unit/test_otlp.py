"""The GenAI span and metric mapping (analysis.genai + otlp) through the SDK's in-memory exporter and reader.

The llm.call records are real: the LLM fixtures (captured wire bytes) run through the
http -> sse -> llm stages. What is checked is what a receiver would get: the span tree,
its times (from the capture), the GenAI attributes, content only when asked and redacted,
and that every span either reaches the exporter or is counted lost.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.trace import SpanKind, StatusCode

from agentsight.event import Event
from agentsight.recording.otlp import OtlpExport, resolved_url
from tests.chain import llm_calls, run_chain
from tests.unit.test_llm_fixtures import wire

SID = "4242@1000"
PASTED_KEY = "sk-ant-api03-Zr8wQk2VnT5yLm1XcB7sPd4FgH9jK0aUeIo3RtYu6WqEzA-xyz12AA"


def fixture_call(name: str) -> dict[str, Any]:
    req, resp = wire(name)
    calls = llm_calls(run_chain([("write", req), ("read", resp)]))
    return calls[0].data


def ev(topic: str, ts: int, pid: int, data: dict[str, Any], comm: str = "python3") -> Event:
    return Event(topic, ts, "test", pid, pid, comm, data)


def llm(data: dict[str, Any], start: int, end: int, pid: int = 4242, session: str | None = SID) -> Event:
    d = copy.deepcopy(data)
    d.update(ts_request_start_ns=start, ts_first_byte_ns=start + 5, ts_first_token_ns=start + 7, ts_end_ns=end,
             ttft_ms=(7) / 1e6, duration_ms=(end - start) / 1e6, session=session, agent="claude-code" if session else None,
             seq=start)
    return ev("llm.call", end, pid, d)


def answered(first: dict[str, Any], result: str) -> dict[str, Any]:
    """The follow-up request: the first call's history, its tool call, and the tool's result."""
    d = copy.deepcopy(first)
    tc = first["tool_calls"][0]
    d["messages"] = first["messages"] + [
        {"role": "assistant", "content": "", "parts": [{"type": "tool_call", **tc}]},
        {"role": "tool", "content": result, "parts": [{"type": "tool_result", "id": tc["id"], "content": result}]}]
    d["tool_calls"] = []
    d["stop_reason"] = "stop"
    return d


def session_events(first: dict[str, Any]) -> list[Event]:
    return [
        ev("session.start", 1000, 4242, {"session": SID, "agent": "claude-code", "pid": 4242, "start_ns": 1000,
                                         "parent": None, "pids": [4242], "exe": "/usr/bin/claude",
                                         "argv": ["claude", "-p", "weather"], "comm": "claude"}),
        ev("process.exec", 1000, 4242, {"ppid": 1, "filename": "/usr/bin/claude", "argv": ["claude", "-p", "weather"],
                                        "session": SID}, comm="claude"),
        llm(first, 2000, 3000),
        ev("process.exec", 3100, 4300, {"ppid": 4242, "filename": "/usr/bin/curl", "argv": ["curl", "wttr.in"],
                                        "session": SID}, comm="curl"),
        ev("system.sample", 3200, 4242, {"scope": "tree", "cpu_percent": 12.5, "rss_bytes": 50_000_000,
                                         "processes": 2, "session": SID}),
        llm(answered(first, f"sunny, 21C (the key was {PASTED_KEY})"), 4000, 5000),
        ev("session.end", 6000, 4242, {"session": SID, "agent": "claude-code", "pid": 4242, "start_ns": 1000,
                                       "end_ns": 6000, "parent": None, "exit_code": 0}),
    ]


def export(events: list[Event], **kw: Any) -> tuple[list[ReadableSpan], OtlpExport]:
    mem = InMemorySpanExporter()
    exp = OtlpExport("http://127.0.0.1:9", span_exporter=mem, metrics=False, delay_s=0.01, **kw)
    exp.feed(events)
    exp.close()
    return list(mem.get_finished_spans()), exp


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def test_one_agent_session_span_with_its_llm_calls_and_tool_under_it() -> None:
    first = fixture_call("openai_chat")
    spans, exp = export(session_events(first))
    named = by_name(spans)
    assert sorted(named) == ["chat gpt-4o-mini", "execute_tool get_weather", "invoke_agent claude-code"]
    agent, = named["invoke_agent claude-code"]
    calls = sorted(named["chat gpt-4o-mini"], key=lambda s: s.start_time or 0)
    tool, = named["execute_tool get_weather"]
    assert len(calls) == 2
    # One trace; the calls and the tool are children of the session's span.
    assert {s.context.trace_id for s in spans} == {agent.context.trace_id}
    assert agent.parent is None
    assert all(s.parent is not None and s.parent.span_id == agent.context.span_id for s in [*calls, tool])
    # Times from the capture: the session, each call's request start to response end, and the tool from the
    # end of the call that asked for it to the start of the request that carried its result.
    assert (agent.start_time, agent.end_time) == (1000, 6000)
    assert [(c.start_time, c.end_time) for c in calls] == [(2000, 3000), (4000, 5000)]
    assert (tool.start_time, tool.end_time) == (3000, 4000)
    assert [link.context.span_id for link in tool.links] == [calls[0].context.span_id]
    assert calls[0].kind == SpanKind.CLIENT and agent.kind == tool.kind == SpanKind.INTERNAL
    a = dict(calls[0].attributes or {})
    usage = first["usage"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == first["model"]
    assert a["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_tokens"]
    assert "gen_ai.usage.cache_creation.input_tokens" not in a  # unknown for OpenAI: left out, not 0
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert a["gen_ai.response.id"] == first["response_id"]
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(7e-9)
    assert (a["server.address"], a["server.port"]) == ("api.openai.com", 443)
    assert a["session.id"] == a["gen_ai.conversation.id"] == SID and a["gen_ai.agent.name"] == "claude-code"
    # The process that made the call.
    assert a["process.pid"] == 4242 and a["process.executable.path"] == "/usr/bin/claude"
    assert a["process.command_args"] == ("claude", "-p", "weather") and a["process.executable.name"] == "python3"
    t = dict(tool.attributes or {})
    assert t["gen_ai.operation.name"] == "execute_tool" and t["gen_ai.tool.name"] == "get_weather"
    assert t["gen_ai.tool.call.id"] == first["tool_calls"][0]["id"] and t["agentsight.tool.result_seen"] is True
    g = dict(agent.attributes or {})
    assert g["gen_ai.operation.name"] == "invoke_agent" and g["gen_ai.agent.id"] == SID
    assert g["process.exit.code"] == 0 and g["agentsight.session.llm_calls"] == 2
    assert g["agentsight.session.input_tokens"] == 2 * usage["input_tokens"]
    assert g["agentsight.session.processes"] == 2
    assert exp.counts()["spans_exported"] == 4 and exp.counts()["spans_lost"] == 0


def test_content_is_opt_in_and_redacted() -> None:
    first = fixture_call("openai_chat")
    first["messages"][0]["parts"][0]["text"] += f" my key is {PASTED_KEY}"
    events = session_events(first)
    plain, _ = export(events)
    values = json.dumps([dict(s.attributes or {}) for s in plain], default=str)
    assert "Paris" not in values and first["output_text"] not in values and "sunny" not in values
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system_instructions", "gen_ai.tool.call.ar"))
                   for s in plain for k in (s.attributes or {}))
    full, _ = export(session_events(first), content=True, sets=("genai", "openinference"))
    values = json.dumps([dict(s.attributes or {}) for s in full], default=str)
    assert PASTED_KEY not in values and "[REDACTED" in values
    call = next(s for s in full if s.name.startswith("chat") and (s.start_time or 0) == 2000)
    a = dict(call.attributes or {})
    inputs = json.loads(str(a["gen_ai.input.messages"]))
    assert inputs[0]["role"] == "user" and "Paris" in inputs[0]["parts"][0]["content"]
    assert json.loads(str(a["gen_ai.system_instructions"])) == [{"type": "text", "content": first["system"]}]
    out = json.loads(str(a["gen_ai.output.messages"]))
    assert out[0]["finish_reason"] == "tool_calls"
    assert {"type": "tool_call", "id": first["tool_calls"][0]["id"], "name": "get_weather",
            "arguments": {"city": "Paris"}} in out[0]["parts"]
    assert a["llm.input_messages.0.message.role"] == "system" and a["output.value"] == first["output_text"]
    assert a["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "get_weather"
    tool = next(s for s in full if s.name.startswith("execute_tool"))
    t = dict(tool.attributes or {})
    assert t["gen_ai.tool.call.arguments"] == '{"city":"Paris"}'
    assert str(t["gen_ai.tool.call.result"]).startswith("sunny") and PASTED_KEY not in str(t["gen_ai.tool.call.result"])


def test_openinference_set_for_phoenix_and_arize() -> None:
    spans, _ = export(session_events(fixture_call("anthropic_messages")), sets=("openinference",))
    named = by_name(spans)
    call = next(s for n, ss in named.items() if n.startswith("chat") for s in ss)
    a = dict(call.attributes or {})
    assert not any(k.startswith("gen_ai.") for k in a)
    assert a["openinference.span.kind"] == "LLM" and a["llm.provider"] == "anthropic"
    assert a["llm.system"] == "anthropic" and a["session.id"] == SID
    assert a["llm.token_count.prompt"] + a["llm.token_count.completion"] == a["llm.token_count.total"]
    agent = named["invoke_agent claude-code"][0]
    assert dict(agent.attributes or {})["openinference.span.kind"] == "AGENT"


def test_gemini_is_generate_content_and_errors_set_the_status() -> None:
    gem = fixture_call("gemini_generate")
    err = fixture_call("anthropic_error")
    spans, _ = export([llm(gem, 10, 20, session=None), llm(err, 30, 40, session=None)])
    g = next(s for s in spans if s.name.startswith("generate_content"))
    assert dict(g.attributes or {})["gen_ai.provider.name"] == "gcp.gemini" and g.parent is None
    e = next(s for s in spans if s.context.span_id != g.context.span_id)
    assert e.status.status_code == StatusCode.ERROR and dict(e.attributes or {})["error.type"]
    assert e.context.trace_id != g.context.trace_id  # calls outside any session: a trace each


def test_ids_survive_a_restart_and_sub_agents_share_the_trace() -> None:
    first = fixture_call("openai_chat")
    events = session_events(first)
    child = "5000@2500"
    sub = [ev("session.start", 2500, 5000, {"session": child, "agent": "codex", "pid": 5000, "start_ns": 2500,
                                            "parent": SID, "pids": [5000]}),
           llm({**copy.deepcopy(first), "tool_calls": []}, 2600, 2700, pid=5000, session=child),
           ev("session.end", 2800, 5000, {"session": child, "agent": "codex", "pid": 5000, "start_ns": 2500,
                                          "end_ns": 2800, "parent": SID, "exit_code": 0})]
    whole, _ = export(events[:3] + sub + events[3:])
    ids = {s.name + str(s.start_time): (s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None)
           for s in whole}
    codex = next(s for s in whole if s.name == "invoke_agent codex")
    claude = next(s for s in whole if s.name == "invoke_agent claude-code")
    assert codex.context.trace_id == claude.context.trace_id and codex.parent is not None
    assert codex.parent.span_id == claude.context.span_id
    # A sink restarted mid-session (it never saw session.start) names the same parent and the same ids.
    later, _ = export(events[5:])
    for s in later:
        assert ids[s.name + str(s.start_time)] == (
            s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None), s.name


def test_a_session_still_running_at_the_stop_is_exported_open() -> None:
    first = fixture_call("openai_chat")
    spans, _ = export(session_events(first)[:3])
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    tool = next(s for s in spans if s.name.startswith("execute_tool"))
    assert dict(agent.attributes or {})["agentsight.session.open"] is True
    assert dict(tool.attributes or {})["agentsight.tool.result_seen"] is False
    assert agent.end_time == 3000 and tool.end_time == 3000  # the last thing seen


def test_metrics_follow_the_conventions() -> None:
    first = fixture_call("openai_chat_stream")
    reader = InMemoryMetricReader()
    exp = OtlpExport("http://127.0.0.1:9", traces=False, metric_reader=reader)
    events = session_events(first)
    exp.feed(events[:5])
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    points = {dict(p.attributes)["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert points["input"].sum == first["usage"]["input_tokens"] and points["output"].count == 1
    assert dict(points["input"].attributes)["gen_ai.request.model"] == first["model_requested"]
    assert list(points["input"].explicit_bounds)[:3] == [1, 4, 16]
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s" and duration.data.data_points[0].sum == pytest.approx(1000e-9)
    assert "gen_ai.client.operation.time_to_first_chunk" in metrics
    rss = metrics["agentsight.session.memory.rss"].data.data_points[0]
    assert rss.value == 50_000_000 and dict(rss.attributes)["session.id"] == SID
    assert metrics["agentsight.session.processes"].data.data_points[0].value == 2
    assert metrics["agentsight.session.cpu.percent"].data.data_points[0].value == 12.5
    exp.feed(events[5:])  # the session ends: its gauges are read once more, then go
    again = reader.get_metrics_data()
    names = {m.name for rm in again.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "agentsight.session.memory.rss" in names
    exp.close()


class GatedExporter(SpanExporter):
    """Exports only when the gate opens; fails while ``fail`` is set (a receiver down)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.fail = False
        self.got: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.gate.wait(10)
        if self.fail:
            return SpanExportResult.FAILURE
        self.got.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """A request in flight is not interrupted by a shutdown (an HTTP request waits for its timeout)."""


def spans_for(n: int) -> list[Event]:
    call = fixture_call("openai_chat")
    call["tool_calls"] = []
    return [llm(call, 100 * i, 100 * i + 50, session=None) for i in range(1, n + 1)]


def test_a_full_queue_drops_the_oldest_and_counts_every_span() -> None:
    gated = GatedExporter()
    exp = OtlpExport("http://127.0.0.1:9", span_exporter=gated, metrics=False, max_queue=8, batch=4, delay_s=0.01)
    exp.feed(spans_for(50))  # the exporter holds its first batch: the queue fills, nothing waits
    gated.gate.set()
    assert exp.queue is not None and exp.queue.force_flush(5000)
    exp.close()
    c = exp.counts()
    assert c["spans_created"] == 50 and c["spans_dropped_queue_full"] > 0
    assert c["spans_exported"] == len(gated.got)
    assert c["spans_exported"] + c["spans_lost"] == 50 and c["spans_lost"] == c["spans_dropped_queue_full"]
    # The newest were kept.
    assert max(s.start_time or 0 for s in gated.got) == 5000


def test_failed_exports_and_what_is_left_at_the_stop_are_lost() -> None:
    gated = GatedExporter()
    gated.fail = True
    gated.gate.set()
    exp = OtlpExport("http://127.0.0.1:9", span_exporter=gated, metrics=False, batch=5, delay_s=0.01,
                     stop_budget_s=0.5)
    exp.feed(spans_for(10))
    assert exp.queue is not None and exp.queue.force_flush(5000)
    assert exp.counts()["spans_failed_export"] == 10
    gated.gate.clear()        # now the receiver hangs: a batch stays in flight at the stop
    gated.fail = False
    exp.feed(spans_for(3))
    exp.close()
    c = exp.counts()
    assert c["spans_lost"] == 13 and c["spans_unsent_at_stop"] == 3 and c["spans_exported"] == 0


def test_attribute_names_are_the_conventions_own() -> None:
    known = {getattr(gen_ai_attributes, n) for n in dir(gen_ai_attributes) if n.startswith("GEN_AI_")}
    first = fixture_call("anthropic_messages_stream")
    spans, _ = export(session_events(first), content=True)
    used = {k for s in spans for k in (s.attributes or {}) if k.startswith("gen_ai.")}
    assert used and used <= known, used - known


def test_endpoints_follow_the_otlp_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert resolved_url("http://c:4318/", "traces") == "http://c:4318/v1/traces"
    assert resolved_url("", "metrics") == "http://localhost:4318/v1/metrics"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t.example/x/traces")
    assert resolved_url("", "metrics") == "https://otel.example:4318/v1/metrics"
    assert resolved_url("", "traces") == "https://t.example/x/traces"
    assert resolved_url("http://given:4318", "traces") == "http://given:4318/v1/traces"


def mcp_call(tool_call_id: str | None, start: int, end: int, **extra: Any) -> Event:
    """An ``mcp.call`` of the ``mcp`` stage (its record layout): a tools/call over stdio."""
    return ev("mcp.call", end, 4400, {
        "call_id": f"4400#{start}", "transport": "stdio", "mcp_session": None, "protocol_version": "2025-06-18",
        "server": {"pid": 4400, "comm": "node", "argv": ["node", "weather-mcp.js"], "name": "weather"},
        "id": 3, "method": "tools/call", "tool": "get_weather", "arguments": {"city": "Paris"},
        "result": {"content": [{"type": "text", "text": "sunny"}]}, "error": None, "status": "ok",
        "ts_request_ns": start, "ts_response_ns": end, "session": SID, "agent": "claude-code",
        "llm": {"tool_call_id": tool_call_id, "tool_name": "get_weather"} if tool_call_id else None, **extra},
        comm="node")


@pytest.mark.parametrize("mcp_first", [True, False])
def test_an_mcp_tool_call_runs_under_the_model_tool_call_it_answers(mcp_first: bool) -> None:
    first = fixture_call("openai_chat")
    events = session_events(first)
    mcp = mcp_call(first["tool_calls"][0]["id"], 3300, 3700)
    # The MCP reply usually reaches the sink before the next request; either order gives one tree.
    events.insert(5 if mcp_first else 6, mcp)
    spans, _ = export(events, content=True)
    tool = next(s for s in spans if s.name == "execute_tool get_weather")
    run = next(s for s in spans if s.name == "tools/call get_weather")
    assert run.parent is not None and run.parent.span_id == tool.context.span_id
    assert run.context.trace_id == tool.context.trace_id and run.kind == SpanKind.CLIENT
    assert (run.start_time, run.end_time) == (3300, 3700)
    a = dict(run.attributes or {})
    assert a["mcp.method.name"] == "tools/call" and a["network.transport"] == "pipe"
    assert a["gen_ai.tool.call.id"] == first["tool_calls"][0]["id"] and a["agentsight.mcp.server"] == "weather"
    assert json.loads(str(a["gen_ai.tool.call.arguments"])) == {"city": "Paris"}
    assert sum(1 for s in spans if s.name.startswith("execute_tool")) == 1


def test_an_mcp_tool_call_no_model_asked_for_is_a_tool_span_of_its_session() -> None:
    first = fixture_call("openai_chat")
    events = session_events(first)
    events.insert(3, mcp_call(None, 2100, 2200, status="error", error={"code": -32602, "message": "bad city"}))
    events.insert(3, ev("mcp.call", 2050, 4400, {"method": "initialize", "session": SID}))
    spans, exp = export(events)
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    runs = [s for s in spans if s.name == "execute_tool get_weather" and s.start_time == 2100]
    assert len(runs) == 1 and runs[0].parent is not None and runs[0].parent.span_id == agent.context.span_id
    assert runs[0].status.status_code == StatusCode.ERROR and dict(runs[0].attributes or {})["error.type"] == "-32602"
    assert exp.counts()["mcp_calls_not_exported"] == 1  # initialize: not a tool run


def test_otel_flags_add_the_otlp_sink_to_a_capture() -> None:
    from agentsight.pipeline.presets import Capture, CaptureError, build_spec

    cap = Capture(ssl=True, process=True, http=True, llm=True, sessions=True, otel="http://127.0.0.1:4318",
                  otel_content=True, otel_attributes=["genai", "openinference"], otel_metrics=False)
    spec = build_spec(cap.pipeline())
    sink = spec.components["otlp"]
    assert sink.type == "otlp" and sink.inputs == ["redact"]  # after redaction, like every sink
    assert sink.options["endpoint"] == "http://127.0.0.1:4318" and sink.options["content"] is True
    assert sink.options["attributes"] == ["genai", "openinference"] and sink.options["metrics"] is False
    assert "otlp" not in build_spec(Capture(ssl=True).pipeline()).components
    with pytest.raises(CaptureError, match="attribute sets"):
        build_spec(Capture(ssl=True, otel="http://x:4318", otel_attributes=["zipkin"]).pipeline())
    with pytest.raises(CaptureError, match="not an http"):
        build_spec(Capture(ssl=True, otel="collector:4318").pipeline())


def test_the_end_of_run_line_says_what_was_lost_and_why() -> None:
    from agentsight.commands.capture import otel_line
    from agentsight.runtime.status import ActorStatus, PipelineStatus

    def sup(stats: dict[str, int]) -> PipelineStatus:
        return PipelineStatus("record", 1, "stopped", instances=(
            ActorStatus("sinks/otlp", "sink", "otlp", "stopped", stats=stats),
            ActorStatus("sinks/db", "sink", "db", "stopped")))

    assert otel_line(sup({"spans_exported": 27}), "http://c:4318") == \
        "OpenTelemetry: 27 span(s) exported to http://c:4318"
    line = otel_line(sup({"spans_exported": 3, "spans_lost": 12, "spans_failed_export": 2,
                          "spans_dropped_queue_full": 10, "metric_exports": 4, "metric_exports_failed": 4}), "http://c")
    assert line == ("OpenTelemetry: 3 span(s) exported to http://c; 12 lost: 2 failed (receiver down, refusing or "
                    "too slow), 10 dropped from the full queue; 4 of 4 metric export(s) failed")
    assert otel_line(PipelineStatus("record", 1, "stopped"), "http://c") is None


def test_resource_defaults_then_environment_then_the_sink_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=fleet,deployment.environment=ci,team=a")
    exp = OtlpExport("http://127.0.0.1:9", span_exporter=InMemorySpanExporter(), metrics=False,
                     resource={"team": "b"})
    r = dict(exp.resource.attributes)
    assert r["service.name"] == "fleet" and r["deployment.environment"] == "ci" and r["team"] == "b"
    assert r["host.name"] and r["telemetry.sdk.name"] == "opentelemetry"
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agents-prod")
    assert OtlpExport("http://127.0.0.1:9", span_exporter=InMemorySpanExporter(),
                      metrics=False).resource.attributes["service.name"] == "agents-prod"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert OtlpExport("http://127.0.0.1:9", span_exporter=InMemorySpanExporter(),
                      metrics=False).resource.attributes["service.name"] == "agentsight"


def test_a_record_of_an_unforeseen_shape_costs_only_itself() -> None:
    first = fixture_call("openai_chat")
    events = session_events(first)
    odd = copy.deepcopy(events[2])
    odd.data["usage"] = {"input_tokens": "many"}
    spans, exp = export([*events[:2], odd, *events[2:]])
    assert exp.counts()["map_errors"] == 1
    assert len([s for s in spans if s.name.startswith("chat")]) == 2  # the two good calls
