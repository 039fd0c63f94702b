"""Real MCP servers from npm, pinned, for the MCP tests and demos.

Usage::

    python -m agentsight.demo.mcp_servers install     # npm install the pinned servers (idempotent)
    python -m agentsight.demo.mcp_servers list        # the servers, installed or not

They go into an npm prefix outside the repository, ``/var/cache/agentsight-mcp`` unless
``AGENTSIGHT_MCP_CACHE`` says otherwise (installed the way :mod:`agentsight.demo.clis`
installs the agent CLIs; ``scripts/setup.sh --clis`` installs both). :func:`server_command`
gives the command line that starts one over stdio.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agentsight.demo.clis import Package, _installed_version
from agentsight.demo.clis import install as npm_install

__all__ = ["SERVERS", "cache_dir", "install", "installed", "server_command", "main"]

DEFAULT_CACHE = "/var/cache/agentsight-mcp"

# The reference servers of the Model Context Protocol project (github.com/modelcontextprotocol/servers).
SERVERS = {
    "filesystem": Package("@modelcontextprotocol/server-filesystem", "2026.8.31", "mcp-server-filesystem",
                          "file tools over the directories given on its command line"),
    "everything": Package("@modelcontextprotocol/server-everything", "2026.8.31", "mcp-server-everything",
                          "every MCP feature: tools, resources, prompts, sampling, logging"),
}


def cache_dir() -> Path:
    """The npm prefix the servers are installed in."""
    return Path(os.environ.get("AGENTSIGHT_MCP_CACHE") or DEFAULT_CACHE)


def installed(name: str) -> bool:
    package = SERVERS[name]
    return _installed_version(cache_dir(), package) == package.version


def install(prefix: Path | None = None) -> list[Package]:
    """npm-install the pinned servers missing from the prefix; returns what it installed."""
    return npm_install(prefix or cache_dir(), list(SERVERS.values()))


def server_command(name: str, *args: str) -> list[str]:
    """The argv that runs server ``name`` over stdio (its own arguments after it)."""
    package = SERVERS[name]
    return [str(cache_dir() / "node_modules" / ".bin" / package.bin), *args]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentsight.demo.mcp_servers", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="npm install the pinned MCP servers that are missing")
    sub.add_parser("list", help="the servers and whether they are installed")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for name, pkg in SERVERS.items():
            state = "installed" if installed(name) else "missing"
            print(f"{name:12} {pkg.name}@{pkg.version:12} {state}  ({pkg.note})")
        return 0
    try:
        done = install()
    except Exception as exc:  # npm missing or failing: one line
        print(f"mcp_servers: {exc}", file=sys.stderr)
        return 1
    print(f"mcp_servers: installed {', '.join(f'{x.name}@{x.version}' for x in done)}" if done
          else f"mcp_servers: all pinned servers are already in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
