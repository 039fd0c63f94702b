"""`agentsight top --pipeline NAME`: a table of sessions from a running pipeline's bus."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from agentsight.commands.topmodel import COLUMNS
from agentsight.event import Event
from agentsight.jsonform import event_to_json
from tests.conftest import AGENTSIGHT

T = 1_764_435_000_000_000_000
SEC = 1_000_000_000


def replaying(pipeline, workdir, events: list[Event], name: str, speed: float = 1.0):
    """A running pipeline that replays ``events`` at their recorded pace, publishing them on its bus."""
    cap = workdir / "cap.jsonl"
    cap.write_text("".join(event_to_json(e) + "\n" for e in events))
    return pipeline(f"""
[sources.cap]
type = "replay"
path = "{cap}"
pace = "original"
speed = {speed}

[sinks.discard]
type = "null"
inputs = ["cap"]
""", name=name).start()


def test_top_once_attached_to_a_pipeline(pipeline, workdir):
    sid = "4242@1"
    events = [Event("gen.tick", T, "t", 1, 1, "x", {})]  # the first event; the session starts 3 s later
    events.append(Event("session.start", T + 3 * SEC, "sessions", 4242, 4242, "claude",
                        {"session": sid, "agent": "claude-code", "pid": 4242, "start_ns": T + 3 * SEC,
                         "comm": "claude"}))
    for i in range(3):
        events.append(Event("llm.call", T + 3 * SEC + (i + 1) * 100_000_000, "llm", 4242, 4242, "claude",
                            {"session": sid, "agent": "claude-code", "model": "claude-sonnet-x", "status_code": 200,
                             "usage": {"input_tokens": 1000 * (i + 1), "output_tokens": 10},
                             "cost": {"total": 0.25}}))
    events.append(Event("process.exec", T + 3 * SEC + 500_000_000, "process", 4243, 4243, "bash",
                        {"session": sid, "agent": "claude-code", "argv": ["bash", "-c", "pytest"]}))
    p = replaying(pipeline, workdir, events, "toptest")
    r = subprocess.run([*AGENTSIGHT, "top", "--pipeline", "toptest", "--runtime-dir", str(p.run_dir), "--once",
                        "--interval", "5", "--plain", "--sort", "calls"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    row = next(line for line in lines if line.startswith("claude-code"))
    cols = row.split()
    assert cols[1] == "4242" and "claude-sonnet-x" in cols and "6,000" in cols and "$0.7500" in cols
    assert cols[COLUMNS.index("calls")] == "3"  # the columns before it are one word each
    assert "exec bash -c pytest" in row
    p.wait(30)


def test_top_interactive_on_a_terminal_sorts_on_s_and_quits_on_q(pipeline, workdir):
    sid = "77@1"
    events = [Event("session.start", T, "sessions", 77, 77, "codex",
                    {"session": sid, "agent": "codex", "pid": 77, "start_ns": T, "comm": "codex"}),
              Event("llm.call", T + SEC, "llm", 77, 77, "codex",
                    {"session": sid, "agent": "codex", "model": "gpt-x", "status_code": 200,
                     "usage": {"input_tokens": 1234, "output_tokens": 5}, "cost": {"total": 0.5}})]
    p = replaying(pipeline, workdir, events, "toptty", speed=0.25)
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "LINES": "30", "TERM": "xterm-256color"}
    top = subprocess.Popen([*AGENTSIGHT, "top", "--pipeline", "toptty", "--runtime-dir", str(p.run_dir),
                            "--interval", "0.5"], stdin=slave, stdout=slave, stderr=slave, env=env,
                           close_fds=True)
    os.close(slave)
    screen = b""

    def read_until(text: bytes, timeout: float) -> bool:
        nonlocal screen
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    return text in screen
            if text in screen:
                return True
        return False

    try:
        assert read_until(b"sorted by cost", 30), screen[-2000:]
        assert read_until(b"1,234", 30), screen[-2000:]  # the call replayed 4 s in
        os.write(master, b"s")
        assert read_until(b"sorted by tokens", 10), screen[-2000:]
        os.write(master, b"q")
        assert top.wait(15) == 0
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
        os.close(master)
    p.wait(30)
