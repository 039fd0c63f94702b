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
from tests.chain import llm_calls, run_chain
from tests.conftest import AGENTSIGHT, read_jsonl
from tests.unit.test_llm_fixtures import NAMES, SECRETS, stable, wire


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
        expected += [c.data for c in llm_calls(run_chain(records))]
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


def test_odd_strings_and_huge_integers_cost_no_other_event_and_no_actor(pipeline, workdir):
    """Exchanges whose JSON holds a lone surrogate or an integer past 64 bits, among good ones:
    every exchange and every call arrives, the llm actor never restarts, the repairs are counted."""
    cap, out = workdir / "cap.jsonl", workdir / "out.jsonl"
    lines = []
    good, odd = 60, 6
    for i in range(good + odd):
        content = "fine" if i % 11 else ("cut inside an emoji \ud83d" if i % 2 else 2 ** 64 + i)
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}],
                           "max_tokens": 2 ** 70 if i % 11 == 0 else 10}).encode()
        answer = json.dumps({"id": f"c{i}", "model": "gpt-4o", "choices": [{"message": {
            "role": "assistant", "content": "ok \udc00" if i % 11 == 0 else "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
        ex = {"conn": f"1:{i}", "seq": 0, "host": "api.openai.com",
              "request": {"method": "POST", "path": "/v1/chat/completions", "host": "api.openai.com",
                          "query": "", "headers": [], "body": body, "body_text": body.decode()},
              "response": {"status_code": 200, "content_type": "application/json", "body": answer,
                           "body_text": answer.decode(), "complete": True, "headers": []}}
        lines.append(event_to_json(Event("http.exchange", 1_000 + i, "http", 1, 1, "agent", ex)))
    # The source itself reads an event that does not encode as it is (the replay's JSON escape).
    lines.append('{"topic":"x.odd","ts_ns":5,"source":"t","pid":1,"tid":1,"comm":"a",'
                 '"data":{"s":"\\ud83d","n":18446744073709551616}}')
    cap.write_text("\n".join(lines) + "\n")
    p = pipeline(f"""
[sources.cap]
type = "replay"
path = "{cap}"

[analyzers.llm]
type = "llm"
inputs = ["cap"]

[sinks.out]
type = "jsonl"
inputs = ["llm"]
path = "{out}"
""").start()
    assert p.wait(60) == 0, p.stderr()
    rows = read_jsonl(out)
    topics = [r["topic"] for r in rows]
    assert topics.count("http.exchange") == good + odd
    assert topics.count("llm.call") == good + odd
    assert topics.count("x.odd") == 1
    odd_row = next(r for r in rows if r["topic"] == "x.odd")
    assert odd_row["data"] == {"s": "\\ud83d", "n": "18446744073709551616"}
    assert "crashed" not in p.stderr()
    assert p.lost_reported() == 0
