"""Fixtures for the web UI: a recorded session, a server over it, a browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsight.web.serve import ServerThread
from agentsight.web.server import WebServer
from tests.web.recording import agent_session, write

CHROMIUM = "/usr/bin/chromium"
TOKEN = "test-token-0123456789"   # every test server's; the browser context sends it on every request


def artifacts_dir() -> Path:
    """Where screenshots go (not committed): $AGENTSIGHT_ARTIFACTS/web or /tmp/agentsight-artifacts/web."""
    d = Path(os.environ.get("AGENTSIGHT_ARTIFACTS", "/tmp/agentsight-artifacts")) / "web"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def session_events() -> list[Any]:
    return agent_session()


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory, session_events: list[Any]) -> Path:
    return write(tmp_path_factory.mktemp("rec") / "session.db", session_events)


class Served:
    def __init__(self, thread: ServerThread) -> None:
        self.thread = thread
        self.server = thread.server
        self.url = thread.server.url.rstrip("/")
        self.token = thread.server.token


def serve(db: Path, **kw: Any) -> Served:
    kw.setdefault("host", "127.0.0.1")
    kw.setdefault("token", TOKEN)
    thread = ServerThread(WebServer(db, port=0, **kw))
    thread.start()
    return Served(thread)


@pytest.fixture(scope="session")
def server(recording: Path) -> Iterator[Served]:
    s = serve(recording)
    yield s
    s.thread.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; scripts/setup.sh does)")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses to run as root
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*args, "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, timezone_id="UTC",
                              extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "sourcemap" not in m.text.lower()
          and ".map" not in m.text else None)
    pg.errors = errors
    yield pg
    ctx.close()


def wait_js(page: Any, expr: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a JavaScript expression until truthy (page.evaluate is not held back by the page's CSP)."""
    end = time.monotonic() + timeout
    while True:
        value = page.evaluate(expr)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {expr}; "
                                 f"page errors: {getattr(page, 'errors', [])}")
        time.sleep(interval)


def open_view(page: Any, url: str, view: str) -> None:
    page.goto(url)
    wait_js(page, f"window.agentsight && window.agentsight.ready[{view!r}]", timeout=20)


def screenshot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def copy_artifact(src: Path, name: str) -> None:
    shutil.copy(src, artifacts_dir() / name)
