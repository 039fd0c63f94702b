"""Agent CLIs as they are installed and run: npm launchers, native binaries, shebang scripts, interpreters.

Paths and argv shapes are the ones the installers lay out (npm ``bin`` entries, the platform
packages npm adds as optional dependencies, the native installers' version directories).
"""

from __future__ import annotations

import pytest

from agentsight.analysis.sessions import SessionTracker, agent_kind
from agentsight.event import Event

NM = "/usr/lib/node_modules"
CODEX_NATIVE = f"{NM}/@openai/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"


@pytest.mark.parametrize("filename,argv,kind", [
    # Claude Code: the npm bin link (to bin/claude.exe, the native binary), the platform package, the
    # native installer's versions, the older node cli.js
    ("/usr/local/bin/claude", ["claude"], "claude-code"),
    (f"{NM}/@anthropic-ai/claude-code/bin/claude.exe", [f"{NM}/@anthropic-ai/claude-code/bin/claude.exe", "-p", "hi"],
     "claude-code"),
    (f"{NM}/@anthropic-ai/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude", ["claude"],
     "claude-code"),
    (f"{NM}/@anthropic-ai/claude-code-linux-x64-musl/claude", ["claude", "--resume"], "claude-code"),
    ("/home/dev/.local/share/claude/versions/2.0.31", ["claude", "--continue"], "claude-code"),
    ("/home/dev/.local/share/claude/versions/2.0.31", ["/home/dev/.local/share/claude/versions/2.0.31"],
     "claude-code"),
    ("/usr/bin/node", ["node", f"{NM}/@anthropic-ai/claude-code/cli.js", "--print"], "claude-code"),
    # Codex: the node launcher, the native binary in its platform package (both layouts), the release
    # binary, and the native binary re-executed as its own sandbox helper
    ("/usr/bin/node", ["node", f"{NM}/@openai/codex/bin/codex.js", "exec", "fix the tests"], "codex"),
    ("/usr/bin/node", ["/usr/bin/node", "/home/dev/.npm-global/bin/codex"], "codex"),
    (CODEX_NATIVE, [CODEX_NATIVE, "exec", "fix the tests"], "codex"),
    (f"{NM}/@openai/codex/vendor/x86_64-unknown-linux-musl/codex/codex", ["codex"], "codex"),
    ("/home/dev/.local/bin/codex-x86_64-unknown-linux-musl", ["codex"], "codex"),
    (CODEX_NATIVE, ["codex-linux-sandbox", "--sandbox-policy-cwd", "/work", "--", "bash", "-lc", "ls"], "codex"),
    # Gemini CLI and its fork Qwen Code
    ("/usr/bin/node", ["node", "--no-warnings=DEP0040", f"{NM}/@google/gemini-cli/bundle/gemini.js"], "gemini-cli"),
    ("/usr/bin/node", ["/usr/bin/node", "--max-old-space-size=8192", f"{NM}/@google/gemini-cli/bundle/gemini.js",
                       "-p", "hello"], "gemini-cli"),
    ("/usr/local/bin/gemini", ["gemini"], "gemini-cli"),
    ("/usr/bin/node", ["node", f"{NM}/@qwen-code/qwen-code/cli-entry.js"], "qwen-code"),
    ("/usr/bin/node", ["node", "--max-old-space-size=4096", f"{NM}/@qwen-code/qwen-code/cli.js"], "qwen-code"),
    ("/usr/local/bin/qwen", ["qwen", "-p", "hi"], "qwen-code"),
    # Python agents: a uv tool shim runs the tool's python on the script; python -m
    ("/home/dev/.local/share/uv/tools/aider-chat/bin/python3",
     ["/home/dev/.local/share/uv/tools/aider-chat/bin/python3", "/home/dev/.local/bin/aider", "--model", "o3"],
     "aider"),
    ("/usr/bin/python3.12", ["python3", "-m", "aider"], "aider"),
    ("/home/dev/.local/share/uv/tools/openhands/bin/python",
     ["/home/dev/.local/share/uv/tools/openhands/bin/python", "/home/dev/.local/bin/openhands"], "openhands"),
    ("/usr/bin/python3", ["python3", "-m", "openhands.cli.main"], "openhands"),
    # Native and node CLIs
    ("/home/dev/.local/bin/goose", ["goose", "session"], "goose"),
    ("/home/dev/.opencode/bin/opencode", ["opencode"], "opencode"),
    (f"{NM}/opencode-ai/bin/opencode.exe", ["opencode", "run", "hi"], "opencode"),
    ("/home/dev/.local/share/cursor-agent/versions/2025.09.18-7ae6800/node",
     ["cursor-agent", "--use-system-ca", "/home/dev/.local/share/cursor-agent/versions/2025.09.18-7ae6800/index.js"],
     "cursor-agent"),
    ("/home/dev/.local/bin/cursor-agent", ["cursor-agent", "-p", "hi"], "cursor-agent"),
    ("/usr/bin/node", ["node", f"{NM}/@github/copilot/npm-loader.js"], "copilot"),
    ("/usr/local/bin/copilot", ["copilot", "-p", "fix"], "copilot"),
    (f"{NM}/@sourcegraph/amp/node_modules/@ampcode/cli/bin/amp.exe", ["amp", "-x", "hi"], "amp"),
    ("/home/dev/.local/bin/amp", ["amp"], "amp"),
    ("/usr/bin/node", ["node", f"{NM}/@charmland/crush/run-crush.js"], "crush"),
    ("/usr/local/bin/crush", ["crush"], "crush"),
    ("/usr/bin/node", ["node", f"{NM}/@kilocode/cli/bin/kilo"], "kilocode"),
    ("/usr/local/bin/kilocode", ["kilocode", "--auto"], "kilocode"),
    (f"{NM}/cline/bin/cline", ["cline", "task", "new", "x"], "cline"),
    ("/usr/bin/node", ["node", f"{NM}/@continuedev/cli/dist/cn.js", "-p", "hi"], "continue"),
    ("/usr/local/bin/cn", ["cn"], "continue"),
    ("/usr/bin/node", ["node", f"{NM}/@augmentcode/auggie/augment.mjs"], "auggie"),
    # Not agents: helpers the agents ship, a shell naming an agent in a string, ordinary programs
    (f"{NM}/@anthropic-ai/claude-code/vendor/ripgrep/x64-linux/rg",
     [f"{NM}/@anthropic-ai/claude-code/vendor/ripgrep/x64-linux/rg", "--files"], None),
    (f"{NM}/@openai/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/path/rg",
     ["rg", "-n", "TODO"], None),
    ("/bin/bash", ["bash", "-lc", "codex exec hi"], None),
    ("/usr/bin/node", ["node", f"{NM}/@openai/codex/scripts/install_native_deps.js"], None),
    ("/usr/bin/node", ["node", "server.js"], None),
    ("/usr/bin/python3", ["python3", "-m", "pytest"], None),
    ("/usr/bin/git", ["git", "commit", "-m", "claude"], None),
])
def test_agent_kind(filename: str, argv: list[str], kind: str | None) -> None:
    assert agent_kind(filename, argv) == kind


def ev(topic: str, ts: int, ev_pid: int, **data: object) -> Event:
    return Event(topic, ts, "process", ev_pid, ev_pid, "", dict(data))


def spawn(t: SessionTracker, ts: int, parent: int, child: int, filename: str, argv: list[str],
          fork: bool = True) -> list[Event]:
    """fork + exec, as libuv's spawn and a shell do; returns the session.start events."""
    out = t.feed(ev("process.fork", ts, child, ppid=parent, child_pid=child)) if fork else []
    out += t.feed(ev("process.exec", ts + 1, child, pid=child, ppid=parent, filename=filename, argv=argv))
    return [e for e in out if e.topic == "session.start"]


def test_codex_launcher_native_binary_and_sandbox_helper_are_one_session() -> None:
    t = SessionTracker()
    t.seed(1, 0, "bash", "/bin/bash", ["bash"])
    (start,) = spawn(t, 10, 1, 100, "/usr/bin/node", ["node", f"{NM}/@openai/codex/bin/codex.js", "exec", "hi"])
    sid = start.data["session"]
    assert start.data["agent"] == "codex"
    assert spawn(t, 20, 100, 101, CODEX_NATIVE, [CODEX_NATIVE, "exec", "hi"]) == []
    assert spawn(t, 30, 101, 102, CODEX_NATIVE, ["codex-linux-sandbox", "--", "bash", "-lc", "ls"]) == []
    assert spawn(t, 40, 102, 103, "/bin/bash", ["bash", "-lc", "ls"]) == []
    assert [p.pid for p in t.tree(sid)] == [100, 101, 102, 103]
    (call,) = t.feed(Event("llm.call", 50, "llm", 101, 101, "codex", {"model": "gpt-5-codex"}))
    assert (call.data["session"], call.data["agent"]) == (sid, "codex")
    assert len(t.sessions) == 1


def test_the_native_child_joins_even_when_its_fork_was_not_seen() -> None:
    t = SessionTracker()
    (start,) = spawn(t, 10, 1, 200, "/usr/bin/node", ["node", f"{NM}/@openai/codex/bin/codex.js"])
    assert spawn(t, 20, 200, 201, CODEX_NATIVE, [CODEX_NATIVE], fork=False) == []
    assert t.session_of(201) is t.session_of(200)


def test_a_shebang_script_and_the_interpreter_it_execs_are_one_session() -> None:
    t = SessionTracker()
    (start,) = spawn(t, 10, 1, 300, "/usr/local/bin/gemini", ["gemini"])
    out = t.feed(ev("process.exec", 12, 300, pid=300, ppid=1, filename="/usr/bin/node",
                    argv=["node", "--no-warnings=DEP0040", f"{NM}/@google/gemini-cli/bundle/gemini.js"]))
    assert [e.topic for e in out] == ["process.exec"]
    # Gemini CLI relaunches itself with a bigger heap: still the same agent
    assert spawn(t, 20, 300, 301, "/usr/bin/node", ["/usr/bin/node", "--max-old-space-size=8192",
                                                    f"{NM}/@google/gemini-cli/bundle/gemini.js"]) == []
    assert t.session_of(301).id == start.data["session"]


def test_an_agent_a_tool_starts_is_a_sub_agent() -> None:
    t = SessionTracker()
    (claude,) = spawn(t, 10, 1, 400, "/usr/local/bin/claude", ["claude"])
    assert spawn(t, 20, 400, 401, "/bin/bash", ["bash", "-c", "codex exec 'write the docs'"]) == []
    (codex,) = spawn(t, 30, 401, 402, "/usr/bin/node", ["node", f"{NM}/@openai/codex/bin/codex.js", "exec"])
    assert (codex.data["agent"], codex.data["parent"]) == ("codex", claude.data["session"])
    assert spawn(t, 40, 402, 403, CODEX_NATIVE, [CODEX_NATIVE, "exec"]) == []  # its native half joins it
    assert t.session_of(403).id == codex.data["session"]
    # the same agent started again by a tool is a sub-agent too: its parent is a shell, not the agent
    (again,) = spawn(t, 50, 401, 404, "/usr/local/bin/claude", ["claude", "-p", "review"])
    assert (again.data["agent"], again.data["parent"]) == ("claude-code", claude.data["session"])


def test_helpers_an_agent_ships_stay_tools_of_its_session() -> None:
    t = SessionTracker()
    (start,) = spawn(t, 10, 1, 500, f"{NM}/@anthropic-ai/claude-code/bin/claude.exe", ["claude"])
    rg = f"{NM}/@anthropic-ai/claude-code/vendor/ripgrep/x64-linux/rg"
    assert spawn(t, 20, 500, 501, rg, [rg, "--files"]) == []
    assert t.session_of(501).id == start.data["session"] and len(t.sessions) == 1
