"""Issue acceptance for `record`: an agent on the real openai and anthropic SDKs, with tools and a
node child, recorded from outside; every LLM call in the recording equals what the server sent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentsight.event import Event
from agentsight.recording.report import format_summary, summary
from agentsight.recording.store import Store
from tests.bpf.test_llm_e2e import KEYS, LlmServer, check_call, server  # noqa: F401  (fixture)
from tests.conftest import AGENTSIGHT

pytestmark = pytest.mark.bpf


def test_record_an_sdk_agent_with_tools_and_a_node_child(workdir: Path, server: LlmServer) -> None:  # noqa: F811
    db = workdir / "agent.db"
    work = workdir / "work"
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(workdir / "run"), "--",
                        sys.executable, "-m", "agentsight.demo.agent", "--base-url", server.url, "--ca",
                        str(server.ca), "--calls", "12", "--node", "--exit-code", "3", "--workdir", str(work),
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    entries = server.entries()
    assert {e["api"] for e in entries} == {"openai.chat", "openai.responses", "anthropic.messages"}
    with Store(db, readonly=True) as s:
        rows = s.llm_calls()
        calls = [Event("llm.call", row["ts_ns"], "llm", row["pid"], row["pid"], row["comm"],
                       s.llm_call(row["id"])["data"]) for row in rows]
        exchanges = {(x["data"]["conn"], x["data"]["seq"]): x["data"] for x in s.events(topics=["http.exchange"])}
        # Every exchange the server logged is a call in the recording, with its exact prompt,
        # answer, tool calls, model and token counts.
        assert len(calls) == len(entries)
        by_id = {e["response_id"]: e for e in entries}
        run = SimpleNamespace(exchanges=exchanges)
        for call in calls:
            check_call(run, call, by_id[call.data["response_id"]])  # type: ignore[arg-type]
        assert {c.comm for c in calls} >= {"node"}  # the node child's call, with no flag
        # The tools ran as processes under the agent, in its session.
        procs = s.processes()
        root = next(p for p in procs if p["agent"] == "recorded" and p["ppid"] not in {q["pid"] for q in procs})
        assert root["exit_code"] == 3
        kids = {p["filename"].rsplit("/", 1)[-1] for p in procs if p["ppid"] == root["pid"]}
        assert {"ls", "cat", "sh", "node"} <= kids
        assert all(p["session"] == root["session"] for p in procs)
        assert all(row["session"] == root["session"] for row in rows)
        expect = summary(s)
        dump = db.read_bytes() + (Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b"")
    for key in KEYS:
        assert key.encode() not in dump
    # The summary printed is the recording's summary.
    printed = r.stderr[r.stderr.index("recorded "):]
    assert format_summary(expect) in printed
    total = expect["llm"]["total"]
    assert f"LLM calls: {len(entries)} to" in printed
    assert re.search(rf"tokens in {total['input_tokens']:,} ", printed)
