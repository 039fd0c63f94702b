"""MCP captured for real: servers nobody here wrote, driven by the official SDK's client, recorded by
`agentsight record` (stdio and TLS capture, the whole pipeline) and `agentsight debug mcp`.

- the npm reference servers ``@modelcontextprotocol/server-filesystem`` and ``server-everything``
  (pinned in agentsight/demo/mcp_servers.py; ``scripts/setup.sh --clis`` installs them) over stdio;
- a streamable-HTTP server on the ``mcp`` SDK (``MCPServer`` on uvicorn) over TLS: the ``ssl`` source
  sees TLS plaintext through its uprobes, and a plain-HTTP socket has no layer it probes (the
  ``stdio`` source sees read/write, not the send/recv a socket's client uses), so the server speaks
  HTTPS with a throwaway CA, answering with event streams or JSON bodies;
- an agent on the anthropic SDK (the demo LLM server) that runs the model's tool calls on the
  filesystem server: the thread from the LLM call to the MCP call and back.

Oracle: the client's own log of every request it made (tests/bpf/agents/mcp_client.py), compared
call by call with the recorded ``mcp.call`` records (tests/mcp_oracle.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsight.demo import mcp_servers
from agentsight.recording.report import mcp_summary
from agentsight.recording.store import Store
from tests.conftest import AGENTSIGHT, wait_for
from tests.mcp_oracle import assert_same_calls, read_log

pytestmark = pytest.mark.bpf
pytest.importorskip("mcp")

AGENTS = Path(__file__).parent / "agents"
CLIENT = AGENTS / "mcp_client.py"
SECRET = "sk-proj-Mcp7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5Mn"


@pytest.fixture(scope="module", autouse=True)
def servers_installed() -> None:
    missing = [n for n in mcp_servers.SERVERS if not mcp_servers.installed(n)]
    if missing:
        pytest.skip(f"MCP servers {missing} not in {mcp_servers.cache_dir()}: run "
                    "python -m agentsight.demo.mcp_servers install (scripts/setup.sh --clis does)")


def record(workdir: Path, argv: list[str], name: str = "rec") -> tuple[subprocess.CompletedProcess[str], Path]:
    db = workdir / f"{name}.db"
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(workdir / f"run-{name}"),
                        "--", *argv], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    return r, db


def recorded(db: Path, topic: str = "mcp.call") -> list[dict[str, Any]]:
    with Store(db, readonly=True) as s:
        return [e["data"] for e in s.events(topics=[topic], limit=1 << 30)]


def file_bytes(db: Path) -> bytes:
    return b"".join(Path(f"{db}{x}").read_bytes() for x in ("", "-wal") if Path(f"{db}{x}").exists())


def test_filesystem_server_over_stdio_every_call_recorded(workdir):
    root = workdir / "files"
    root.mkdir()
    log = workdir / "client.jsonl"
    r, db = record(workdir, [sys.executable, str(CLIENT), str(log), "filesystem", str(root), "--",
                             *mcp_servers.server_command("filesystem", str(root))])
    calls = recorded(db)
    assert assert_same_calls(read_log(log), calls) == len(calls) == 13
    writes = [c for c in calls if c["tool"] == "write_file"]
    assert writes[1]["arguments"]["content"] == '{"api_key": "[REDACTED:sk]", "debug": true}'
    assert SECRET.encode() not in file_bytes(db)
    first = calls[0]
    assert first["server"]["name"] == "secure-filesystem-server" and first["server"]["argv"][-1] == str(root)
    with Store(db, readonly=True) as s:
        (session,) = s.sessions()
    assert first["client"]["pid"] == session["pid"] and first["client"]["name"] == "mcp"  # the recorded command
    (end,) = recorded(db, "mcp.session.end")
    assert (end["calls"], end["unanswered"], end["garbage_lines"], end["cut_messages"]) == (13, 0, 0, 0)
    assert end["reason"].startswith("the server exited")
    with Store(db, readonly=True) as s:
        m = mcp_summary(s)
    assert (f"MCP calls: 13 to 1 server(s), {m['tool_calls']} tool call(s); 1 failed, 0 unanswered" in r.stderr)


def test_everything_server_over_stdio_both_directions(workdir):
    log = workdir / "client.jsonl"
    record(workdir, [sys.executable, str(CLIENT), str(log), "everything", "--",
                     *mcp_servers.server_command("everything", "stdio")])
    calls = recorded(workdir / "rec.db")
    assert assert_same_calls(read_log(log), calls) == len(calls)
    by = {(c["direction"], c["method"]) for c in calls}
    assert ("server", "sampling/createMessage") in by and ("server", "roots/list") in by
    image = next(c for c in calls if c["tool"] == "get-tiny-image")
    assert image["response_bytes"] > 5000 and image["result"]["content"][1]["type"] == "image"
    assert {n["method"] for n in recorded(workdir / "rec.db", "mcp.notification")} >= {"notifications/initialized"}


def test_a_reply_that_never_comes_is_reported_when_the_server_dies(workdir):
    log = workdir / "client.jsonl"
    record(workdir, [sys.executable, str(CLIENT), str(log), "killed", "--",
                     *mcp_servers.server_command("everything", "stdio")])
    assert "killed" in read_log(log)[-1]
    call = next(c for c in recorded(workdir / "rec.db") if c["tool"] == "trigger-long-running-operation")
    assert call["status"] == "no_reply" and call["result"] is None and call["ts_response_ns"] is None
    assert call["notes"] == ["no reply: the server was killed (SIGKILL)"]
    (end,) = recorded(workdir / "rec.db", "mcp.session.end")
    assert end["unanswered"] == 1 and end["exit_signal"] == "SIGKILL"


def test_garbage_on_a_real_pipe_is_counted_and_skipped(workdir):
    root = workdir / "files"
    root.mkdir()
    log = workdir / "client.jsonl"
    noisy = ("printf 'starting the filesystem server...\\n'; printf '{\"not\": \"json-rpc\"}\\n'; "
             'exec "$@"')
    record(workdir, [sys.executable, str(CLIENT), str(log), "filesystem", str(root), "--", "/bin/sh", "-c", noisy,
                     "sh", *mcp_servers.server_command("filesystem", str(root))])
    calls = recorded(workdir / "rec.db")
    assert assert_same_calls(read_log(log), calls) == 13  # nothing lost around the garbage
    (end,) = recorded(workdir / "rec.db", "mcp.session.end")
    assert end["garbage_lines"] == 2
    assert end["garbage_bytes"] == len("starting the filesystem server...") + len('{"not": "json-rpc"}')


class HttpServer:
    def __init__(self, tmp: Path, json_response: bool) -> None:
        self.ready, self.ca = tmp / "ready", tmp / "ca.pem"
        args = [sys.executable, str(AGENTS / "mcp_http_server.py"), str(self.ready), str(self.ca)]
        self.proc = subprocess.Popen(args + (["--json"] if json_response else []), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, 30, what="the MCP HTTP server")
        assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
        self.url = f"https://127.0.0.1:{int(self.ready.read_text())}/mcp"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(params=["sse", "json"])
def http_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpServer]:
    srv = HttpServer(tmp_path, request.param == "json")
    yield srv
    srv.close()


def test_streamable_http_server_over_tls_every_call_recorded(workdir, http_server):
    log = workdir / "client.jsonl"
    record(workdir, [sys.executable, str(CLIENT), str(log), "http", http_server.url, str(http_server.ca)])
    db = workdir / "rec.db"
    calls = recorded(db)
    assert assert_same_calls(read_log(log), calls) == len(calls) == 9
    sessions = {c["mcp_session"] for c in calls}
    assert len(sessions) == 1 and None not in sessions
    assert all(c["transport"] == "http" and c["server"]["url"] == http_server.url for c in calls)
    assert calls[0]["server"]["name"] == "agentsight-http-test"
    secret = next(c for c in calls if c["tool"] == "store_secret")
    assert secret["arguments"] == {"api_key": "[REDACTED:sk]", "label": "demo"}
    assert SECRET.encode() not in file_bytes(db)
    # The server-to-client GET stream never ends on its own: the client drops it at the end.
    cut = recorded(db, "http.error")
    assert all(e["error"].endswith("(incomplete chunked read)") for e in cut) and len(cut) <= 1, cut
    (end,) = recorded(db, "mcp.session.end")
    assert end["reason"] == "the client ended the session" and end["unanswered"] == 0


class LlmServer:
    def __init__(self, tmp: Path) -> None:
        self.ca, self.log, ready = tmp / "llm-ca.pem", tmp / "llm.jsonl", tmp / "llm.ready"
        self.proc = subprocess.Popen([sys.executable, "-m", "agentsight.demo.llm_server", "--port", "0",
                                      "--ca-out", str(self.ca), "--log", str(self.log), "--ready-file", str(ready)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, 30, what="the LLM server")
        assert self.proc.poll() is None
        self.url = f"https://127.0.0.1:{int(ready.read_text())}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_the_thread_from_the_model_to_the_mcp_call_and_back(workdir, tmp_path):
    llm = LlmServer(tmp_path)
    try:
        root = workdir / "project"
        root.mkdir()
        (root / "notes.txt").write_text("the answer is 42\n")
        log = workdir / "agent.jsonl"
        record(workdir, [sys.executable, str(AGENTS / "mcp_llm_agent.py"), llm.url, str(llm.ca), str(root), str(log),
                         "--", *mcp_servers.server_command("filesystem", str(root))])
    finally:
        llm.close()
    (ran,) = read_log(log)
    db = workdir / "rec.db"
    asking, answered = recorded(db, "llm.call")
    assert [t["id"] for t in asking["tool_calls"]] == [ran["tool_use_id"]]
    (mcp,) = [c for c in recorded(db) if c["method"] == "tools/call"]
    assert mcp["tool"] == ran["tool"] == "read_text_file" and mcp["arguments"] == ran["arguments"]
    assert mcp["result"]["content"][0]["text"] == ran["result_text"] == "the answer is 42\n"
    assert mcp["llm"]["tool_call_id"] == ran["tool_use_id"] and mcp["llm"]["match"] == "name+arguments"
    assert mcp["llm"]["tool_name"] == "mcp__filesystem__read_text_file"
    key = f"{asking['conn']}#{asking['seq']}"
    assert mcp["llm"]["asked_by"]["key"] == key and mcp["llm"]["asked_by"]["response_id"] == asking["response_id"]
    assert answered["mcp"]["tool_results"] == [{"tool_call_id": ran["tool_use_id"], "mcp_call": mcp["call_id"],
                                                "tool": "read_text_file", "asked_by": key}]
    assert mcp["session"] == asking["session"] is not None
    text = subprocess.run([*AGENTSIGHT, "report", "prompts", "--db", str(db)], capture_output=True, text=True,
                          timeout=60).stdout
    assert "    ran as MCP secure-filesystem-server (stdio) tools/call read_text_file: ok" in text
    assert f"  tool result {ran['tool_use_id']} came from MCP secure-filesystem-server (stdio)" in text


def test_debug_mcp_prints_each_call_live_as_json(workdir):
    """`agentsight debug mcp --json -p PID`: the calls of PID's tree, one JSON line each, while it runs."""
    log = workdir / "client.jsonl"
    gate = subprocess.Popen(["/bin/sh", "-c", 'read go && exec "$@"', "sh", sys.executable, str(CLIENT), str(log),
                             "everything", "--", *mcp_servers.server_command("everything", "stdio")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, err = workdir / "debug.out", workdir / "debug.err"
    with open(out, "w") as o, open(err, "w") as e:
        debug = subprocess.Popen([*AGENTSIGHT, "debug", "mcp", "--json", "-p", str(gate.pid), "--runtime-dir",
                                  str(workdir / "run")], stdout=o, stderr=e, text=True)
    try:
        wait_for(lambda: "running:" in err.read_text() or debug.poll() is not None, 120, what="debug mcp")
        assert debug.poll() is None, err.read_text()
        assert gate.stdin is not None
        gate.stdin.write(b"go\n")
        gate.stdin.close()
        assert gate.wait(120) == 0
        expected = len(read_log(log))

        def lines() -> list[dict[str, Any]]:
            text = out.read_text()
            return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]

        # The tool calls wait up to 3 s for an LLM call that asked for them: none will come.
        wait_for(lambda: sum(1 for x in lines() if x["topic"] == "mcp.call") >= expected, 60, what="the calls")
    finally:
        if gate.poll() is None:
            gate.kill()
        debug.send_signal(signal.SIGINT)
        debug.wait(60)
    events = lines()
    assert {x["topic"] for x in events} <= {"mcp.call", "mcp.notification", "mcp.session.end"}
    assert all(x["source"] == "mcp" for x in events)
    assert assert_same_calls(read_log(log), [x["data"] for x in events if x["topic"] == "mcp.call"]) == expected


def test_debug_mcp_without_a_target_says_what_it_can_see(workdir):
    r = subprocess.Popen([*AGENTSIGHT, "debug", "mcp", "--quiet", "--runtime-dir", str(workdir / "run")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert r.stderr is not None
        first = r.stderr.readline()
        assert first.strip() == ("agentsight: no -p/-c: MCP over stdio needs a target, only MCP over HTTP is seen")
    finally:
        r.send_signal(signal.SIGINT)
        r.wait(60)


def test_claude_code_runs_the_mcp_tool_its_model_asked_for(workdir, monkeypatch):
    """The real Claude Code (pinned, offline against the demo LLM server, in a loopback-only network
    namespace) with the everything server configured over stdio and no built-in tools: the scripted
    model asks for the first tool offered, mcp__everything__echo; Claude Code runs it as an MCP
    tools/call (naming the tool use in params._meta) and sends the result back."""
    import shutil

    from agentsight.demo import clis

    package = clis.PACKAGES["claude"]
    if clis._installed_version(clis.cache_dir(), package) != package.version or shutil.which("ip") is None:
        pytest.skip(f"{package.name}@{package.version} (python -m agentsight.demo.clis install) and ip netns needed")

    def prepare(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
        argv, env = clis.SETUPS["claude"].prepare(home, base_url, ca, prompt)
        cfg = home / "mcp.json"
        cfg.write_text(json.dumps({"mcpServers": {"everything": {"command": mcp_servers.server_command("everything")[0],
                                                                 "args": ["stdio"]}}}))
        return [argv[0], "-p", prompt, "--mcp-config", str(cfg), "--strict-mcp-config", "--tools", "",
                "--allowedTools", "mcp__everything"], env

    monkeypatch.setitem(clis.SETUPS, "claude-mcp", clis.Setup("claude-mcp", package, "Messages + MCP", prepare))
    db = workdir / "rec.db"
    result = clis.run("claude-mcp", workdir / "run", timeout=240, prompt=f"Echo `{clis.PROBE_OUTPUT}` back to me.",
                      wrap=[*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(workdir / "rt"), "--"])
    assert result.ok, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    asking, answered = recorded(db, "llm.call")
    (use,) = asking["tool_calls"]
    assert use["name"] == "mcp__everything__echo" and use["input"] == {"message": clis.PROBE_OUTPUT}
    (echo,) = [c for c in recorded(db) if c["method"] == "tools/call"]
    assert echo["tool"] == "echo" and echo["arguments"] == {"message": clis.PROBE_OUTPUT}
    assert echo["result"]["content"][0]["text"] == f"Echo: {clis.PROBE_OUTPUT}"
    assert echo["llm"]["tool_call_id"] == use["id"] and echo["llm"]["match"] == "tool_use_id"
    assert echo["llm"]["asked_by"]["key"] == f"{asking['conn']}#{asking['seq']}"
    assert answered["mcp"]["tool_results"][0]["mcp_call"] == echo["call_id"]
    assert echo["client"]["comm"].startswith("claude") and echo["session"] == asking["session"]
    assert echo["server"]["name"] == "mcp-servers/everything"
