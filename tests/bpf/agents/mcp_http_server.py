"""A streamable-HTTP MCP server on the official ``mcp`` Python SDK (``MCPServer``), served by uvicorn
over TLS (a fresh trustme CA), for the MCP-over-HTTP capture test.

    mcp_http_server.py READY_FILE CA_OUT [--json]

Writes the CA's PEM to CA_OUT, then the port it listens on (127.0.0.1) to READY_FILE. Answers
with event streams (SSE), or with JSON bodies with ``--json``. Tools: ``add``, ``shout``,
``count_down`` (progress and log notifications before its result), ``store_secret``, ``fail``
(a tool error); a resource ``notes://today``; a prompt ``greet``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import trustme
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("agentsight-http-test", version="1.2.3")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper() + "!"


@server.tool()
async def count_down(n: int, ctx: Context) -> str:
    """Count down from n, reporting progress at each step."""
    for i in range(n):
        await ctx.report_progress(i + 1, n, f"step {i + 1}")
        await ctx.info(f"counted {n - i}")
    return "lift-off"


@server.tool()
def store_secret(api_key: str, label: str) -> str:
    """Pretend to store a credential."""
    return f"stored {label} ({len(api_key)} characters)"


@server.tool()
def fail(why: str) -> str:
    """Always fails."""
    raise ToolError(f"failed {why}")


@server.resource("notes://today")
def today() -> str:
    """Today's notes."""
    return "buy milk; write tests"


@server.prompt()
def greet(who: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {who}."


def main(argv: list[str]) -> int:
    ready, ca_out = Path(argv[0]), Path(argv[1])
    json_response = "--json" in argv
    ca = trustme.CA(organization_name="agentsight MCP test CA")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = ready.with_name("server.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(ca_out))
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = server.streamable_http_app(json_response=json_response)
    config = uvicorn.Config(app, ssl_keyfile=str(pem), ssl_certfile=str(pem), log_level="warning")
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, ready)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
