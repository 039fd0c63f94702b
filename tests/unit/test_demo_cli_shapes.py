"""The demo LLM server on the request shapes the agent CLIs send (Claude Code, Qwen Code), token counting
and model lists, through the real anthropic and openai SDKs."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agentsight.demo.llm_server import Running, count_tokens, read_log, running

KEY = "sk-demo-test-shapes-81f0"
BASH = {"name": "Bash", "description": "Run a shell command.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"},
                                                          "timeout": {"type": "number"}}, "required": ["command"]}}
AGENT = {"name": "Agent", "description": "Start a sub-agent.",
         "input_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(tmp_path) as srv:
        yield srv


def _anthropic(server: Running) -> anthropic.Anthropic:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    return anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0,
                               http_client=anthropic.DefaultHttpxClient(verify=ctx))


def _openai(server: Running) -> openai.OpenAI:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    return openai.OpenAI(api_key=KEY, base_url=server.url + "/v1", max_retries=0,
                         http_client=openai.DefaultHttpxClient(verify=ctx))


def test_claude_code_shape(server: Running) -> None:
    """Claude Code: a reminder block before the prompt, its environment as a system message after the first
    user turn, "Bash" among other tools: the scripted model calls Bash with the prompt's command."""
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>Use `git status` often.</system-reminder>"},
                                     {"type": "text", "text": "Run this: `printf 'x-%s\\n' y`"}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment\nPlatform: linux"}]},
    ]
    first = _anthropic(server).messages.create(
        model="claude-opus-5-5", max_tokens=1000, system="You are Claude Code.", tools=[AGENT, BASH],
        messages=messages, extra_body={"context_management": {"edits": []}})
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "Bash" and use.input == {"command": "printf 'x-%s\\n' y"}
    entry = read_log(server.log)[0]
    # The system message joins the system prompt; the two user blocks are the conversation's texts.
    expected = (count_tokens("You are Claude Code.\n\n# Environment\nPlatform: linux")
                + count_tokens(json.dumps(entry["request"]["tools"], sort_keys=True))
                + count_tokens("<system-reminder>Use `git status` often.</system-reminder>")
                + count_tokens("Run this: `printf 'x-%s\\n' y`") + 3 * 2 + 3)
    assert first.usage.input_tokens == entry["usage"]["input_tokens"] == expected


def test_system_message_cannot_open_the_conversation(server: Running) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        _anthropic(server).messages.create(model="claude-haiku-4-5", max_tokens=10,
                                           messages=[{"role": "system", "content": "x"}])  # type: ignore[typeddict-item]
    assert exc.value.status_code == 400 and "messages.0.role" in str(exc.value)


def test_anthropic_count_tokens_and_models(server: Running) -> None:
    """count_tokens gives the input count a create would report; the model list is in Anthropic's shape."""
    client = _anthropic(server)
    args: dict[str, Any] = {"model": "claude-haiku-4-5", "system": "Be brief.",
                            "messages": [{"role": "user", "content": "What is 2+2?"}]}
    counted = client.messages.count_tokens(**args)
    created = client.messages.create(max_tokens=64, **args)
    assert counted.input_tokens == created.usage.input_tokens == count_tokens("Be brief.What is 2+2?") + 3 + 3
    assert [m.id for m in client.models.list()] == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001",
                                                   "claude-3-5-haiku-20241022"]
    entries = read_log(server.log)
    assert [e["api"] for e in entries] == ["anthropic.count_tokens", "anthropic.messages", "anthropic.models"]
    assert entries[0]["usage"] == {"input_tokens": counted.input_tokens}


def test_qwen_shape_picks_the_shell_tool(server: Running) -> None:
    """Qwen Code / Gemini CLI name their shell tool run_shell_command, after others: it is the one called."""
    def fn(name: str) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "parameters": {
            "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}
    reply = _openai(server).chat.completions.create(
        model="qwen3-coder-plus", tools=[fn("agent"), fn("edit"), fn("run_shell_command")],  # type: ignore[list-item]
        messages=[{"role": "system", "content": "You are Qwen Code."},
                  {"role": "user", "content": "Skills: `/batch`, `/loop`.\nNow run `uname -s`"}])
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "run_shell_command"  # type: ignore[union-attr]
    assert calls[0].function.arguments == '{"command":"uname -s"}'  # type: ignore[union-attr]


def test_openai_models_list(server: Running) -> None:
    assert "gpt-4o-mini" in [m.id for m in _openai(server).models.list()]
    assert read_log(server.log)[0]["api"] == "openai.models"
