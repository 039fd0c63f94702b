"""The real agent CLIs, recorded from outside: Claude Code (native Bun build), Codex (Rust,
rustls on aws-lc; over HTTP and over WebSocket), Gemini CLI (API and Code Assist) and Qwen Code.

Each CLI is the pinned npm release (agentsight.demo.clis), run on a two-turn task (a shell
tool call, then an answer) against the local LLM server, inside a network namespace with
only loopback, under ``agentsight record``. Oracle: the server's log of every exchange.
Every generation call it answered must be in the recording as an ``llm.call`` with the same
model, token counts, answer and tool calls, and its request body must be what the server
parsed; the tool's shell must be in the process tree, in the agent's session; nothing may
be reported as not visible; no event lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentsight.demo import clis
from agentsight.demo.llm_server import GENERATE_APIS
from agentsight.recording.report import format_summary, summary
from agentsight.recording.store import Store
from tests.conftest import AGENTSIGHT

pytestmark = pytest.mark.bpf

AGENTS = {"claude": "claude-code", "codex": "codex", "codex-ws": "codex", "gemini": "gemini-cli",
          "gemini-code-assist": "gemini-cli", "qwen": "qwen-code"}
_INSTALLED: dict[str, bool] = {}


def need(name: str) -> None:
    """Skip unless the CLI is installed (scripts/setup.sh --test installs them) and namespaces work."""
    package = clis.SETUPS[name].package
    if clis._installed_version(clis.cache_dir(), package) != package.version:
        pytest.skip(f"{package.name}@{package.version} is not installed: python -m agentsight.demo.clis install")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip netns) is not installed")


def record(name: str, tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[clis.RunResult, Path]:
    db = tmp / "rec.db"
    result = clis.run(name, tmp / "run", timeout=240,
                      wrap=[*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(tmp / "rt"), *args, "--"],
                      wrap_env=env)
    assert result.ok, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    return result, db


def _usage(api: str, u: dict[str, Any]) -> tuple[Any, ...]:
    """(input, output, cache read) as docs/analyzers.md normalises them, from the provider's object."""
    if api == "anthropic.messages":
        read = u.get("cache_read_input_tokens") or 0
        return u["input_tokens"] + read + (u.get("cache_creation_input_tokens") or 0), u["output_tokens"], read
    if api == "openai.chat":
        return u["prompt_tokens"], u["completion_tokens"], (u.get("prompt_tokens_details") or {}).get("cached_tokens")
    if api == "openai.responses":
        return u["input_tokens"], u["output_tokens"], (u.get("input_tokens_details") or {}).get("cached_tokens")
    # Gemini: thoughts count as output; cached content is part of the prompt count.
    return (u["promptTokenCount"], u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0),
            u.get("cachedContentTokenCount"))


def _request(store: Store, call: dict[str, Any]) -> Any:
    """The request body the recording holds for a call (HTTP exchange, or the WebSocket message)."""
    if call.get("transport") == "websocket":
        for e in store.events(topics=["http.ws"], limit=1 << 20):
            d = e["data"]
            if d["conn"] == call["conn"] and d["dir"] == "write" and d["index"] == call["ws_index"]:
                return json.loads(d["text"])
        raise AssertionError(f"no http.ws message {call['ws_index']} on {call['conn']}")
    for e in store.events(topics=["http.exchange"], limit=1 << 20):
        d = e["data"]
        if d["conn"] == call["conn"] and d["seq"] == call["seq"]:
            return json.loads(d["request"]["body_text"])
    raise AssertionError(f"no exchange {call['seq']} on {call['conn']}")


def check_recording(name: str, result: clis.RunResult, db: Path) -> dict[str, Any]:
    entries = [e for e in result.exchanges if e.get("api") in GENERATE_APIS and e.get("status") == 200]
    assert len(entries) >= 2
    with Store(db, readonly=True) as s:
        calls = [s.llm_call(row["id"])["data"] for row in s.llm_calls(limit=1 << 20)]
        # A call over WebSocket has no HTTP status of its own (the 101 was the connection's).
        generating = [c for c in calls if c["api"] in GENERATE_APIS and c["error"] is None
                      and c["status_code"] == (None if c["transport"] == "websocket" else 200)]
        by_id = {e["response_id"]: e for e in entries}
        assert sorted(c["response_id"] for c in generating) == sorted(by_id), [c["response_id"] for c in calls]
        for c in generating:
            e = by_id[c["response_id"]]
            assert (c["api"], c["model"], c["stream"]) == (e["api"], e["model"], e["stream"])
            u = c["usage"]
            assert (u["input_tokens"], u["output_tokens"], u["cache_read_tokens"]) == _usage(e["api"], e["usage"])
            assert c["output_text"] == e["answer_text"]
            assert [(t["name"], t["input"]) for t in c["tool_calls"]] == [(t["name"], t["input"]) for t in e["tool_calls"]]
            sent = _request(s, c)
            expected = e["request"]
            if e["api"] == "gemini.code_assist":
                assert sent["request"] == expected["request"]
            else:
                assert {k: v for k, v in sent.items() if k in expected} == expected
        # The tool's shell ran under the agent, in its session.
        procs = s.processes()
        shells = [p for p in procs if any(clis.PROBE_COMMAND in str(a) or "agentsight-%s" in str(a)
                                          for a in p["argv"] or [])]
        assert shells, [(p["argv"] or [])[:4] for p in procs]
        agent_sessions = {p["session"] for p in procs if p["agent"] == AGENTS[name]}
        assert agent_sessions and all(p["session"] in agent_sessions for p in shells)
        assert all(c["session"] in agent_sessions for c in generating)
        report = summary(s)
    assert report["tls_unseen"] == [] and report["events_lost"] == 0
    assert "TLS not visible" not in format_summary(report)
    return report


@pytest.mark.parametrize("name", list(AGENTS))
def test_record_a_real_agent_cli(name: str, tmp_path: Path) -> None:
    need(name)
    result, db = record(name, tmp_path)
    check_recording(name, result, db)


def _warm() -> None:
    """Search the CLIs' binaries once, as `debug find-tls` after an install does."""
    subprocess.run([*AGENTSIGHT, "debug", "find-tls", str(clis.cache_dir() / "node_modules")], check=True,
                   capture_output=True, timeout=300)


def test_a_first_start_is_never_silent(tmp_path: Path) -> None:
    """With nothing cached, Codex's native binary is found only after it starts: every call the
    server answered is either in the recording or its connection is reported as seen late."""
    need("codex")
    result = clis.run("codex", tmp_path / "run", timeout=240, wrap=[*AGENTSIGHT, "record", "--db",
                      str(tmp_path / "rec.db"), "--runtime-dir", str(tmp_path / "rt"), "--"],
                      wrap_env={"AGENTSIGHT_TLSFIND_CACHE": str(tmp_path / "empty-cache")})
    assert result.ok
    with Store(tmp_path / "rec.db", readonly=True) as s:
        seen = {s.llm_call(r["id"])["data"]["response_id"] for r in s.llm_calls(limit=1 << 20)}
        report = summary(s)
    answered = [e for e in result.exchanges if e.get("api") in GENERATE_APIS and e.get("status") == 200]
    missing = [e for e in answered if e["response_id"] not in seen]
    late = sum(u["connections"] for u in report["tls_unseen"] if u["late"])
    assert not missing or late >= 1, (len(missing), report["tls_unseen"])
    assert all(u["path"].endswith("/codex") for u in report["tls_unseen"])


def _debug_ssl(tmp: Path, *target: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`agentsight debug ssl TARGET` writing JSON lines to a file, once every actor runs."""
    log, rt = tmp / "ssl.jsonl", tmp / "rt"
    debug = subprocess.Popen([*AGENTSIGHT, "debug", "ssl", *target, "--quiet", "--log-file", str(log),
                              "--runtime-dir", str(rt)], stderr=subprocess.DEVNULL)
    _wait_status(debug, rt)
    return debug, log


def _wait_status(proc: subprocess.Popen[bytes], rt: Path) -> None:
    """Until the supervisor's status reply says every actor runs."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the pipeline exited"
        assert time.monotonic() < deadline, "the pipeline did not start"
        r = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(rt), "--json"], capture_output=True, text=True)
        if r.returncode == 0 and all(i["state"] == "running" for i in json.loads(r.stdout)["instances"]):
            return
        time.sleep(0.2)


def _stop(debug: subprocess.Popen[bytes], log: Path, answers: int) -> list[dict[str, Any]]:
    """Stop once ``answers`` responses were printed (or 20 s); the ssl.data events."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (log.read_bytes().count(b"HTTP/1.1 200") if log.exists() else 0) < answers:
        time.sleep(0.2)
    debug.terminate()
    debug.wait(timeout=60)
    events = [json.loads(line) for line in log.read_bytes().splitlines() if line.strip()]
    return [e for e in events if e["topic"] == "ssl.data"]


def _written(data: list[dict[str, Any]]) -> bytes:
    return b"".join(e["data"]["bytes"]["$bytes"].encode() for e in data
                    if e["data"]["dir"] == "write" and "$bytes" in e["data"]["bytes"])


def test_debug_ssl_by_name_sees_claude_codes_tls_thread(tmp_path: Path) -> None:
    """`debug ssl -c claude`: the process is named claude.exe and does its TLS on a thread named
    "HTTP Client"; every request and answer is printed."""
    need("claude")
    _warm()
    debug, log = _debug_ssl(tmp_path, "-c", "claude")
    try:
        result = clis.run("claude", tmp_path / "run", timeout=240)
        assert result.ok
        calls = len([e for e in result.exchanges if e.get("api") == "anthropic.messages"])
    finally:
        data = _stop(debug, log, 2)
    assert _written(data).count(b"POST /v1/messages") == calls
    assert {e["comm"] for e in data} == {"HTTP Client"}
    assert {e["data"]["func"] for e in data} == {"SSL_write", "SSL_read"}


def test_debug_ssl_by_pid_follows_the_process_into_claude(tmp_path: Path) -> None:
    """`debug ssl -p PID` on a process that then execs Claude Code sees its calls."""
    need("claude")
    _warm()
    fifo, pidfile = tmp_path / "go", tmp_path / "pid"
    os.mkfifo(fifo)
    gate = ["sh", "-c", f'echo $$ > {pidfile}; read go < {fifo}; exec "$@"', "sh"]
    box: dict[str, clis.RunResult] = {}
    runner = threading.Thread(target=lambda: box.update(r=clis.run("claude", tmp_path / "run", timeout=240,
                                                                     wrap=gate)))
    runner.start()
    try:
        while not pidfile.exists() or not pidfile.read_text().strip():
            time.sleep(0.05)
        debug, log = _debug_ssl(tmp_path, "-p", pidfile.read_text().strip())
        try:
            fifo.write_text("go\n")
            runner.join(timeout=240)
        finally:
            data = _stop(debug, log, 2)
    finally:
        if runner.is_alive():
            fifo.write_text("go\n")
        runner.join(timeout=240)
    result = box["r"]
    assert result.ok
    assert _written(data).count(b"POST /v1/messages") == len(
        [e for e in result.exchanges if e.get("api") == "anthropic.messages"])


def test_the_always_on_pipeline_sees_claude_code(tmp_path: Path) -> None:
    """config/agents.toml (every agent on the machine, no target) records Claude Code's calls."""
    need("claude")
    _warm()
    config = (Path(__file__).parents[2] / "config" / "agents.toml").read_text()
    db = tmp_path / "agents.db"
    config = config.replace('path = "agents.db"', f'path = "{db}"').replace(
        'type = "web"               # http://127.0.0.1:7395/timeline', 'type = "web"\nport = 0')
    (tmp_path / "agents.toml").write_text(config)
    rt = tmp_path / "rt"
    run = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(tmp_path / "agents.toml"), "--runtime-dir", str(rt)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_status(run, rt)
        result = clis.run("claude", tmp_path / "run", timeout=240)
        assert result.ok
        want = sorted(e["response_id"] for e in result.exchanges if e.get("api") == "anthropic.messages")
        deadline = time.monotonic() + 30
        got: list[str] = []
        while time.monotonic() < deadline and got != want:
            with Store(db, readonly=True) as s:
                got = sorted(s.llm_call(r["id"])["data"]["response_id"] for r in s.llm_calls(limit=1000))
            time.sleep(0.3)
    finally:
        run.terminate()
        _, err = run.communicate(timeout=120)
    assert got == want, err.decode(errors="replace")[-2000:]
    with Store(db, readonly=True) as s:
        agents = {r["agent"] for r in s.processes() if r["agent"]}
    assert "claude-code" in agents
