"""`agentsight report` over a recording built from known events."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from agentsight.event import Event
from agentsight.recording import report
from agentsight.recording.store import Store
from tests.conftest import AGENTSIGHT
from tests.unit.test_store import ev, session_events


def call(dt: int, pid: int, model: str, provider: str, inp: int | None, out: int | None, cost: float | None,
         text: str) -> Event:
    return ev("llm.call", dt, pid, {
        "provider": provider, "api": "openai.chat", "host": f"api.{provider}.com", "endpoint": "/v1/chat/completions",
        "model": model, "status_code": 200, "stream": False, "system": "be brief",
        "messages": [{"role": "user", "content": f"question {dt}"}], "tools": [{"name": "bash"}],
        "output_text": text, "tool_calls": [{"id": "c1", "name": "bash", "arguments": '{"cmd":"ls"}'}],
        "usage": {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": None, "cache_write_tokens": None,
                  "reasoning_tokens": None},
        "cost": None if cost is None else {"total": cost, "price_source": "genai-prices 0.2.3"},
        "session": "100@1"})


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "rec.db"
    with Store(path) as s:
        s.add(session_events())
        s.add([call(41, 100, "gpt-x", "openai", 1000, 50, 0.01, "first answer"),
               call(42, 101, "gpt-x", "openai", 2000, None, None, "second answer"),
               call(43, 100, "claude-y", "anthropic", 10, 5, 0.5, "third answer")])
        s.set_meta("command", "python3 agent.py")
        s.set_meta("exit_code", "7")
    return path


def test_summary_counts_match_the_recording(db):
    with Store(db, readonly=True) as s:
        sm = report.summary(s)
    assert sm["llm"]["total"]["calls"] == 4  # the fixture's call plus these three
    gx = sm["llm"]["by_model"]["gpt-x"]
    assert (gx["calls"], gx["input_tokens"], gx["output_tokens"], gx["cost_usd"], gx["unpriced_calls"]) == \
        (2, 3000, 50, 0.01, 1)
    assert sm["exit_code"] == 7 and sm["processes"] == 2 and sm["endpoints"] == {"127.0.0.1:8443": 1}
    assert sm["llm"]["price_source"] == "genai-prices 0.2.3"
    text = report.format_summary(sm)
    assert "recorded python3 agent.py" in text and "exit code 7" in text and "gpt-x" in text
    assert "1 call(s) without a price" in text


def test_tokens_grouped(db):
    with Store(db, readonly=True) as s:
        by_provider = {r["provider"]: r for r in report.tokens(s, "provider")}
        by_process = {r["process"]: r for r in report.tokens(s, "process")}
    assert by_provider["openai"]["input_tokens"] == 3000 and by_provider["anthropic"]["calls"] == 2
    assert by_process["python3[101]"]["calls"] == 1 and by_process["python3[100]"]["calls"] == 3
    with pytest.raises(ValueError):
        report.tokens(s, "color")


def test_cli_report_commands(db, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AGENTSIGHT, "report", *args, "--db", str(db)], capture_output=True, text=True,
                              timeout=60)

    r = run("tokens", "--by", "model", "--json")
    assert r.returncode == 0 and {x["model"] for x in json.loads(r.stdout)} == {"gpt-x", "claude-y", "claude-x"}
    r = run("prompts")
    assert "question 41" in r.stdout and "first answer" in r.stdout and "tool call: bash" in r.stdout
    out = tmp_path / "export.json"
    r = run("export", "-o", str(out), "--events")
    assert r.returncode == 0 and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert len(doc["llm_calls"]) == 4 and len(doc["events"]) == 15 and doc["meta"]["exit_code"] == "7"
    bad = subprocess.run([*AGENTSIGHT, "report", "summary", "--db", str(tmp_path / "none.db")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("no such recording")
