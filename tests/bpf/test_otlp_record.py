"""Issue acceptance for the OTLP export: the demo agent (real openai and anthropic SDKs, tools, a
node child) recorded with `record --otel` into Arize Phoenix, and read back from Phoenix's API.

Oracle: the LLM server's own log of every exchange it answered. Every one of them must be an
LLM span in Phoenix with its model and token counts, under the recorded session's agent span,
with the times the capture saw; no API key may be in any attribute, prompts included.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bpf.test_llm_e2e import KEYS, LlmServer, expected_usage, server  # noqa: F401  (fixture)
from tests.conftest import AGENTSIGHT, wait_for
from tests.phoenix import project_env

pytestmark = pytest.mark.bpf


def test_record_exports_every_llm_call_to_phoenix_under_its_session(workdir: Path, server: LlmServer,  # noqa: F811
                                                                    phoenix) -> None:
    project = f"record-{workdir.name}"
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(workdir / "agent.db"), "--runtime-dir",
                        str(workdir / "run"), "--otel", phoenix.url, "--otel-content", "--no-otel-metrics", "--",
                        sys.executable, "-m", "agentsight.demo.agent", "--base-url", server.url, "--ca",
                        str(server.ca), "--calls", "8", "--node", "--workdir", str(workdir / "work"), "--quiet"],
                       capture_output=True, text=True, timeout=300, env=project_env(project))
    assert r.returncode == 0, r.stderr
    entries = server.entries()
    assert len(entries) == 9  # 8 calls of the agent and the node child's
    said = re.search(rf"OpenTelemetry: (\d+) span\(s\) exported to {re.escape(phoenix.url)}\n", r.stderr)
    assert said, r.stderr
    exported = int(said.group(1))

    def stored() -> list[dict[str, Any]] | None:  # Phoenix stores what it received in the background
        spans = phoenix.spans(project)
        return spans if len(spans) >= exported else None

    spans = wait_for(stored, 60, interval=0.5, what=f"Phoenix to store the {exported} spans sent")
    assert len(spans) == exported
    llm = [s for s in spans if s["span_kind"] == "LLM"]
    assert len(llm) == len(entries)
    by_id = {s["attributes"]["gen_ai.response.id"]: s for s in llm}
    agents = [s for s in spans if s["span_kind"] == "AGENT"]
    assert [a["attributes"]["gen_ai.agent.name"] for a in agents] == ["recorded"]
    agent = agents[0]
    for e in entries:
        span = by_id[e["response_id"]]
        a = span["attributes"]
        usage = expected_usage(e["api"], e["usage"])
        assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == (e["model_requested"], e["model"])
        assert a["llm.model_name"] == e["model_requested"]  # what Phoenix shows
        assert a["gen_ai.usage.input_tokens"] == a["llm.token_count.prompt"] == usage["input_tokens"]
        assert a["gen_ai.usage.output_tokens"] == a["llm.token_count.completion"] == usage["output_tokens"]
        if usage["cache_read_tokens"]:
            assert a["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_tokens"]
        # Under the recorded session's agent span, in its trace, within its time.
        assert span["parent_id"] == agent["context"]["span_id"]
        assert span["context"]["trace_id"] == agent["context"]["trace_id"]
        assert agent["start_time"] <= span["start_time"] <= span["end_time"] <= agent["end_time"]
        assert a["session.id"] == agent["attributes"]["session.id"]
        assert a["process.pid"] > 0 and a["process.executable.path"]
    comms = {s["attributes"]["process.executable.name"] for s in llm}
    assert "node" in comms  # the child's call, with its own process
    tools = [s for s in spans if s["span_kind"] == "TOOL"]
    assert tools and all(t["parent_id"] == agent["context"]["span_id"] for t in tools)
    assert {t["attributes"]["gen_ai.tool.name"] for t in tools} == {"run_command"}
    assert agent["attributes"]["process.exit.code"] == 0
    dump = json.dumps(spans)
    for key in KEYS:
        assert key not in dump
