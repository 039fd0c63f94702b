#!/usr/bin/env python3
"""Web UI benchmark: first render of each view over a recording of 50,000 events.

Builds the recording (tests/web/recording.py: agent sessions plus busy tool
processes over ~50 minutes), serves it, opens each view in Debian's chromium
(Playwright) and prints, per view, the time from navigation start to the view's
first complete render (``window.agentsight.ready[view]``), the median of
``--runs`` page loads. Also times a zoom on the timeline (new window drawn).

    .venv/bin/python scripts/bench_web.py [--events 50000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentsight.web.serve import ServerThread  # noqa: E402
from agentsight.web.server import WebServer  # noqa: E402
from tests.web.conftest import wait_js  # noqa: E402
from tests.web.recording import big_session, write  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWS = ("timeline", "processes", "llm", "log")


def first_render_ms(browser: Any, url: str, view: str) -> float:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = ctx.new_page()
    try:
        page.goto(f"{url}{view}")
        return float(wait_js(page, f"window.agentsight && window.agentsight.ready[{view!r}]", timeout=30))
    finally:
        ctx.close()


def zoom_ms(browser: Any, url: str) -> float:
    """Zoom the timeline in to a tenth of the recording: time until the new window is drawn."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = ctx.new_page()
    try:
        page.goto(f"{url}timeline")
        wait_js(page, "window.agentsight && window.agentsight.ready.timeline", timeout=30)
        time.sleep(0.5)
        return float(page.evaluate("""new Promise((done) => {
            const v = window.agentsight.state.views.timeline;
            const w = v.tl.getWindow(), span = w.end - w.start, t0 = performance.now();
            const seq = v.seq;
            v.tl.setWindow(new Date(w.start.getTime() + span * 0.45), new Date(w.start.getTime() + span * 0.55), {animation: false});
            const poll = () => (v.seq > seq && v.statusEl.textContent !== 'loading…')
                ? requestAnimationFrame(() => done(performance.now() - t0)) : setTimeout(poll, 5);
            poll();
        })"""))
    finally:
        ctx.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"bench_web: needs {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="as-bench-web-") as tmp:
        t0 = time.monotonic()
        db = write(Path(tmp) / "big.db", big_session(args.events))
        build_s = time.monotonic() - t0
        thread = ServerThread(WebServer(db, host="127.0.0.1", port=0))
        thread.start()
        url = thread.server.url
        results: dict[str, Any] = {"events": args.events, "runs": args.runs, "build_s": round(build_s, 2)}
        try:
            with sync_playwright() as p:
                flags = ["--no-sandbox"] if os.geteuid() == 0 else []
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[*flags, "--disable-gpu"])
                first_render_ms(browser, url, "timeline")  # warm the server's caches and the disk
                for view in VIEWS:
                    times = [first_render_ms(browser, url, view) for _ in range(args.runs)]
                    results[view] = {"median_ms": round(statistics.median(times)), "all_ms": [round(t) for t in times]}
                zooms = [zoom_ms(browser, url) for _ in range(args.runs)]
                results["timeline_zoom"] = {"median_ms": round(statistics.median(zooms)), "all_ms": [round(t) for t in zooms]}
                browser.close()
        finally:
            thread.stop()
    if args.json:
        print(json.dumps(results))
    else:
        print(f"web UI over {args.events:,} events (median of {args.runs} page loads, from navigation start):")
        for view in VIEWS:
            r = results[view]
            print(f"  {view:<10} first render {r['median_ms']:>5} ms   {r['all_ms']}")
        z = results["timeline_zoom"]
        print(f"  timeline zoom to 1/10: {z['median_ms']} ms   {z['all_ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
