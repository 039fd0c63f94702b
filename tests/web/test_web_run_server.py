"""`agentsight run --server`: the web UI beside a pipeline.toml's own sinks, kept across reloads."""

from __future__ import annotations

import json
import socket
import urllib.request

from tests.conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> dict:
    from agentsight.web.guard import stored_token  # --server without a token: the user's stored one

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {stored_token()}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_run_with_server_serves_what_the_sinks_get(pipeline, workdir):
    port = free_port()
    out = workdir / "out.jsonl"
    p = pipeline(f"""
[sources.gen]
type = "generator"
rate = 50
keys = 2

[sinks.out]
type = "jsonl"
inputs = ["gen"]
path = "{out}"
""").start("--server", "--server-port", str(port))

    def served() -> int:
        try:
            return int(get(port, "/api/info")["counts"]["events"])
        except OSError:
            return 0

    wait_for(lambda: served() > 20, 30, what="events in the web UI")
    events = get(port, "/api/events?limit=5")["events"]
    assert events and all(e["topic"] == "gen.event" for e in events)
    assert any(r["id"].startswith("sinks/web_ui") for r in p.status()["instances"])
    # A reload of the file (here: a faster generator) keeps the web sink the flag added.
    p.config.write_text(p.config.read_text().replace("rate = 50", "rate = 60"))
    wait_for(lambda: "config reloaded" in p.stderr(), 10, what="the reload")
    before = served()
    wait_for(lambda: served() > before + 20, 10, what="events still reaching the web UI")
    assert "stopped web_ui" not in p.stderr()
    assert p.stop() == 0, p.stderr()
