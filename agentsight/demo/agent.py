"""A small "coding agent" on the official openai and anthropic SDKs, for demos, tests and benchmarks.

Usage::

    python -m agentsight.demo.agent --base-url https://127.0.0.1:PORT --ca CA.pem \\
        [--calls N] [--apis chat-stream,messages,...] [--node] [--exit-code N] [--workdir DIR] [--report PATH]

It works through a fixed list of tasks, each in one API (cycling through ``--apis``):
it asks the model, runs every tool call it gets (``run_command``: the command split
with shlex and run as a subprocess in the work directory: ``ls``, ``cat``, ``sh -c``,
``python3 -c``), sends the results back, and goes on until the model answers without a
tool call or ``--calls`` LLM calls were made. It writes ``notes.txt`` (for the tools to
read) and ``agent-summary.md`` (the answers) in its work directory. With ``--node`` a
``node`` child makes one more Chat Completions request (trusting the CA through
``NODE_EXTRA_CA_CERTS``). ``--report`` writes one JSON line per call with what the SDK
parsed (text, tool calls, usage, model, id). The API keys are fakes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["APIS", "TASKS", "OPENAI_KEY", "ANTHROPIC_KEY", "NODE_KEY", "CallResult", "main"]

# Fake keys in the providers' formats: an observer must redact them.
OPENAI_KEY = "sk-demo-openai-4f1c2a9e7b3d5a60c8e1"
ANTHROPIC_KEY = "sk-ant-api03-demo-7e2b9c4d1a8f3e65b0d2"
NODE_KEY = "sk-demo-node-91d3b7e5a2c4f6081e3b"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"

APIS = ("chat-stream", "chat", "responses-stream", "responses", "messages-stream", "messages")
TASKS = (
    "List the files in the work directory: `ls -la`",
    "Show me the notes: `cat notes.txt`",
    "Save a greeting: `sh -c 'echo hello from the demo agent > greeting.txt'`",
    "Check the interpreter: `python3 -c 'import sys; print(sys.version_info[:2], 6 * 7)'`",
)
SYSTEM = ("You are a careful coding agent working in a scratch directory. "
          "Use run_command to look before you answer, and keep answers short.")
NOTES = "notes.txt: the demo agent reads this file with cat.\nsecond line\n"

_DESCRIPTION = "Run a command (no shell unless you call sh -c) in the work directory; returns its output."
_SCHEMA = {"type": "object", "properties": {"command": {"type": "string", "description": "the command line"}},
           "required": ["command"]}
NODE_SCRIPT = r"""
const https = require('https');
const url = new URL(process.argv[1] + '/v1/chat/completions');
const body = JSON.stringify({model: 'gpt-4o-mini', messages: [{role: 'user', content: 'Hello from node'}]});
const req = https.request(url, {method: 'POST', headers: {
  'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
  'Authorization': 'Bearer ' + process.env.DEMO_NODE_KEY, 'User-Agent': 'agentsight-demo-node/1.0'}}, (res) => {
  const parts = [];
  res.on('data', (d) => parts.push(d));
  res.on('end', () => {
    const reply = JSON.parse(Buffer.concat(parts).toString());
    if (res.statusCode !== 200) { console.error('node: HTTP ' + res.statusCode); process.exit(1); }
    console.log('[node] ' + reply.choices[0].message.content.slice(0, 60));
  });
});
req.on('error', (err) => { console.error('node: ' + err.message); process.exit(1); });
req.end(body);
"""


@dataclass
class CallResult:
    """One LLM call as the SDK parsed it."""

    api: str  # the --apis name
    model: str | None
    response_id: str | None
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{id, name, arguments}]
    usage: dict[str, Any] | None = None


def run_command(command: str, workdir: Path) -> str:
    """The one tool: run the command as a subprocess; its output (and exit status when not 0)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"error: cannot split the command: {exc}"
    if not argv:
        return "error: empty command"
    try:
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    out = (done.stdout + done.stderr)[:4000]
    return out if done.returncode == 0 else f"{out}[exit status {done.returncode}]"


def _dump(obj: Any) -> dict[str, Any] | None:
    return obj.model_dump(mode="json", exclude_none=True) if obj is not None else None


def _ssl_context(ca: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


class Task:
    """One conversation in one API: ``call`` asks the model, ``answer`` sends tool results."""

    def __init__(self, api: str, prompt: str, clients: Clients) -> None:
        self.api = api
        self.clients = clients
        self.chat: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        self.items: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]

    def call(self) -> CallResult:
        if self.api.startswith("chat"):
            return self._chat()
        if self.api.startswith("responses"):
            return self._responses()
        return self._messages()

    def answer(self, result: CallResult, outputs: list[str]) -> None:
        calls = result.tool_calls
        if self.api.startswith("chat"):
            self.chat.append({"role": "assistant", "content": result.text or None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls]})
            self.chat += [{"role": "tool", "tool_call_id": c["id"], "content": out} for c, out in zip(calls, outputs, strict=True)]
        elif self.api.startswith("responses"):
            self.items += [{"type": "function_call", "call_id": c["id"], "name": c["name"],
                            "arguments": c["arguments"]} for c in calls]
            self.items += [{"type": "function_call_output", "call_id": c["id"], "output": out}
                           for c, out in zip(calls, outputs, strict=True)]
        else:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": result.text}] if result.text else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
                       for c in calls]
            self.messages.append({"role": "assistant", "content": blocks})
            self.messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": c["id"], "content": out} for c, out in zip(calls, outputs, strict=True)]})

    def _chat(self) -> CallResult:
        client = self.clients.openai
        tools = [{"type": "function", "function": {"name": "run_command", "description": _DESCRIPTION,
                                                   "parameters": _SCHEMA}}]
        if self.api == "chat-stream":
            done = _streamed(client.chat.completions.stream(model=OPENAI_MODEL, messages=self.chat, tools=tools,
                                                            stream_options={"include_usage": True}),
                             "get_final_completion")
        else:
            done = client.chat.completions.create(model=OPENAI_MODEL, messages=self.chat, tools=tools)
        msg = done.choices[0].message
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                 for c in msg.tool_calls or []]
        return CallResult(self.api, done.model, done.id, msg.content or "", calls, _dump(done.usage))

    def _responses(self) -> CallResult:
        client = self.clients.openai
        tools = [{"type": "function", "name": "run_command", "description": _DESCRIPTION, "parameters": _SCHEMA,
                  "strict": False}]
        kwargs: dict[str, Any] = {"model": OPENAI_MODEL, "instructions": SYSTEM, "input": self.items,
                                  "tools": tools, "store": False}
        if self.api == "responses-stream":
            done = _streamed(client.responses.stream(**kwargs), "get_final_response")
        else:
            done = client.responses.create(**kwargs)
        calls = [{"id": it.call_id, "name": it.name, "arguments": it.arguments}
                 for it in done.output if it.type == "function_call"]
        return CallResult(self.api, done.model, done.id, done.output_text, calls, _dump(done.usage))

    def _messages(self) -> CallResult:
        client = self.clients.anthropic
        kwargs: dict[str, Any] = {
            "model": ANTHROPIC_MODEL, "max_tokens": 1024, "messages": self.messages,
            # Cached like Claude Code's system prompt.
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "run_command", "description": _DESCRIPTION, "input_schema": _SCHEMA}],
        }
        if self.api == "messages-stream":
            done = _streamed(client.messages.stream(**kwargs), "get_final_message")
        else:
            done = client.messages.create(**kwargs)
        text = "".join(b.text for b in done.content if b.type == "text")
        calls = [{"id": b.id, "name": b.name, "arguments": json.dumps(b.input, separators=(",", ":"),
                                                                      ensure_ascii=False)}
                 for b in done.content if b.type == "tool_use"]
        return CallResult(self.api, done.model, done.id, text, calls, _dump(done.usage))


def _streamed(manager: Any, final: str) -> Any:
    """Read an SDK stream to its end, as an agent printing deltas would, and return its final object."""
    with manager as stream:
        for _ in stream:
            pass
        return getattr(stream, final)()


class Clients:
    """The SDK clients, made on first use (importing an SDK costs a few hundred ms)."""

    def __init__(self, base_url: str, ca: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca = ca
        self._openai: Any = None
        self._anthropic: Any = None

    @property
    def openai(self) -> Any:
        if self._openai is None:
            import openai

            self._openai = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{self.base_url}/v1", max_retries=0,
                                         timeout=120, http_client=openai.DefaultHttpxClient(
                                             verify=_ssl_context(self.ca)))
        return self._openai

    @property
    def anthropic(self) -> Any:
        if self._anthropic is None:
            import anthropic

            self._anthropic = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=self.base_url, max_retries=0,
                                                  timeout=120, http_client=anthropic.DefaultHttpxClient(
                                                      verify=_ssl_context(self.ca)))
        return self._anthropic


def run_agent(clients: Clients, calls: int, apis: list[str], workdir: Path,
              report: Callable[[CallResult], None]) -> list[CallResult]:
    """Work through the tasks until ``calls`` LLM calls were made; every call is passed to ``report``."""
    results: list[CallResult] = []
    n = 0
    while len(results) < calls:
        task = Task(apis[n % len(apis)], TASKS[n % len(TASKS)], clients)
        n += 1
        while len(results) < calls:
            result = task.call()
            results.append(result)
            report(result)
            if not result.tool_calls:
                break
            outputs = [run_command(json.loads(c["arguments"]).get("command", ""), workdir) for c in result.tool_calls]
            task.answer(result, outputs)
    return results


def run_node(base_url: str, ca: str | None) -> None:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("--node needs node on PATH")
    env = {**os.environ, "DEMO_NODE_KEY": NODE_KEY}
    if ca:
        env["NODE_EXTRA_CA_CERTS"] = ca
    done = subprocess.run([node, "-e", NODE_SCRIPT, base_url.rstrip("/")], env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the node child failed with exit status {done.returncode}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentsight.demo.agent", description=__doc__.split("\n")[0])
    p.add_argument("--base-url", required=True, help="the server, like https://127.0.0.1:PORT")
    p.add_argument("--ca", help="CA certificate (PEM) to trust for the server")
    p.add_argument("--calls", type=int, default=6, help="LLM calls to make (default 6)")
    p.add_argument("--apis", default=",".join(APIS), help=f"APIs to cycle through, from {','.join(APIS)}")
    p.add_argument("--node", action="store_true", help="also make one request from a node child")
    p.add_argument("--exit-code", type=int, default=0, help="exit with this status when all went well")
    p.add_argument("--workdir", type=Path, help="where the tools run (default: a new temporary directory)")
    p.add_argument("--report", type=Path, help="write one JSON line per call (what the SDK parsed) here")
    p.add_argument("--quiet", action="store_true", help="print nothing per call")
    a = p.parse_args(argv)
    apis = [s.strip() for s in a.apis.split(",") if s.strip()]
    unknown = [s for s in apis if s not in APIS]
    if unknown or not apis:
        print(f"agent: unknown API {unknown[0] if unknown else '(none)'!r}: choose from {', '.join(APIS)}",
              file=sys.stderr)
        return 2
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="agentsight-agent-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "notes.txt").write_text(NOTES)
    report_file = open(a.report, "a", encoding="utf-8") if a.report else None  # noqa: SIM115

    def report(result: CallResult) -> None:
        if report_file is not None:
            report_file.write(json.dumps(asdict(result)) + "\n")
            report_file.flush()
        if not a.quiet:
            what = (", ".join(f"{c['name']} {c['arguments']}" for c in result.tool_calls)
                    or result.text[:70] + ("..." if len(result.text) > 70 else ""))
            print(f"[{result.api}] {result.model}: {what}", flush=True)

    try:
        results = run_agent(Clients(a.base_url, a.ca), a.calls, apis, workdir, report)
        if a.node:
            run_node(a.base_url, a.ca)
    except Exception as exc:  # the SDKs' errors have no common base: report any in one line
        print(f"agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if report_file is not None:
            report_file.close()
    answers = [f"- [{r.api}] {r.text}" for r in results if not r.tool_calls]
    (workdir / "agent-summary.md").write_text("# demo agent answers\n\n" + "\n".join(answers) + "\n")
    return a.exit_code


if __name__ == "__main__":
    sys.exit(main())
