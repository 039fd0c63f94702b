"""The model behind `agentsight top`: one row per agent session, from annotated events."""

from __future__ import annotations

import os

from agentsight.commands.topmodel import RunningProcess, TopModel, format_plain
from agentsight.event import Event

T = 1_764_435_000_000_000_000
S1, S2 = "100@1", "200@2"


def ev(topic: str, ev_pid: int, ev_comm: str, **data) -> Event:
    return Event(topic, T + len(data) * 1000, "t", ev_pid, ev_pid, ev_comm, data)


def llm(pid: int, sid: str, model: str, inp: int, out: int, cost: float | None) -> Event:
    return ev("llm.call", pid, "claude", session=sid, agent="claude-code", model=model, status_code=200,
              usage={"input_tokens": inp, "output_tokens": out}, cost=None if cost is None else {"total": cost})


def test_sessions_accumulate_and_sort():
    m = TopModel()
    m.feed(ev("session.start", 100, "claude", session=S1, agent="claude-code", pid=100, start_ns=T, comm="claude"))
    m.feed(ev("session.start", 200, "codex", session=S2, agent="codex", pid=200, start_ns=T, comm="codex"))
    m.feed(llm(100, S1, "claude-x", 1000, 20, 0.01))
    m.feed(llm(100, S1, "claude-x", 3000, 40, None))
    m.feed(llm(200, S2, "gpt-y", 10, 5, 0.5))
    m.feed(ev("process.exec", 101, "bash", session=S1, agent="claude-code", argv=["bash", "-c", "ls"]))
    m.feed(ev("file.open", 101, "bash", session=S1, agent="claude-code", path="/repo/a.py"))
    m.feed(ev("net.connect", 100, "claude", session=S1, agent="claude-code", address="1.2.3.4", port=443))
    m.feed(ev("session.end", 200, "codex", session=S2, agent="codex", pid=200, exit_code=0))
    a, b = m.rows[S1], m.rows[S2]
    assert (a.calls, a.tokens_in, a.tokens_out, a.cost, a.unpriced) == (2, 4000, 60, 0.01, 1)
    assert (a.processes, a.files, a.network, a.pids) == (1, 1, 1, {100, 101})
    assert a.last.startswith("connect 1.2.3.4:443") and b.state == "exited 0"
    assert [r.key for r in m.visible("cost")] == [S2, S1]
    assert [r.key for r in m.visible("tokens")] == [S1, S2]
    m.filter_comm = "codex"
    assert [r.key for r in m.visible()] == [S2]
    m.filter_comm, m.filter_pid = "", 101
    assert [r.key for r in m.visible()] == [S1]
    text = format_plain(m.visible(), T + 5_000_000_000)
    assert "claude-code" in text and "$0.0100+?" in text and "4,000" in text


def test_llm_calls_without_a_sessions_stage_get_a_row_per_process():
    m = TopModel()
    m.feed(Event("llm.call", T, "llm", 300, 300, "python3", {"model": "m", "usage": {"input_tokens": 5}}))
    (row,) = m.rows.values()
    assert (row.agent, row.pid, row.calls, row.tokens_in, row.tokens_out) == ("llm-client", 300, 1, 5, 0)


def test_resources_of_a_live_session_tree():
    from agentsight.commands.topprocs import TreeUsage

    m = TopModel()
    m.feed(ev("session.start", os.getpid(), "python3", session="me", agent="recorded", pid=os.getpid(),
              start_ns=T))
    usage = TreeUsage()
    m.sample(usage)
    m.sample(usage)
    assert m.rows["me"].rss > 10 << 20 and m.rows["me"].state == "running"
    assert usage(2**22 + 1) is None  # no such process (above the largest pid)


def test_the_model_reads_nothing_it_is_given_processes_and_their_use():
    m = TopModel()
    claude = ["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"]
    m.seed([RunningProcess(500, 1, "node", "/usr/bin/node", claude, T),
            RunningProcess(501, 500, "node", "/usr/bin/node", claude, T + 1),  # its helper: not a row
            RunningProcess(600, 1, "bash", "/usr/bin/bash", ["bash"], T)])
    assert [(r.key, r.agent, r.pid) for r in m.rows.values()] == [("proc:500", "claude-code", 500)]
    asked: list[int] = []
    m.sample(lambda pid: asked.append(pid) or (150.0, 64 << 20))
    row = m.rows["proc:500"]
    assert asked == [500] and (row.cpu, row.rss, row.state) == (150.0, 64 << 20, "running")
    m.sample(lambda pid: None)  # gone
    assert row.state == "exited"
    m.sample(lambda pid: (1.0, 1))
    assert row.cpu == 0.0  # an exited session is not sampled again


def test_a_session_whose_tls_could_not_be_seen_is_marked():
    m = TopModel()
    m.feed(ev("session.start", 300, "codex", session="300@3", agent="codex", pid=300, start_ns=T, comm="codex"))
    for _ in range(2):
        m.feed(ev("ssl.unprobed", 301, "codex", session="300@3", agent="codex", late=False, dest="127.0.0.1:8443",
                  path="/opt/codex/bin/codex", reason="it is a Rust program with rustls..."))
    row = m.rows["300@3"]
    assert row.unseen == 2 and row.last == "TLS not visible: codex -> 127.0.0.1:8443"
    text = format_plain(m.visible())
    assert "0 +2?" in text and "TLS not visible: codex" in text
