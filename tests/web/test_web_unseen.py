"""The page says when some of the recorded agent's TLS could not be seen (ssl.unprobed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsight.event import Event
from tests.web.conftest import open_view, screenshot, serve, wait_js
from tests.web.recording import AGENT_PID, T0, S, agent_session, write


def unprobed(ts: int, dest: str) -> Event:
    return Event("ssl.unprobed", ts, "ssl", 4399, 4401, "gh", {
        "path": "/usr/local/bin/gh", "dest": dest, "late": False, "stack": None, "uid": 1000,
        "reason": "it is a Go program (crypto/tls is compiled in; agentsight does not probe it)",
        "session": f"{AGENT_PID}@{T0}", "agent": "claude-code"})


def test_a_mark_names_what_could_not_be_seen_and_leads_to_the_event(tmp_path: Path, page: Any) -> None:
    events = agent_session() + [unprobed(T0 + 5 * S, "140.82.112.6:443"), unprobed(T0 + 6 * S, "140.82.112.6:443")]
    served = serve(write(tmp_path / "unseen.db", events))
    try:
        open_view(page, served.url + "/timeline", "timeline")
        mark = wait_js(page, "document.getElementById('tls-unseen') && document.getElementById('tls-unseen').textContent")
        assert mark == "⚠ TLS not visible: gh (2)"
        title = page.get_attribute("#tls-unseen", "title")
        assert title is not None and "/usr/local/bin/gh: 2 connection(s): it is a Go program" in title
        page.click("#tls-unseen")
        wait_js(page, "location.pathname === '/log' && document.querySelector('#log-detail pre')")
        assert '"topic": "ssl.unprobed"' in page.inner_text("#log-detail")
        assert "TLS not visible: gh → 140.82.112.6:443" in page.inner_text("#log-list")
        assert not page.errors
        screenshot(page, "tls-unseen")
    finally:
        served.thread.stop()


def test_no_mark_when_everything_was_seen(server: Any, page: Any) -> None:
    open_view(page, server.url + "/timeline", "timeline")
    assert page.evaluate("document.getElementById('tls-unseen')") is None
