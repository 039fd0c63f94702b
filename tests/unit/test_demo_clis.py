"""agentsight.demo.clis without running a CLI: what prepare writes, install's idempotence, the DNS sink's
answers, the run summary; the loopback namespace when root."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agentsight.demo import clis

BASE = "https://127.0.0.1:4443"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prefix = tmp_path / "cache"
    monkeypatch.setenv("AGENTSIGHT_CLI_CACHE", str(prefix))
    return prefix


def _fake_install(prefix: Path) -> None:
    for p in clis.PACKAGES.values():
        meta = prefix / "node_modules" / p.name / "package.json"
        meta.parent.mkdir(parents=True)
        meta.write_text(json.dumps({"name": p.name, "version": p.version}))


@pytest.mark.parametrize("name", sorted(clis.SETUPS))
def test_prepare_gives_a_clean_env_and_the_cached_binary(name: str, cache: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSIGHT_LEAK_CHECK", "1")
    home = tmp_path / "home"
    argv, env = clis.prepare(name, home, BASE + "/", tmp_path / "ca.pem", "do `ls`")
    setup = clis.SETUPS[name]
    assert argv[0] == str(cache / "node_modules" / ".bin" / setup.package.bin) and "do `ls`" in argv
    assert "AGENTSIGHT_LEAK_CHECK" not in env and env["HOME"] == str(home)
    assert env["TMPDIR"].startswith(str(home)) and Path(env["TMPDIR"]).is_dir()
    assert any(BASE in v for v in env.values()) or any(BASE in p.read_text() for p in home.rglob("*") if p.is_file())
    assert not any(v.endswith("//v1") or "4443//" in v for v in env.values())  # the trailing slash is dropped


def test_codex_configs(cache: Path, tmp_path: Path) -> None:
    """codex: a custom Responses provider (HTTP SSE); codex-ws: the OpenAI provider moved here, an API-key login."""
    clis.prepare("codex", tmp_path / "a", BASE, tmp_path / "ca.pem", "p")
    config = tomllib.loads((tmp_path / "a/.codex/config.toml").read_text())
    assert config["model_provider"] == "agentsight" and config["features"]["plugins"] is False
    assert config["model_providers"]["agentsight"] == {"name": "agentsight demo", "base_url": BASE + "/v1",
                                                       "env_key": "OPENAI_API_KEY", "wire_api": "responses"}
    assert config["analytics"]["enabled"] is False and config["check_for_update_on_startup"] is False
    _, env = clis.prepare("codex-ws", tmp_path / "b", BASE, tmp_path / "ca.pem", "p")
    ws = tomllib.loads((tmp_path / "b/.codex/config.toml").read_text())
    assert ws["openai_base_url"] == BASE + "/v1" and "model_provider" not in ws
    auth = tmp_path / "b/.codex/auth.json"
    assert json.loads(auth.read_text())["auth_mode"] == "apikey" and auth.stat().st_mode & 0o777 == 0o600
    assert "OPENAI_API_KEY" not in env and env["CODEX_CA_CERTIFICATE"] == str(tmp_path / "ca.pem")


def test_gemini_and_qwen_settings(cache: Path, tmp_path: Path) -> None:
    _, env = clis.prepare("gemini-code-assist", tmp_path / "g", BASE, tmp_path / "ca.pem", "p")
    settings = json.loads((tmp_path / "g/.gemini/settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "oauth-personal"
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert env["CODE_ASSIST_ENDPOINT"] == BASE and env["GOOGLE_GENAI_USE_GCA"] == "true"
    _, env = clis.prepare("qwen", tmp_path / "q", BASE, tmp_path / "ca.pem", "p")
    assert json.loads((tmp_path / "q/.qwen/settings.json").read_text())["security"]["auth"]["selectedType"] == "openai"
    assert env["OPENAI_BASE_URL"] == BASE + "/v1"
    with pytest.raises(KeyError):
        clis.prepare("aider", tmp_path / "x", BASE, tmp_path / "ca.pem", "p")


def test_install_is_idempotent(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned versions already there: nothing to do, npm not even looked for."""
    _fake_install(cache)
    monkeypatch.setattr(shutil, "which", lambda _name: pytest.fail("npm was looked up"))
    assert clis.install() == []


def test_install_runs_npm_for_missing_or_other_versions(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what is missing or at another version; Claude Code's postinstall (it puts the native binary in
    place) approved in the prefix's package.json first."""
    _fake_install(cache)
    (cache / "node_modules/@google/gemini-cli/package.json").write_text(json.dumps({"version": "0.1.0"}))
    shutil.rmtree(cache / "node_modules/@anthropic-ai/claude-code")
    (cache / "package.json").write_text(json.dumps({"dependencies": {"@google/gemini-cli": "^0.1.0"}}))
    ran: list[list[str]] = []
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(subprocess, "run", lambda argv, check: ran.append(argv))
    assert [p.name for p in clis.install()] == ["@anthropic-ai/claude-code", "@google/gemini-cli"]
    assert ran == [["/usr/bin/npm", "install", "--prefix", str(cache), "--save-exact", "--no-audit", "--no-fund",
                    "@anthropic-ai/claude-code@2.1.332", "@google/gemini-cli@0.61.0"]]
    assert json.loads((cache / "package.json").read_text()) == {
        "dependencies": {"@google/gemini-cli": "^0.1.0"}, "allowScripts": {"@anthropic-ai/claude-code": True}}


def _query(name: str, qtype: int, qid: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_nxdomain() -> None:
    asked, answer = clis.dns_nxdomain(_query("api.anthropic.com", 28)) or ("", b"")
    assert asked == "api.anthropic.com AAAA"
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", answer[:12])
    assert (qid, flags & 0x800F, qd, an) == (0x1234, 0x8003, 1, 0)  # a response, NXDOMAIN, no answer
    assert answer[12:] == _query("api.anthropic.com", 28)[12:]
    assert clis.dns_nxdomain(b"\0" * 5) is None and clis.dns_nxdomain(answer) is None  # short; a response


def test_report_lines() -> None:
    exchanges = [
        {"seq": 0, "api": "openai.responses", "endpoint": "/v1/responses", "transport": "websocket", "stream": True,
         "status": 200, "model_requested": "gpt-5.5", "request": {"input": "x"},
         "tool_calls": [{"name": "exec_command"}],
         "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 2}},
        {"seq": 1, "api": "openai.responses", "endpoint": "/v1/responses", "transport": "websocket", "stream": True,
         "status": 200, "model_requested": "gpt-5.5", "request": {"input": [{"output": clis.PROBE_OUTPUT}]},
         "tool_calls": [], "usage": None},
        {"seq": 2, "api": None, "endpoint": "/nope", "transport": "http", "stream": False, "status": 404,
         "model_requested": None, "usage": None},
    ]
    assert clis.exchange_line(exchanges[0]) == ("#0 openai.responses /v1/responses ws stream 200 model=gpt-5.5 "
                                                "tool_call=exec_command usage: input_tokens=10 "
                                                "input_tokens_details.cached_tokens=4 output_tokens=2")
    result = clis.RunResult("codex-ws", 0, 1.5, "out\n", "", exchanges, ["chatgpt.com A"], clis._probe_seen(exchanges))
    assert result.llm_calls == 2 and result.probe_seen and result.ok
    text = clis.report(result)
    assert "names looked up (answered NXDOMAIN): chatgpt.com" in text and text.endswith("OK (2 LLM calls, 1.50 s)")
    assert not clis.RunResult("x", None, 9.0, "", "", exchanges, [], True).ok  # killed at the timeout


root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")


@root
def test_loopback_netns_has_no_way_out() -> None:
    with clis.LoopbackNetns() as ns:
        links = subprocess.run(ns.argv(["ip", "-o", "link"]), capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        probe = ("import socket\ns = socket.socket()\ntry:\n    s.connect(('192.0.2.1', 443))\n"
                 "except OSError as e:\n    print(e.errno)")
        out = subprocess.run(ns.argv([sys.executable, "-c", probe]), capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "101"  # ENETUNREACH
        resolv = subprocess.run(ns.argv(["cat", "/etc/resolv.conf"]), capture_output=True, text=True).stdout
        assert resolv.startswith("nameserver 127.0.0.1")
        name = ns.name
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed and not Path("/etc/netns", name).exists()


@root
def test_stale_namespaces_are_removed() -> None:
    stale = clis.LoopbackNetns.PREFIX + "0-dead00"  # pid 0: no such creator
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in clis.LoopbackNetns.remove_stale()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
    assert stale not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
