"""The LLM view's tokens-over-time chart: its time labels never overlap and read as times.

uPlot draws its axes on a canvas, so the test reads what the chart computed for the x axis
(``axes[0]._splits``, the tick times, and ``_values``, their labels), places each label as uPlot
does (centred on its tick) and measures its width with a canvas ``measureText`` in the axis font.
It does that for one call and for calls spread over a second to 40 days, in windows from 1440 px
wide to a phone's 360 px (after a resize as well as on first load), in Inter and in the fallback
font a browser uses while Inter is missing (wider), and checks that a chart drawn before Inter
arrived is drawn again with it (overlapping labels seen in a browser came from there too).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import TOKEN, Served, open_view, screenshot, serve, wait_js
from tests.web.recording import S, llm_calls_over, write

# name: (span, calls); one call is drawn over the second before it.
SPANS = {"1call": (0, 1), "1.5s": (1500_000_000, 12), "20s": (20 * S, 12), "130s": (130 * S, 12),
         "10min": (600 * S, 12), "25min": (1500 * S, 12), "3h": (3 * 3600 * S, 12), "3d": (3 * 86400 * S, 12),
         "40d": (40 * 86400 * S, 12)}
WIDTHS = [1440, 1000, 600, 360]
MIN_GAP = 6  # CSS px of blank between two labels

# The x axis as drawn: every label's text, its tick time (s), its left and right edge (CSS px in the canvas).
AXIS_JS = """() => {
    const u = window.agentsight.state.views.llm.chart;
    const ax = u.axes[0];
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = ax.font[0];
    const r = uPlot.pxRatio;
    const out = [];
    ax._splits.forEach((v, i) => {
        const text = ax._values[i];
        if (text == null || text === '') return;
        const x = u.bbox.left / r + u.valToPos(v, 'x');
        const lines = String(text).split('\\n');
        const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) / r;
        out.push({ text: String(text), v, left: x - w / 2, right: x + w / 2 });
    });
    return { labels: out, width: u.width, font: ax.font[0], fontPx: parseFloat(ax.font[0]) / r,
             min: u.scales.x.min, max: u.scales.x.max };
}"""


def readable(text: str, v: float) -> bool:
    """The label is the tick's own time (the page runs in UTC) written as seconds, HH:MM or a date."""
    t = datetime.fromtimestamp(round(v, 3), UTC)
    sub = f"{t.microsecond // 1000:03d}"
    forms = {t.strftime("%H:%M:%S"), t.strftime("%H:%M"), f"{t:%b} {t.day}", t.strftime("%b %Y"),
             t.strftime("%Y")}
    forms |= {f"{t:%H:%M:%S}.{sub[:n]}" for n in (1, 2, 3)} | {f"{t:%M:%S}.{sub[:n]}" for n in (1, 2, 3)}
    return text in forms


def axis_problems(axis: dict[str, Any]) -> list[str]:
    labels = axis["labels"]
    problems = []
    if not 9 <= axis["fontPx"] <= 14:
        problems.append(f"labels drawn in {axis['font']!r}: {axis['fontPx']:g} CSS px")
    if len(labels) < 2:
        problems.append(f"only {len(labels)} label(s): {labels}")
    for a, b in zip(labels, labels[1:], strict=False):
        if a["right"] + MIN_GAP > b["left"]:
            problems.append(f"{a['text']!r} [{a['left']:.0f}..{a['right']:.0f}] overlaps or nearly touches "
                            f"{b['text']!r} [{b['left']:.0f}..{b['right']:.0f}]")
        if a["text"] == b["text"]:
            problems.append(f"two ticks in a row read {a['text']!r}")
    for lab in labels:
        if not readable(lab["text"], lab["v"]):
            problems.append(f"{lab['text']!r} is not the time of its tick "
                            f"{datetime.fromtimestamp(lab['v'], UTC).isoformat()}")
        if lab["left"] < 0 or lab["right"] > axis["width"]:
            problems.append(f"{lab['text']!r} [{lab['left']:.0f}..{lab['right']:.0f}] leaves the "
                            f"{axis['width']} px canvas")
    return problems


@pytest.fixture(scope="module")
def span_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    d = Path(tmp_path_factory.mktemp("spans"))
    servers = {name: serve(write(d / f"{name}.db", llm_calls_over(span, n))) for name, (span, n) in SPANS.items()}
    yield servers
    for s in servers.values():
        s.thread.stop()


def chart_width(page: Any) -> int:
    return page.evaluate("window.agentsight.state.views.llm.chart.width")


def block_inter(page: Any) -> None:
    """Inter never arrives: the page draws in the fallback sans-serif (DejaVu Sans on Debian, wider)."""
    page.route("**/inter-latin*", lambda route: route.abort())


@pytest.mark.parametrize("font", ["inter", "fallback"])
@pytest.mark.parametrize("span", list(SPANS))
def test_tokens_chart_time_labels_do_not_overlap(span_servers, page, span, font):
    if font == "fallback":
        block_inter(page)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    open_view(page, span_servers[span].url + "/llm", "llm")
    loaded = "document.fonts.check('11px Inter') && document.fonts.check('10px Inter')"
    wait_js(page, f"document.fonts.status === 'loaded' && {'!' if font == 'fallback' else ''}({loaded})")
    problems = []
    for i, width in enumerate(WIDTHS):
        if i:
            before = chart_width(page)
            page.set_viewport_size({"width": width, "height": 900})
            wait_js(page, f"window.agentsight.state.views.llm.chart.width !== {before}")
        axis = page.evaluate(AXIS_JS)
        assert axis["max"] - axis["min"] >= SPANS[span][0] / S * 0.9
        problems += [f"{width} px window, {axis['width']} px chart: {p}" for p in axis_problems(axis)]
        if font == "inter" and width in (WIDTHS[0], WIDTHS[-1]):
            screenshot(page, f"llm-chart-{span}-{width}")
    # First load at the smallest width (not only after a resize).
    page.reload()
    wait_js(page, "window.agentsight && window.agentsight.ready.llm", timeout=20)
    wait_js(page, "document.fonts.status === 'loaded'")
    axis = page.evaluate(AXIS_JS)
    problems += [f"loaded at {WIDTHS[-1]} px, {axis['width']} px chart: {p}" for p in axis_problems(axis)]
    assert not problems, "\n".join(problems)
    assert not [e for e in page.errors if font == "inter" or "inter-latin" not in e and "Failed to load" not in e]


@pytest.mark.parametrize("span", ["10min", "3d"])
def test_tokens_chart_time_labels_on_a_hidpi_screen(span_servers, browser, span):
    """At 2 device pixels per CSS pixel, the labels keep their size and their room."""
    ctx = browser.new_context(viewport={"width": WIDTHS[0], "height": 900}, device_scale_factor=2,
                              timezone_id="UTC", extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        page = ctx.new_page()
        open_view(page, span_servers[span].url + "/llm", "llm")
        wait_js(page, "document.fonts.status === 'loaded' && document.fonts.check('11px Inter')")
        problems = []
        for i, width in enumerate((WIDTHS[0], WIDTHS[-1])):
            if i:
                before = chart_width(page)
                page.set_viewport_size({"width": width, "height": 900})
                wait_js(page, f"window.agentsight.state.views.llm.chart.width !== {before}")
            axis = page.evaluate(AXIS_JS)
            problems += [f"{width} px window: {p}" for p in axis_problems(axis)]
        assert not problems, "\n".join(problems)
    finally:
        ctx.close()


# A digest of the x axis strip of the chart's canvas (the labels as they are on screen).
AXIS_PIXELS_JS = """() => {
    const u = window.agentsight.state.views.llm.chart;
    const c = u.ctx.canvas;
    const top = Math.round(u.bbox.top + u.bbox.height);
    const px = u.ctx.getImageData(0, top, c.width, c.height - top).data;
    let hash = 2166136261;  // FNV-1a
    for (let i = 0; i < px.length; i++) hash = Math.imul(hash ^ px[i], 16777619) >>> 0;
    return `${px.length}:${hash}`;
}"""


def test_tokens_chart_is_drawn_again_when_its_font_arrives(span_servers, page):
    """Drawn while Inter was still on its way, the labels are spaced and drawn again in Inter."""
    held: list[Any] = []
    page.route("**/inter-latin*", lambda route: held.append(route))
    page.set_viewport_size({"width": 1000, "height": 900})
    page.goto(span_servers["130s"].url + "/llm", wait_until="commit")
    wait_js(page, "window.agentsight && window.agentsight.ready.llm", timeout=20)
    assert held and not page.evaluate("document.fonts.check('11px Inter')")
    fallback = page.evaluate(AXIS_PIXELS_JS)
    for route in held:
        route.continue_()
    page.unroute("**/inter-latin*")
    wait_js(page, "document.fonts.check('11px Inter')")
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shown = page.evaluate(AXIS_PIXELS_JS)
    assert shown != fallback
    page.evaluate("window.agentsight.state.views.llm.chart.redraw(false, true)")
    assert page.evaluate(AXIS_PIXELS_JS) == shown, "the axis on screen is not what the chart draws in Inter"
    assert axis_problems(page.evaluate(AXIS_JS)) == []


def test_readable_accepts_only_the_ticks_own_time():
    v = datetime(2026, 3, 14, 10, 5, 30, tzinfo=UTC).timestamp()
    assert readable("10:05:30", v) and readable("10:05", v) and readable("Mar 14", v)
    assert not readable("10:05:31", v) and not readable("00:00", v) and not readable("1773482730", v)
