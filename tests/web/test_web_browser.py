"""The page in a real browser (Playwright driving Debian's chromium) over a recorded session.

Each test leaves a screenshot of its view in $AGENTSIGHT_ARTIFACTS/web (or
/tmp/agentsight-artifacts/web).
"""

from __future__ import annotations

import json

from tests.web.conftest import open_view, screenshot, wait_js
from tests.web.recording import AGENT_PID, NEEDLE, USER_TASK, lane_counts


def test_timeline_shows_every_event_in_its_lane(server, session_events, page):
    open_view(page, server.url + "/timeline", "timeline")
    expected = {f"{pid}:{source}": n for (pid, source), n in lane_counts(session_events).items()}
    shown = wait_js(page, """(() => {
        const out = {};
        for (const el of document.querySelectorAll('#tl .vis-item .ev-body[data-lane]'))
            out[el.dataset.lane] = (out[el.dataset.lane] || 0) + 1;
        return Object.keys(out).length ? out : null;
    })()""")
    assert shown == expected
    labels = page.evaluate("""Object.fromEntries([...document.querySelectorAll('#tl .vis-label .lane')]
        .map(e => [e.dataset.lane, Number(e.querySelector('.cnt').dataset.count)]))""")
    assert labels == expected
    # The agent's lanes come first, in process-tree order.
    first = page.evaluate("document.querySelector('#tl .vis-label .lane').dataset.lane")
    assert first == f"{AGENT_PID}:process"
    assert page.locator("#tl-overview canvas").count() == 1
    assert not page.errors
    screenshot(page, "timeline")


def test_timeline_filters_and_event_detail(server, page):
    open_view(page, server.url + "/timeline", "timeline")
    page.fill("#tl-search", "pyproject.toml")  # one file.open
    wait_js(page, "document.querySelectorAll('#tl .vis-item .ev-body').length === 1")
    assert page.inner_text("#tl .vis-item .ev-body") == "file.openopen /home/dev/project/pyproject.toml"
    # Lanes without a match are hidden, the lane with one says how many of its events match.
    assert page.evaluate("document.querySelectorAll('#tl .vis-label .lane').length") == 1
    assert page.inner_text("#tl .vis-label .lane .cnt") == "1 / 6"
    page.fill("#tl-search", "")
    wait_js(page, "document.querySelectorAll('#tl .vis-item .ev-body').length > 60")
    page.click('#tl .vis-item .ev-body[data-lane="4242:llm"]')
    wait_js(page, "!document.getElementById('tl-detail').hidden")
    assert "llm.call" in page.inner_text("#tl-detail") and "claude-sonnet-4-5" in page.inner_text("#tl-detail")
    screenshot(page, "timeline-detail")


def test_process_tree_shows_the_agent_and_its_tools(server, page):
    open_view(page, server.url + "/processes", "processes")
    rows = page.evaluate("""[...document.querySelectorAll('#proc-tree .node-row')]
        .map(r => [Number(r.dataset.pid), r.dataset.comm, r.style.paddingLeft])""")
    pids = [r[0] for r in rows]
    assert pids[0] == AGENT_PID and rows[0][1] == "claude"
    assert {r[1] for r in rows} >= {"claude", "bash", "pytest", "rg", "node", "git"}
    assert pids.index(4302) == pids.index(4301) + 1  # pytest under the bash that ran it
    failing = page.locator('#proc-tree .node-row[data-pid="4302"] [data-exit]').inner_text()
    assert failing == "exit 1"
    assert page.locator('#proc-tree .act-row[data-call]').count() == 4  # the agent's LLM calls under it
    detail = page.inner_text("#proc-detail")
    assert USER_TASK in detail and "tool runs" in detail.lower() and "/home/dev/project/CLAUDE.md" in detail
    page.click('#proc-tree .act-row[data-list="files"][data-pid="4302"]')
    wait_js(page, "document.body.innerText.includes('/home/dev/project/pyproject.toml')")
    screenshot(page, "processes")


def test_clicking_an_llm_call_shows_prompt_and_answer(server, page):
    open_view(page, server.url + "/llm", "llm")
    assert page.locator("#llm-table tbody tr").count() == 4
    page.click("#llm-table tbody tr:nth-child(2)")
    wait_js(page, "document.getElementById('llm-detail').innerText.includes('4,410')")
    detail = page.inner_text("#llm-detail")
    assert USER_TASK in detail  # the prompt's first user message
    assert "You are Claude Code" in detail  # the system prompt
    assert "The parser treats minutes as seconds" in page.inner_text("#llm-answer")  # the answer
    assert "FAILED tests/test_duration.py" in detail  # a tool result in the prompt
    assert "Read" in detail and "420 ms" not in detail and "457 ms" in detail  # tool call, this call's TTFT
    assert page.locator("#llm-chart canvas").count() >= 1
    assert "17.7k" in page.inner_text("#llm-stats")
    screenshot(page, "llm")


def test_log_search_finds_the_event(server, page):
    open_view(page, server.url + "/log", "log")
    wait_js(page, "document.querySelectorAll('#log-list .lrow').length > 20")
    page.fill("#log-search", NEEDLE)
    wait_js(page, "document.querySelectorAll('#log-list .lrow').length === 1")
    assert page.inner_text("#log-count").startswith("1 matching")
    page.click("#log-list .lrow")
    wait_js(page, "document.querySelector('#log-detail mark')")
    assert page.inner_text("#log-detail mark") == NEEDLE
    shown = json.loads(page.evaluate("document.querySelector('#log-detail pre').textContent"))
    assert shown["topic"] == "stdio.data" and shown["pid"] == 4320
    screenshot(page, "log")


def test_deep_links_between_views(server, page):
    open_view(page, server.url + "/log", "log")
    page.fill("#log-search", "llm.call")
    wait_js(page, "document.querySelectorAll('#log-list .lrow').length === 4")
    page.click("#log-list .lrow:nth-child(2)")  # spacer is the first child
    page.click("text=Open LLM call")
    wait_js(page, "location.pathname === '/llm' && document.getElementById('llm-answer')")
    assert "I'll run the test suite" in page.inner_text("#llm-answer")
