"""The otlp sink as a real actor process, sending OTLP/HTTP protobuf to real receivers.

- an OTLP/HTTP receiver in this test process (the protobuf request types of opentelemetry-proto):
  the spans and metrics arrive over the wire as the conventions say;
- a receiver that is down (connection refused) or hangs (accepts, never answers): the pipeline
  runs at full speed to its end anyway, every other sink gets every event, and every span the
  receiver never got is counted in the otlp sink's dropped and in the exit summary;
- Arize Phoenix (one per test session): it reads the spans as LLM, TOOL and AGENT spans, with
  models, tokens and, when asked, the prompts, and no credential.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentsight.event import Event
from agentsight.jsonform import event_to_json
from tests.conftest import read_jsonl, summary_rows, wait_for
from tests.unit.test_otlp import PASTED_KEY, SID, fixture_call, llm, session_events

SINK = "sinks/otlp"


class Receiver:
    """OTLP/HTTP on loopback: ``ok`` stores what it gets and answers 200; ``hang`` never answers."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.spans: list[Any] = []          # (resource attributes, span) per span
        self.metrics: list[Any] = []
        self.requests = 0
        self.release = threading.Event()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recv.requests += 1
                if recv.mode == "hang":
                    recv.release.wait(60)
                    return
                if self.path == "/v1/traces":
                    req = ExportTraceServiceRequest.FromString(body)
                    for rs in req.resource_spans:
                        res = {kv.key: kv.value for kv in rs.resource.attributes}
                        recv.spans += [(res, s) for ss in rs.scope_spans for s in ss.spans]
                elif self.path == "/v1/metrics":
                    req = ExportMetricsServiceRequest.FromString(body)
                    recv.metrics += [m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(mode: str = "ok") -> Receiver:
        r = Receiver(mode)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def closed_port() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write_capture(path: Path, events: list[Event]) -> None:
    path.write_text("".join(event_to_json(e) + "\n" for e in events))


def toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def config(capture: Path, out: Path, endpoint: str, **otlp: Any) -> str:
    opts = "\n".join(f"{k} = {toml_value(v)}" for k, v in otlp.items())
    return f"""
[sources.cap]
type = "replay"
path = "{capture}"

[sinks.out]
type = "jsonl"
inputs = ["cap"]
path = "{out}"

[sinks.otlp]
type = "otlp"
inputs = ["cap"]
endpoint = "{endpoint}"
{opts}

[bus]
enabled = false
"""


def many_calls(n: int) -> list[Event]:
    """n LLM calls outside any session, without tool calls: one span each."""
    call = fixture_call("openai_chat")
    call["tool_calls"] = []
    base = 1_764_435_000_000_000_000
    return [llm(copy.deepcopy(call), base + i * 10**6, base + i * 10**6 + 500_000, session=None)
            for i in range(n)]


def test_spans_and_metrics_arrive_over_otlp_http(pipeline, workdir: Path, receiver) -> None:
    recv = receiver()
    first = fixture_call("anthropic_messages")
    base = 1_764_435_000_000_000_000
    events = [Event(e.topic, base + e.ts_ns, e.source, e.pid, e.tid, e.comm, e.data) for e in session_events(first)]
    for e in events:
        for k in ("ts_request_start_ns", "ts_first_byte_ns", "ts_first_token_ns", "ts_end_ns", "start_ns", "end_ns"):
            if isinstance(e.data.get(k), int):
                e.data[k] += base
    write_capture(workdir / "cap.jsonl", events)
    p = pipeline(config(workdir / "cap.jsonl", workdir / "out.jsonl", recv.url, metrics_interval=60.0,
                        resource={"deployment.environment": "ci"}))
    assert p.start().wait(60) == 0, p.stderr()
    assert summary_rows(p.stderr())[SINK]["dropped"] == 0 and "no events lost" in p.stderr()
    names = sorted(s.name for _, s in recv.spans)
    model, tool = first["model_requested"], first["tool_calls"][0]["name"]
    assert names == [f"chat {model}", f"chat {model}", f"execute_tool {tool}", "invoke_agent claude-code"], names
    by_name = {s.name: (res, s) for res, s in recv.spans}
    res, agent = by_name["invoke_agent claude-code"]
    assert res["service.name"].string_value == "agentsight" and res["deployment.environment"].string_value == "ci"
    assert agent.start_time_unix_nano == base + 1000 and agent.end_time_unix_nano == base + 6000
    calls = [s for _, s in recv.spans if s.name.startswith("chat")]
    assert all(c.parent_span_id == agent.span_id and c.trace_id == agent.trace_id for c in calls)
    attrs = {kv.key: kv.value for kv in min(calls, key=lambda c: c.start_time_unix_nano).attributes}
    assert attrs["gen_ai.usage.input_tokens"].int_value == first["usage"]["input_tokens"]
    assert attrs["gen_ai.usage.cache_creation.input_tokens"].int_value == first["usage"]["cache_write_tokens"]
    assert attrs["gen_ai.provider.name"].string_value == "anthropic"
    assert attrs["process.command_args"].array_value.values[0].string_value == "claude"
    # The metrics: sent at the stop (the interval is longer than the run).
    metrics = {m.name: m for m in recv.metrics}
    usage = metrics["gen_ai.client.token.usage"].histogram.data_points
    by_type = {next(a.value.string_value for a in dp.attributes if a.key == "gen_ai.token.type"): dp for dp in usage}
    assert by_type["input"].sum == 2 * first["usage"]["input_tokens"] and by_type["input"].count == 2
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    rss = metrics["agentsight.session.memory.rss"].gauge.data_points[0]
    assert rss.as_int == 50_000_000 or rss.as_double == 50_000_000


@pytest.mark.parametrize("receiver_state", ["down", "hanging"])
def test_a_receiver_down_or_hanging_never_blocks_the_pipeline(pipeline, workdir: Path, receiver,
                                                               receiver_state: str) -> None:
    n = 3000
    write_capture(workdir / "cap.jsonl", many_calls(n))
    url = closed_port() if receiver_state == "down" else receiver("hang").url
    p = pipeline(config(workdir / "cap.jsonl", workdir / "out.jsonl", url, queue_size=64, batch_size=32,
                        timeout=1.0, stop_timeout=1.0, metrics_interval=0.2))
    t0 = time.monotonic()
    assert p.start().wait(120) == 0, p.stderr()
    took = time.monotonic() - t0
    # Every event reached the other sink: nothing waited on the receiver (3,000 calls at a 1 s timeout
    # each would take an hour if the sink waited on every export).
    assert len(read_jsonl(workdir / "out.jsonl")) == n
    assert took < 60, took
    rows = summary_rows(p.stderr())
    assert rows["sinks/out"]["dropped"] == 0 and rows[SINK]["received"] == n
    # Every span the receiver did not take is counted lost, and said.
    assert rows[SINK]["dropped"] == n, p.stderr()
    assert f"events lost: {n}" in p.stderr()
    why = "cannot connect: down or unreachable" if receiver_state == "down" else "no answer within the timeout"
    assert f"/v1/traces failed ({why}): spans are counted as lost" in p.stderr(), p.stderr()
    assert f"/v1/metrics failed ({why})" in p.stderr()


def test_phoenix_reads_the_spans_as_llm_tool_and_agent_spans(pipeline, workdir: Path, phoenix) -> None:
    project = f"replay-{workdir.name}"
    first = fixture_call("openai_chat")
    first["messages"][0]["parts"][0]["text"] += f" (key: {PASTED_KEY})"
    first["messages"][0]["content"] += f" (key: {PASTED_KEY})"
    now = time.time_ns() - 10**9
    events = [Event(e.topic, now + e.ts_ns, e.source, e.pid, e.tid, e.comm, e.data) for e in session_events(first)]
    for e in events:
        for k in ("ts_request_start_ns", "ts_first_byte_ns", "ts_first_token_ns", "ts_end_ns", "start_ns", "end_ns"):
            if isinstance(e.data.get(k), int):
                e.data[k] += now
    write_capture(workdir / "cap.jsonl", events)
    p = pipeline(config(workdir / "cap.jsonl", workdir / "out.jsonl", phoenix.url, metrics=False, content=True,
                        resource={"openinference.project.name": project}))
    assert p.start().wait(60) == 0, p.stderr()
    assert summary_rows(p.stderr())[SINK]["dropped"] == 0
    spans = wait_for(lambda: (s := phoenix.spans(project)) and len(s) >= 4 and s, 60, interval=0.5,
                     what="Phoenix to store the spans")
    kinds = sorted((s["span_kind"], s["name"]) for s in spans)
    assert kinds == [("AGENT", "invoke_agent claude-code"), ("LLM", "chat gpt-4o-mini"), ("LLM", "chat gpt-4o-mini"),
                     ("TOOL", "execute_tool get_weather")]
    agent = next(s for s in spans if s["span_kind"] == "AGENT")
    llms = sorted((s for s in spans if s["span_kind"] == "LLM"), key=lambda s: s["start_time"])
    assert all(s["parent_id"] == agent["context"]["span_id"] for s in spans if s is not agent)
    a = llms[0]["attributes"]
    # Phoenix's own view of the call: model, token counts, session, the messages.
    assert a["llm.model_name"] == "gpt-4o-mini" and a["session.id"] == SID
    assert a["llm.token_count.prompt"] == first["usage"]["input_tokens"]
    assert a["llm.token_count.completion"] == first["usage"]["output_tokens"]
    assert "Paris" in json.dumps(a)
    tool = next(s for s in spans if s["span_kind"] == "TOOL")
    assert tool["attributes"]["gen_ai.tool.call.arguments"] == '{"city":"Paris"}'
    assert PASTED_KEY not in json.dumps(spans) and "[REDACTED" in json.dumps(spans)
    # The follow-up call carried the tool's result: the TOOL span ends where that request starts.
    assert tool["attributes"]["agentsight.tool.result_seen"] is True and tool["end_time"] == llms[1]["start_time"]
