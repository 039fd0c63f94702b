"""An MCP client on the official ``mcp`` Python SDK that runs a fixed script against a server and
logs every request it made with what came back: the oracle of the MCP capture tests.

    mcp_client.py LOG filesystem DIR -- CMD ARGS...   # the filesystem server over stdio
    mcp_client.py LOG everything -- CMD ARGS...       # the everything server over stdio
    mcp_client.py LOG killed -- CMD ARGS...           # a long tool call whose server is killed mid-call
    mcp_client.py LOG http URL CA_FILE                # a streamable-HTTP server over TLS

Each line of LOG is one request: ``{"dir": "client", "method", "params", "result" | "error"}``
(``result`` as the SDK parsed it, dumped by alias), or a request the *server* sent that this
client answered (``"dir": "server"``: sampling, roots). Exit 0 when the script ran.
"""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

# A key-shaped string sent as a tool argument: the recording must not keep it.
SECRET = "sk-proj-Mcp7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5Mn"


def dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


class Logged:
    def __init__(self, path: Path) -> None:
        self.out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, entry: dict[str, Any]) -> None:
        self.out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.out.flush()

    async def call(self, method: str, params: dict[str, Any], coro: Any) -> Any:
        try:
            result = await coro
        except MCPError as exc:
            self.write({"dir": "client", "method": method, "params": params,
                        "error": {"code": exc.error.code, "message": exc.error.message}})
            return None
        self.write({"dir": "client", "method": method, "params": params, "result": dump(result)})
        return result

    def close(self) -> None:
        self.out.close()


def callbacks(log: Logged) -> dict[str, Any]:
    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        result = types.CreateMessageResult(role="assistant", model="agentsight-test-model",
                                           content=types.TextContent(type="text", text="sampled: forty-two"),
                                           stop_reason="endTurn")
        log.write({"dir": "server", "method": "sampling/createMessage", "params": dump(params),
                   "result": dump(result)})
        return result

    async def roots(context: Any) -> types.ListRootsResult:
        result = types.ListRootsResult(roots=[types.Root(uri="file:///tmp/agentsight-root", name="test root")])
        log.write({"dir": "server", "method": "roots/list", "params": None, "result": dump(result)})
        return result

    return {"sampling_callback": sampling, "list_roots_callback": roots}


async def tool(log: Logged, s: ClientSession, name: str, arguments: dict[str, Any]) -> Any:
    return await log.call("tools/call", {"name": name, "arguments": arguments}, s.call_tool(name, arguments))


async def filesystem(log: Logged, s: ClientSession, root: str) -> None:
    await log.call("tools/list", {}, s.list_tools())
    notes = f"{root}/notes.txt"
    await tool(log, s, "write_file", {"path": notes, "content": "first line\nsecond line: ünïcödé ✓\n"})
    await tool(log, s, "read_text_file", {"path": notes})
    await tool(log, s, "create_directory", {"path": f"{root}/sub/dir"})
    await tool(log, s, "write_file", {"path": f"{root}/sub/dir/config.json",
                                      "content": json.dumps({"api_key": SECRET, "debug": True})})
    await tool(log, s, "edit_file", {"path": notes, "edits": [{"oldText": "second", "newText": "2nd"}]})
    await tool(log, s, "list_directory", {"path": root})
    await tool(log, s, "search_files", {"path": root, "pattern": "*.txt"})
    await tool(log, s, "read_text_file", {"path": f"{root}/missing.txt"})  # an error the tool reports
    await tool(log, s, "read_text_file", {"path": notes, "head": 1})
    await tool(log, s, "list_allowed_directories", {})


async def everything(log: Logged, s: ClientSession) -> None:
    await log.call("tools/list", {}, s.list_tools())
    await tool(log, s, "echo", {"message": "hello from agentsight"})
    await tool(log, s, "get-sum", {"a": 2, "b": 40})
    await tool(log, s, "get-tiny-image", {})
    await tool(log, s, "trigger-sampling-request", {"prompt": "what is six times seven?", "maxTokens": 20})
    await tool(log, s, "get-roots-list", {})
    await log.call("resources/list", {}, s.list_resources())
    uri = "demo://resource/dynamic/text/1"
    await log.call("resources/read", {"uri": uri}, s.read_resource(uri))
    await log.call("prompts/list", {}, s.list_prompts())
    await log.call("prompts/get", {"name": "simple-prompt"}, s.get_prompt("simple-prompt"))
    await log.call("prompts/get", {"name": "args-prompt", "arguments": {"city": "Lyon", "state": "ARA"}},
                   s.get_prompt("args-prompt", {"city": "Lyon", "state": "ARA"}))
    await log.call("ping", {}, s.send_ping())
    await log.call("tools/call", {"name": "no-such-tool", "arguments": {}}, s.call_tool("no-such-tool", {}))


async def killed(log: Logged, s: ClientSession) -> None:
    """A long-running tool call; at its first progress notification the server is killed (SIGKILL)."""
    import psutil

    await log.call("tools/list", {}, s.list_tools())
    args = {"duration": 60, "steps": 60}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        for p in psutil.Process().children(recursive=True):
            if "mcp-server-everything" in " ".join(p.cmdline()):
                p.kill()

    try:
        with anyio.fail_after(30):
            await s.call_tool("trigger-long-running-operation", args, progress_callback=on_progress)
        log.write({"dir": "client", "method": "tools/call", "params": {"name": "trigger-long-running-operation",
                                                                       "arguments": args}, "result": "unexpected"})
    except Exception as exc:  # the server is gone: the call fails, however the SDK says it
        log.write({"dir": "client", "method": "tools/call", "params": {"name": "trigger-long-running-operation",
                                                                       "arguments": args},
                   "killed": f"{type(exc).__name__}: {exc}"})


async def http(log: Logged, s: ClientSession) -> None:
    await log.call("tools/list", {}, s.list_tools())
    await tool(log, s, "add", {"a": 19, "b": 23})
    await tool(log, s, "shout", {"text": "quiet words"})
    await tool(log, s, "count_down", {"n": 3})  # progress notifications, then the result, on one SSE answer
    await tool(log, s, "store_secret", {"api_key": SECRET, "label": "demo"})
    await log.call("resources/read", {"uri": "notes://today"}, s.read_resource("notes://today"))
    await log.call("prompts/get", {"name": "greet", "arguments": {"who": "agentsight"}},
                   s.get_prompt("greet", {"who": "agentsight"}))
    await tool(log, s, "fail", {"why": "on purpose"})


async def main(argv: list[str]) -> int:
    log = Logged(Path(argv[0]))
    scenario = argv[1]
    try:
        if scenario == "http":
            url, ca = argv[2], argv[3]
            ctx = ssl.create_default_context(cafile=ca)
            async with httpx2.AsyncClient(verify=ctx, timeout=httpx2.Timeout(30, read=60)) as hc, \
                    streamable_http_client(url, http_client=hc) as (r, w), \
                    ClientSession(r, w, **callbacks(log)) as s:
                await log.call("initialize", {}, s.initialize())
                await http(log, s)
            return 0
        cmd = argv[argv.index("--") + 1:]
        params = StdioServerParameters(command=cmd[0], args=cmd[1:])
        try:
            async with stdio_client(params) as (r, w), ClientSession(r, w, **callbacks(log)) as s:
                await log.call("initialize", {}, s.initialize())
                if scenario == "filesystem":
                    await filesystem(log, s, argv[2])
                elif scenario == "killed":
                    await killed(log, s)
                else:
                    await everything(log, s)
        except Exception:
            if scenario != "killed":  # there, the transport may complain about the dead server on the way out
                raise
        return 0
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
