"""An agent that gives a model MCP tools: the official anthropic SDK (streamed Messages) against the demo
LLM server, and the official mcp SDK running an MCP server over stdio, like Claude Code does.

    mcp_llm_agent.py BASE_URL CA_FILE WORKDIR LOG -- SERVER_CMD ARGS...

It offers the server's ``read_text_file`` and ``list_directory`` tools as ``mcp__filesystem__<name>``,
asks the model to read WORKDIR/notes.txt, runs each ``tool_use`` the answer holds as an MCP
``tools/call`` and sends the results back, until the model answers with text. LOG gets one line
per tool run: ``{"tool_use_id", "llm_name", "tool", "arguments", "result_text"}``.
"""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import anthropic
import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

from agentsight.demo.agent import ANTHROPIC_KEY

PREFIX = "mcp__filesystem__"


async def main(argv: list[str]) -> int:
    base_url, ca, workdir, log = argv[0], argv[1], Path(argv[2]), Path(argv[3])
    cmd = argv[argv.index("--") + 1:]
    client = anthropic.AsyncAnthropic(api_key=ANTHROPIC_KEY, base_url=base_url, max_retries=0, timeout=60,
                                      http_client=anthropic.DefaultAsyncHttpxClient(
                                          verify=ssl.create_default_context(cafile=ca)))
    out = open(log, "w", encoding="utf-8")  # noqa: SIM115
    params = StdioServerParameters(command=cmd[0], args=cmd[1:])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as mcp:
        await mcp.initialize()
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        offered = [{"name": PREFIX + name, "description": tools[name].description or "",
                    "input_schema": tools[name].input_schema} for name in ("read_text_file", "list_directory")]
        messages: list[dict] = [{"role": "user", "content": f"Read `{workdir}/notes.txt` and tell me what it says."}]
        for _ in range(4):
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=512, messages=messages,
                                              tools=offered, system="You are a careful assistant.") as stream:
                done = await stream.get_final_message()
            uses = [b for b in done.content if b.type == "tool_use"]
            if not uses:
                break
            messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in done.content]})
            results = []
            for use in uses:
                tool = use.name.removeprefix(PREFIX)
                ran = await mcp.call_tool(tool, use.input)
                text = "\n".join(c.text for c in ran.content if c.type == "text")
                results.append({"type": "tool_result", "tool_use_id": use.id, "content": text})
                out.write(json.dumps({"tool_use_id": use.id, "llm_name": use.name, "tool": tool,
                                      "arguments": use.input, "result_text": text}) + "\n")
                out.flush()
            messages.append({"role": "user", "content": results})
    out.close()
    await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
