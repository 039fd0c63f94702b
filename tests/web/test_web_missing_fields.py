"""Fields a real capture leaves empty never show as `null`, `nullnull` or `undefined` in the page.

The recording is the agent session plus a call the llm stage built from a refused, tool-less
request (no answer, usage, cost, TTFT or notes): see :func:`tests.web.recording.bare_llm_call`.
JSON views (`pre.json`: the raw record, an error body) show JSON's own `null` and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Served, open_view, screenshot, serve, wait_js
from tests.web.recording import AGENT_PID, agent_session, bare_llm_call, write

# A missing value written out as text: null/undefined/NaN standing alone or run together ("nullnull").
MISSING = re.compile(r"(?<![A-Za-z])(null|undefined|NaN)+(?![A-Za-z])")


def missing_shown(page: Any, selector: str) -> list[str]:
    """The element's text nodes (outside its JSON views) that hold a missing value written out."""
    texts = page.evaluate("""(sel) => {
        const out = [];
        const walk = document.createTreeWalker(document.querySelector(sel), NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) if (!n.parentElement.closest('pre.json')) out.push(n.data);
        return out;
    }""", selector)
    return [t for t in texts if MISSING.search(t)]


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    events = agent_session()
    events.append(bare_llm_call(events[-1].ts_ns + 500_000_000))
    s = serve(write(Path(tmp_path_factory.mktemp("bare")) / "bare.db", events))
    yield s
    s.thread.stop()


def test_llm_detail_of_every_call_shows_no_missing_value(bare_server, page):
    open_view(page, bare_server.url + "/llm", "llm")
    ids = page.evaluate("[...document.querySelectorAll('#llm-table tbody tr')].map(r => Number(r.dataset.id))")
    assert len(ids) == 5
    for cid in ids:
        page.click(f'#llm-table tbody tr[data-id="{cid}"]')
        wait_js(page, f"location.search === '?id={cid}' && document.getElementById('llm-prompt')"
                      f" && document.querySelector('#llm-table tr.sel').dataset.id === '{cid}'")
        assert missing_shown(page, "#llm-detail") == [], f"call {cid}"
    # The bare call itself: what it lacks reads as a dash or is left out.
    detail = page.inner_text("#llm-detail")
    assert "HTTP 502" in detail and "Say hi" in detail and "bad gateway" in detail
    assert "Tools offered" not in detail and "Notes" not in detail
    assert missing_shown(page, "#llm-table") == [] and missing_shown(page, "#llm-stats") == []
    assert not page.errors
    screenshot(page, "llm-bare-call")


def test_other_views_show_no_missing_value(bare_server, page):
    open_view(page, bare_server.url + "/processes", "processes")
    assert missing_shown(page, "#recmeta") == []  # no MCP calls in this recording
    wait_js(page, f"document.querySelector('#proc-detail h2')?.textContent.includes('{AGENT_PID}')")
    assert missing_shown(page, "#proc-detail") == []
    page.click('#proc-tree .node-row[data-pid="4302"]')  # pytest: no LLM calls, so no token tiles
    wait_js(page, "document.querySelector('#proc-detail h2')?.textContent.includes('4302')")
    assert missing_shown(page, "#proc-detail") == []
    open_view(page, bare_server.url + "/log", "log")
    page.fill("#log-search", "bad gateway")
    wait_js(page, "document.querySelectorAll('#log-list .lrow').length === 1")
    page.click("#log-list .lrow")
    wait_js(page, "document.querySelector('#log-detail mark')")
    assert missing_shown(page, "#view-log") == []
    assert not page.errors
