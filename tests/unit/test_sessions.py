"""Process tree and agent sessions: tools land under the agent that ran them, with its LLM calls."""

from __future__ import annotations

import pytest

from agentsight.analysis.sessions import SessionTracker, agent_kind
from agentsight.event import Event


def ev(topic: str, ts: int, ev_pid: int, comm: str = "", **data) -> Event:
    return Event(topic, ts, "process", ev_pid, ev_pid, comm, data)


@pytest.mark.parametrize("filename,argv,kind", [
    ("/usr/local/bin/claude", ["claude", "-p", "hi"], "claude-code"),
    ("/usr/bin/node", ["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"], "claude-code"),
    ("/usr/bin/node", ["node", "/home/u/.npm/bin/codex", "exec"], "codex"),
    ("/home/u/.local/bin/codex-x86_64-unknown-linux-musl", ["codex"], "codex"),
    ("/usr/bin/node", ["node", "/usr/lib/node_modules/@google/gemini-cli/dist/index.js"], "gemini-cli"),
    ("/usr/bin/python3.11", ["python3", "-m", "aider.main"], "aider"),
    ("/usr/bin/node", ["node", "server.js"], None),
    ("/bin/bash", ["bash", "-c", "claude is a name in a string"], None),
    ("/usr/bin/python3", ["python3", "agent.py"], None),
])
def test_agent_kind(filename: str, argv: list[str], kind: str | None) -> None:
    assert agent_kind(filename, argv) == kind


def test_tool_runs_sit_under_their_agent() -> None:
    t = SessionTracker()
    t.seed(100, 1, "bash", "/bin/bash", ["bash"])
    t.feed(ev("process.fork", 1, 200, "bash", ppid=100, child_pid=200))
    out = t.feed(ev("process.exec", 2, 200, "claude", pid=200, ppid=100, filename="/usr/local/bin/claude",
                    argv=["claude"]))
    (start,) = [e for e in out if e.topic == "session.start"]
    sid = start.data["session"]
    assert start.data["agent"] == "claude-code" and start.data["pid"] == 200
    t.feed(ev("process.fork", 3, 201, "claude", ppid=200, child_pid=201))
    t.feed(ev("process.exec", 4, 201, "bash", pid=201, ppid=200, filename="/bin/bash", argv=["bash", "-c", "ls"]))
    t.feed(ev("process.fork", 5, 202, "bash", ppid=201, child_pid=202))
    (ls,) = t.feed(ev("process.exec", 6, 202, "ls", pid=202, ppid=201, filename="/bin/ls", argv=["ls"]))
    assert ls.data["session"] == sid and ls.data["agent"] == "claude-code"
    (call,) = t.feed(Event("llm.call", 7, "llm", 200, 200, "claude", {"model": "m"}))
    assert call.data["session"] == sid
    (outside,) = t.feed(Event("ssl.data", 7, "ssl", 100, 100, "bash", {}))
    assert outside.data["session"] is None
    assert [p.pid for p in t.tree(sid)] == [200, 201, 202]
    out = t.feed(ev("process.exit", 9, 200, "claude", pid=200, exit_code=0))
    (end,) = [e for e in out if e.topic == "session.end"]
    assert end.data["session"] == sid and end.data["end_ns"] == 9 and end.data["exit_code"] == 0


def test_sub_agent_gets_a_nested_session() -> None:
    t = SessionTracker()
    t.feed(ev("process.exec", 1, 10, pid=10, ppid=1, filename="/usr/bin/codex", argv=["codex"]))
    t.feed(ev("process.fork", 2, 11, ppid=10, child_pid=11))
    out = t.feed(ev("process.exec", 3, 11, pid=11, ppid=10, filename="/usr/bin/gemini", argv=["gemini", "-p", "x"]))
    (start,) = [e for e in out if e.topic == "session.start"]
    assert start.data["agent"] == "gemini-cli" and start.data["parent"] == t.session_of(10).id


def test_unknown_sdk_agent_is_found_by_its_llm_calls_and_adopts_its_children() -> None:
    t = SessionTracker()
    t.feed(ev("process.exec", 1, 50, pid=50, ppid=1, filename="/usr/bin/python3", argv=["python3", "bot.py"]))
    t.feed(ev("process.fork", 2, 51, ppid=50, child_pid=51))
    out = t.feed(Event("llm.call", 3, "llm", 50, 50, "python3", {"model": "gpt"}))
    assert [e.topic for e in out] == ["llm.call", "session.start"]
    assert out[0].data["agent"] == "llm-client" and t.session_of(51) is t.session_of(50)


def test_recorded_root_is_a_session_even_without_a_known_agent() -> None:
    t = SessionTracker(root_pids={70})
    out = t.feed(ev("process.exec", 1, 70, pid=70, ppid=2, filename="/usr/bin/make", argv=["make"]))
    assert [e.data["agent"] for e in out if e.topic == "session.start"] == ["recorded"]
    (child,) = t.feed(ev("process.fork", 2, 71, ppid=70, child_pid=71))
    assert child.data["session"] == t.session_of(70).id


def test_exited_processes_are_forgotten_beyond_the_limit() -> None:
    t = SessionTracker(max_exited=2)
    for pid in (1, 2, 3):
        t.feed(ev("process.exec", pid, pid, pid=pid, filename="/bin/true", argv=["true"]))
        t.feed(ev("process.exit", pid, pid, pid=pid))
    assert sorted(t.processes) == [2, 3]


def test_malformed_process_events_are_harmless() -> None:
    t = SessionTracker()
    for e in (ev("process.fork", 1, 0, ppid="x", child_pid=None), ev("process.exec", 1, 0, argv=None),
              ev("process.exit", 1, 999, pid=999)):
        assert t.feed(e)[0] is e
