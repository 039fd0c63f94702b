"""The shipped collector (config/collector.toml) moved into a directory of one's own: what the
collector tests and scripts/bench_record.py run."""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "collector.toml"


def collector_config(d: Path) -> str:
    """config/collector.toml with its store in ``d``, its clients socket at ``d/collector.sock``
    and no web UI (the web tests cover it)."""
    out, skip = [], False
    for line in SHIPPED.read_text().splitlines():
        if line.startswith("["):
            skip = line.startswith("[sinks.web]")
        if skip:
            continue
        out.append(line.replace("/var/lib/agentsight/agents.db", str(d / "agents.db")))
        if line.startswith("[sinks.clients]"):
            out.append(f'socket = "{d / "collector.sock"}"')
    return "\n".join(out) + "\n"
