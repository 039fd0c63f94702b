"""End to end: the official openai/anthropic SDKs, node and curl against the demo LLM server,
captured by the ssl source and read by HttpStreams -> SseMerge -> LlmCalls.

Oracle: the server (a separate process) logs every exchange it answered: the request body,
the answer text, the tool calls and the usage object it sent. Each ``llm.call`` must say
the same, and the decoded request body of its ``http.exchange`` must equal the body the
server parsed. The agent's own report (what the SDKs parsed) must agree too, so the
server's wire formats are known to be the real ones. The fake API keys cross the wire
(they are in the captured plaintext) and must not appear in anything the analysis emits.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsight.actors.sources.ssl import SslSource
from agentsight.demo.agent import ANTHROPIC_KEY, NODE_KEY, OPENAI_KEY
from agentsight.demo.llm_server import read_log
from agentsight.event import Event
from tests.bpf.conftest import run_gated
from tests.chain import Chain

pytestmark = pytest.mark.bpf
pytest.importorskip("openai")
pytest.importorskip("anthropic")

SOURCE = SslSource
TTFT_MS = 40
CHUNK_MS = 4
CURL_KEY = "sk-demo-curl-5b8e2f0c9d1a7e3b6c4f"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, NODE_KEY, CURL_KEY)


class LlmServer:
    """agentsight.demo.llm_server in its own process, with its CA and exchange log."""

    def __init__(self, tmp: Path) -> None:
        self.ca, self.log, ready = tmp / "ca.pem", tmp / "exchanges.jsonl", tmp / "ready"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentsight.demo.llm_server", "--port", "0", "--ca-out", str(self.ca),
             "--log", str(self.log), "--ready-file", str(ready), "--ttft-ms", str(TTFT_MS),
             "--chunk-ms", str(CHUNK_MS), "--reply-words", "40"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "the LLM server did not start in 30 s"
            time.sleep(0.05)
        self.port = int(ready.read_text())
        self.url = f"https://127.0.0.1:{self.port}"

    def entries(self) -> list[dict[str, Any]]:
        return read_log(self.log)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LlmServer]:
    srv = LlmServer(tmp_path)
    yield srv
    srv.close()


class Run:
    """One traced run: the raw capture and what the analysis made of it."""

    def __init__(self, events: list[Event], root: int) -> None:
        self.events = events
        self.root = root
        self.data = [e for e in events if e.topic == "ssl.data"]
        self.out = Chain().run(self.data)
        # In request order: a stream whose terminator was never read completes only at the flush.
        self.calls = sorted((e for e in self.out if e.topic == "llm.call"),
                            key=lambda e: e.data["ts_request_start_ns"])
        self.exchanges = {(e.data["conn"], e.data["seq"]): e.data for e in self.out if e.topic == "http.exchange"}
        assert not [e for e in self.out if e.topic == "llm.error"]
        # openai-python closes a stream's connection once it has read [DONE], before the chunked
        # body's terminator: HttpStreams reports that cut, and nothing else may go wrong.
        cut = [e for e in self.out if e.topic == "http.error"]
        assert all(e.data["error"].endswith("(incomplete chunked read)") for e in cut), cut


def run_traced(source_factory: Callable[..., Any], argv: list[str], tmp_path: Path,
               expect_rc: int = 0, timeout: float = 120.0) -> Run:
    """Run ``argv`` under a shell gate, traced by tree; it starts only once the source is attached."""
    with open(tmp_path / "client.out", "wb") as out:
        events, source, gate = run_gated(argv, lambda pid: source_factory(pid=pid, tree=True), timeout=timeout,
                                         stdout=out, stderr=subprocess.STDOUT)
    assert gate.returncode == expect_rc, (tmp_path / "client.out").read_text(errors="replace")
    assert source.stats.get("kernel_lost", 0) == 0 and source.stats.get("incomplete", 0) == 0
    return Run(events, gate.pid)


def agent(server: LlmServer, tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "agentsight.demo.agent", "--base-url", server.url, "--ca", str(server.ca),
            "--workdir", str(tmp_path / "work"), "--report", str(tmp_path / "report.jsonl"), *args]


# --------------------------------------------------------------------------- the oracle


def expected_usage(api: str, u: dict[str, Any] | None) -> dict[str, Any]:
    """The normalised usage docs/analyzers.md promises, from the provider object the server sent."""
    if u is None:
        return {"input_tokens": None, "output_tokens": None, "cache_read_tokens": None, "cache_write_tokens": None,
                "reasoning_tokens": None, "uncached_input_tokens": None, "total_tokens": None, "raw": None}
    if api == "anthropic.messages":
        read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
        inp, out, reasoning = u["input_tokens"] + read + write, u["output_tokens"], None
    else:
        side = ("prompt", "completion") if api == "openai.chat" else ("input", "output")
        inp, out = u[f"{side[0]}_tokens"], u[f"{side[1]}_tokens"]
        read, write = u[f"{side[0]}_tokens_details"]["cached_tokens"], None
        reasoning = u[f"{side[1]}_tokens_details"]["reasoning_tokens"]
    return {"input_tokens": inp, "output_tokens": out, "cache_read_tokens": read, "cache_write_tokens": write,
            "reasoning_tokens": reasoning, "uncached_input_tokens": inp - read - (write or 0),
            "total_tokens": inp + out, "raw": u}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content or [] if "text" in p)


def expected_prompt(api: str, body: dict[str, Any]) -> tuple[str | None, list[tuple[Any, ...]]]:
    """(system prompt, [(role, kind, ...)]) read straight from the request body the server logged."""
    system: list[str] = []
    parts: list[tuple[Any, ...]] = []
    if api == "openai.chat":
        for m in body["messages"]:
            if m["role"] in ("system", "developer"):
                system.append(_text(m["content"]))
            elif m["role"] == "tool":
                parts.append(("tool", "tool_result", m["tool_call_id"], _text(m["content"])))
            else:
                if m.get("content"):
                    parts.append((m["role"], "text", _text(m["content"])))
                parts += [(m["role"], "tool_call", c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                          for c in m.get("tool_calls") or []]
    elif api == "openai.responses":
        if body.get("instructions"):
            system.append(body["instructions"])
        items = [{"role": "user", "content": body["input"]}] if isinstance(body["input"], str) else body["input"]
        for it in items:
            kind = it.get("type", "message")
            if kind == "message":
                parts.append((it["role"], "text", _text(it["content"])))
            elif kind == "function_call":
                parts.append(("assistant", "tool_call", it["call_id"], it["name"], json.loads(it["arguments"])))
            else:
                parts.append(("tool", "tool_result", it["call_id"], it["output"]))
    else:
        if body.get("system"):
            system.append(_text(body["system"]))
        for m in body["messages"]:
            blocks = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]
            for b in blocks:
                if b["type"] == "text":
                    parts.append((m["role"], "text", b["text"]))
                elif b["type"] == "tool_use":
                    parts.append((m["role"], "tool_call", b["id"], b["name"], b["input"]))
                elif b["type"] == "tool_result":
                    parts.append((m["role"], "tool_result", b["tool_use_id"], _text(b["content"])))
    return ("\n\n".join(system) if system else None), parts


def captured_prompt(call: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for m in call["messages"]:
        for p in m["parts"]:
            if p["type"] == "text":
                out.append((m["role"], "text", p["text"]))
            elif p["type"] == "tool_call":
                out.append((m["role"], "tool_call", p["id"], p["name"], p["input"]))
            elif p["type"] == "tool_result":
                out.append((m["role"], "tool_result", p["id"], p["content"]))
    return out


def check_call(run: Run, call: Event, entry: dict[str, Any]) -> None:
    """One llm.call against the server's record of that exchange."""
    c = call.data
    api = entry["api"]
    assert (c["api"], c["status_code"], c["stream"]) == (api, entry["status"], entry["stream"])
    exchange = run.exchanges[(c["conn"], c["seq"])]
    if "request" in entry:
        assert json.loads(exchange["request"]["body_text"]) == entry["request"]
    else:  # not JSON: the bytes as the server read them
        assert exchange["request"]["body_text"] == entry["request_text"]
    if entry["status"] != 200:
        assert c["error"]["status"] == entry["status"]
        err = entry["error"]["error"]
        assert (c["error"]["type"], c["error"]["message"]) == (err["type"], err["message"])
        assert json.loads(c["error"]["body"]) == entry["error"]
        return
    assert c["error"] is None and c["notes"] == []
    assert (c["model_requested"], c["model"], c["response_id"]) == (
        entry["model_requested"], entry["model"], entry["response_id"])
    assert c["output_text"] == entry["answer_text"]
    assert c["tool_calls"] == [{k: t[k] for k in ("id", "name", "arguments", "input")} for t in entry["tool_calls"]]
    assert c["stop_reason"] == entry["stop_reason"]
    assert c["usage"] == expected_usage(api, entry["usage"])
    system, prompt = expected_prompt(api, entry["request"])
    assert c["system"] == system
    assert captured_prompt(c) == prompt
    assert [t["name"] for t in c["tools"]] == [
        t.get("name") or t["function"]["name"] for t in entry["request"].get("tools") or []]
    assert c["user_agent"] == entry["user_agent"]
    # The server waits TTFT_MS before the first content; the clock starts at the request's write.
    assert c["ttft_ms"] is not None and c["ttft_ms"] >= TTFT_MS
    assert c["duration_ms"] >= c["ttft_ms"]
    if c["stream"]:
        assert c["stream_events"] > 3


def check_run(run: Run, entries: list[dict[str, Any]]) -> list[tuple[Event, dict[str, Any]]]:
    """Pair every llm.call with its log entry (by response id; errors in order) and check each."""
    assert len(run.calls) == len(entries), (len(run.calls), len(entries))
    by_id = {e["response_id"]: e for e in entries if e["response_id"]}
    errors = iter(e for e in entries if not e["response_id"])
    pairs = [(call, by_id[call.data["response_id"]] if call.data["response_id"] else next(errors))
             for call in run.calls]
    for call, entry in pairs:
        check_call(run, call, entry)
    check_secrets(run)
    return pairs


def check_secrets(run: Run) -> None:
    """The keys crossed the wire, and nothing derived from the capture holds one."""
    raw = b"".join(e.data["bytes"] for e in run.data)
    sent = [k for k in KEYS if k.encode() in raw]
    assert sent, "no API key in the captured plaintext: the secret check would prove nothing"
    dumped = repr([e.to_dict() for e in run.out])
    assert "[REDACTED" in dumped
    for key in KEYS:
        assert key not in dumped and key[-12:] not in dumped


def check_report(report: Path, pairs: list[tuple[Event, dict[str, Any]]]) -> None:
    """What the SDKs parsed equals what the server sent (so the wire formats are the real ones)."""
    sdk = [json.loads(line) for line in report.read_text().splitlines()]
    by_id = {e["response_id"]: e for _, e in pairs}
    assert len(sdk) == len([1 for c, _ in pairs if c.comm != "node"])
    for r in sdk:
        e = by_id[r["response_id"]]
        assert (r["model"], r["text"]) == (e["model"], e["answer_text"])
        assert r["tool_calls"] == [{k: t[k] for k in ("id", "name", "arguments")} for t in e["tool_calls"]]
        assert r["usage"] == e["usage"] or {k: v for k, v in r["usage"].items() if k in e["usage"]} == e["usage"]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("apis, api", [("chat-stream,chat", "openai.chat"),
                                        ("responses-stream,responses", "openai.responses"),
                                        ("messages-stream,messages", "anthropic.messages")])
def test_sdk_calls(source_factory: Callable[..., Any], server: LlmServer, tmp_path: Path, apis: str,
                   api: str) -> None:
    """Two tasks (streamed, then not), each a tool call, the tool's run and the final answer."""
    run = run_traced(source_factory, agent(server, tmp_path, "--apis", apis, "--calls", "4"), tmp_path)
    entries = server.entries()
    pairs = check_run(run, entries)
    check_report(tmp_path / "report.jsonl", pairs)
    assert [c.data["stream"] for c in run.calls] == [True, True, False, False]
    assert {c.data["api"] for c in run.calls} == {api}
    # A tool call, then the answer that reads the tool's output, in each task.
    assert [bool(c.data["tool_calls"]) for c in run.calls] == [True, False, True, False]
    assert run.calls[0].data["tool_calls"][0]["input"] == {"command": "ls -la"}
    assert run.calls[1].data["messages"][-1]["parts"][0]["type"] == "tool_result"
    assert "notes.txt" in run.calls[1].data["messages"][-1]["parts"][0]["content"]  # ls output went back
    assert run.calls[3].data["output_text"].startswith("The tool printed 2 line(s); the first is: notes.txt:")
    assert {c.pid for c in run.calls} == {c.pid for c in run.data} and run.root not in {c.pid for c in run.calls}
    usage = [c.data["usage"] for c in run.calls]
    if api == "anthropic.messages":  # the system prompt is marked for caching: written, then read
        assert usage[0]["cache_write_tokens"] > 0 and usage[0]["cache_read_tokens"] == 0
        assert usage[1]["cache_read_tokens"] == usage[0]["cache_write_tokens"] and usage[1]["cache_write_tokens"] == 0
    else:
        assert usage[0]["cache_read_tokens"] == 0 and usage[1]["cache_read_tokens"] > 0
    assert all(u["output_tokens"] > 0 and u["input_tokens"] > u["output_tokens"] for u in usage[1::2])


def test_agent_with_node_child(source_factory: Callable[..., Any], server: LlmServer, tmp_path: Path) -> None:
    """Every API in one run, tools as subprocesses, a node child: all calls captured, by tree."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    run = run_traced(source_factory, agent(server, tmp_path, "--calls", "12", "--node", "--exit-code", "3"),
                     tmp_path, expect_rc=3)
    pairs = check_run(run, server.entries())
    check_report(tmp_path / "report.jsonl", pairs)
    assert [c.data["api"] for c in run.calls[:12]] == [a for a in ("openai.chat", "openai.responses",
                                                                   "anthropic.messages") for _ in range(4)]
    node = run.calls[12]
    assert node.comm == "node" and node.data["user_agent"] == "agentsight-demo-node/1.0"
    assert node.data["output_text"].startswith("You said: Hello from node")
    assert len({c.pid for c in run.calls}) == 2
    assert (tmp_path / "work" / "greeting.txt").read_text() == "hello from the demo agent\n"


def test_curl(source_factory: Callable[..., Any], server: LlmServer, tmp_path: Path) -> None:
    """curl on one keep-alive connection: a stream without usage, Anthropic without cache, a 400."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    common = ["--http1.1", "-sS", "-N", "-o", "/dev/null", "--cacert", str(server.ca), "-H",
              "Content-Type: application/json"]
    chat = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Say hi from curl"}]}
    msgs = {"model": "claude-haiku-4-5", "max_tokens": 64, "system": "Be brief.",
            "messages": [{"role": "user", "content": "What is 2+2?"}]}
    resp = {"model": "gpt-4.1", "input": "One line about eBPF", "instructions": "Answer in English."}
    argv = ["curl", *common, "-H", f"Authorization: Bearer {CURL_KEY}", "--data", json.dumps(chat),
            f"{server.url}/v1/chat/completions",
            "--next", *common, "-H", f"x-api-key: {CURL_KEY}", "--data", json.dumps(msgs), f"{server.url}/v1/messages",
            "--next", *common, "-H", f"x-api-key: {CURL_KEY}", "--data", '{"model": "claude-haiku-4-5", oops',
            f"{server.url}/v1/messages",
            "--next", *common, "-H", f"Authorization: Bearer {CURL_KEY}", "--data", json.dumps(resp),
            f"{server.url}/v1/responses"]
    run = run_traced(source_factory, argv, tmp_path)
    entries = server.entries()
    check_run(run, entries)
    assert [e["status"] for e in entries] == [200, 200, 400, 200]
    assert len({c.data["conn"] for c in run.calls}) == 1 and {c.comm for c in run.calls} == {"curl"}
    chat_call, msg_call, bad, resp_call = (c.data for c in run.calls)
    # No stream_options.include_usage: no usage was sent, so every count is unknown, not 0.
    assert chat_call["stream"] and chat_call["usage"]["input_tokens"] is None and chat_call["output_text"]
    assert msg_call["usage"]["cache_read_tokens"] == 0 and msg_call["usage"]["cache_write_tokens"] == 0
    assert msg_call["system"] == "Be brief." and msg_call["output_text"].startswith("You said: What is 2+2?")
    assert bad["error"]["type"] == "invalid_request_error" and bad["status_code"] == 400
    assert resp_call["messages"][0]["content"] == "One line about eBPF" and resp_call["usage"]["total_tokens"] > 0


def test_server_rejects_bad_requests_in_provider_format(server: LlmServer) -> None:
    """No capture: the server's 400/401/404 bodies are what the SDKs turn into their error types."""
    import anthropic
    import openai

    oa = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=server.ca)))
    with pytest.raises(openai.BadRequestError) as exc:
        oa.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert exc.value.status_code == 400 and "'messages'" in str(exc.value)
    an = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=server.url, max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(verify=ssl.create_default_context(cafile=server.ca)))
    with pytest.raises(anthropic.BadRequestError) as aexc:
        an.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "system", "content": "x"}])
    assert aexc.value.status_code == 400 and aexc.value.body["error"]["type"] == "invalid_request_error"
    unauth = openai.OpenAI(api_key="x", base_url=f"{server.url}/v1", max_retries=0,
                           default_headers={"Authorization": "Basic eDp5"},  # not a bearer token
                           http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=server.ca)))
    with pytest.raises(openai.AuthenticationError):
        unauth.responses.create(model="gpt-4o-mini", input="hi")
    assert [e["status"] for e in server.entries()] == [400, 400, 401]
    assert os.path.getsize(server.log) > 0
