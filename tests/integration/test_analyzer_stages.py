"""The analyzer stages as real actor processes: TLS records in, LLM calls out, secrets never.

A capture of every provider fixture on two keep-alive connections, cut into TLS-record-sized
pieces, is replayed through ``http`` (2 workers) -> ``sse`` -> ``llm`` -> ``http_filter`` ->
``redact`` -> jsonl; the calls must equal what the analysis classes give in-process.
"""

from __future__ import annotations

import json
import random
import subprocess

from agentsight.event import Event
from agentsight.jsonform import event_to_json, to_jsonable
from tests.conftest import AGENTSIGHT, read_jsonl
from tests.unit.test_llm_fixtures import NAMES, SECRETS, pipeline, stable, wire


def capture(path, raw_conns: int = 2) -> dict[str, list[tuple[str, bytes]]]:
    """Write the fixtures as ssl.data records spread over connections; returns the records per connection."""
    rng = random.Random(7)
    per_conn: dict[str, list[tuple[str, bytes]]] = {}
    lines = []
    ts = 1_764_435_000_000_000_000
    for i, name in enumerate(NAMES):
        pid = 4000 + i % raw_conns
        conn = f"{pid}:7f00{i % raw_conns:02x}"
        for direction, blob in zip(("write", "read"), wire(name), strict=True):
            pos = 0
            while pos < len(blob):
                n = rng.randint(1, 700)
                piece = blob[pos:pos + n]
                pos += n
                ts += 1000
                per_conn.setdefault(conn, []).append((direction, piece))
                lines.append(event_to_json(Event("ssl.data", ts, "ssl", pid, pid, "agent",
                                                 {"conn": conn, "dir": direction, "bytes": piece,
                                                  "len": len(piece)})))
    path.write_text("\n".join(lines) + "\n")
    return per_conn


def config(capture_path, out, exclude: str = "") -> str:
    return f"""
[sources.cap]
type = "replay"
path = "{capture_path}"

[analyzers.http]
type = "http"
inputs = ["cap"]
workers = 2
raw = true

[analyzers.sse]
type = "sse"
inputs = ["http"]

[analyzers.llm]
type = "llm"
inputs = ["sse"]

[analyzers.noise]
type = "http_filter"
inputs = ["llm"]
exclude = {exclude or '[]'}

[analyzers.redact]
type = "redact"
inputs = ["noise"]

[sinks.out]
type = "jsonl"
inputs = ["redact"]
path = "{out}"
"""


def test_llm_calls_from_a_replayed_capture_match_in_process_analysis(pipeline, workdir):
    cap, out = workdir / "cap.jsonl", workdir / "out.jsonl"
    per_conn = capture(cap)
    p = pipeline(config(cap, out, exclude='["POST /v1/messages"]')).start()
    assert p.wait(90) == 0, p.stderr()
    rows = read_jsonl(out)
    calls = [r["data"] for r in rows if r["topic"] == "llm.call"]

    expected = []
    for records in per_conn.values():
        expected += [c.data for c in pipeline_calls(records)]
    # The filter runs after llm: the Anthropic calls stay, the http.* records of their exchanges go.
    assert len(calls) == len(NAMES)
    assert sorted(c["api"] for c in calls) == sorted(c["api"] for c in expected)
    by_key = {(c["api"], c["stream"], c["model"]): stable(c) for c in calls}
    for c in expected:
        got = by_key[(c["api"], c["stream"], c["model"])]
        want = stable(c)
        assert got["usage"] == jsonish(want["usage"])
        assert got["output_text"] == want["output_text"] and got["tool_calls"] == jsonish(want["tool_calls"])
        assert got["messages"] == jsonish(want["messages"])
    exchanges = [r for r in rows if r["topic"] == "http.exchange"]
    assert exchanges and all(r["data"]["request"]["path"] != "/v1/messages" for r in exchanges)
    assert len(exchanges) == len(NAMES) - sum(1 for n in NAMES if n.startswith("anthropic"))
    assert sum(1 for r in rows if r["topic"] == "ssl.data") == sum(len(v) for v in per_conn.values())
    text = out.read_text()
    for secret in SECRETS:
        assert secret in cap.read_text()
        assert secret not in text
    assert "no events lost" in p.stderr()


def pipeline_calls(records):
    return pipeline(records)[1]


def jsonish(value):
    return json.loads(json.dumps(to_jsonable(value)))


def test_a_bad_filter_is_rejected_at_validate_time_with_its_position(workdir):
    cap, out = workdir / "cap.jsonl", workdir / "out.jsonl"
    cap.write_text("")
    cfg = workdir / "p.toml"
    cfg.write_text(config(cap, out, exclude='["len>abc"]'))
    r = subprocess.run([*AGENTSIGHT, "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "[analyzers.noise]" in r.stderr + r.stdout
    assert "position 4" in r.stderr + r.stdout
