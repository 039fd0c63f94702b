"""The web server's JSON API and what it refuses (no browser)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentsight.actors.sinks.web import WebSink
from agentsight.pipeline.component import OptionError
from agentsight.pipeline.config import ConfigError, loads
from agentsight.web.guard import check_binding, is_loopback
from agentsight.web.server import WebServer
from tests.web.conftest import TOKEN, serve
from tests.web.recording import AGENT_PID, NEEDLE, lane_counts


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET with the test servers' token (unless ``headers`` brings its own Authorization)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            body = resp.read()
            status, hdrs = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        body, status, hdrs = exc.read(), exc.code, dict(exc.headers)
    ctype = hdrs.get("Content-Type", "")
    return status, hdrs, json.loads(body) if "json" in ctype else body


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def test_info_counts_and_time_range(server, session_events):
    status, _, info = get(server.url + "/api/info")
    assert status == 200
    assert info["counts"]["events"] == len(session_events)
    assert info["counts"]["llm_calls"] == 4
    assert info["start_ns"] == min(e.ts_ns for e in session_events)
    assert info["last_id"] == len(session_events)


def test_lanes_one_per_process_and_source_in_tree_order(server, session_events):
    _, _, body = get(server.url + "/api/lanes")
    lanes = body["lanes"]
    assert {(x["pid"], x["source"]): x["count"] for x in lanes} == dict(lane_counts(session_events))
    assert lanes[0]["pid"] == AGENT_PID and lanes[0]["source"] == "process"
    depth = {x["pid"]: x["depth"] for x in lanes}
    assert depth[AGENT_PID] == 0 and depth[4301] == 1 and depth[4302] == 2


def test_timeline_window_items_then_density_when_too_many(server, session_events, monkeypatch):
    _, _, body = get(server.url + "/api/timeline?width=1200")
    assert body["mode"] == "events" and len(body["items"]) == len(session_events)
    llm = [i for i in body["items"] if i["topic"] == "llm.call"]
    assert all(i["end_ns"] > i["start_ns"] for i in llm)  # drawn as spans
    monkeypatch.setattr("agentsight.web.timeline.MAX_ITEMS", 10)
    _, _, bins = get(server.url + "/api/timeline?width=1200")
    assert bins["mode"] == "bins"
    assert sum(sum(c) for c in bins["bins"].values()) == len(session_events)
    _, _, part = get(server.url + f"/api/timeline?width=1200&lanes={AGENT_PID}:llm,{AGENT_PID}:http")
    assert part["scope"] == "lanes" and part["mode"] == "events" and len(part["items"]) == 8


def test_timeline_filters(server):
    _, _, body = get(server.url + "/api/timeline?topics=file.&pids=4302")
    assert {i["topic"] for i in body["items"]} == {"file.open"} and {i["pid"] for i in body["items"]} == {4302}
    _, _, body = get(server.url + f"/api/timeline?text={NEEDLE}")
    assert len(body["items"]) == 1 and body["items"][0]["topic"] == "stdio.data"
    _, _, ov = get(server.url + "/api/overview?buckets=50&sources=llm")
    assert sum(sum(v) for v in ov["series"].values()) == 4 and ov["lane_counts"] == {f"{AGENT_PID}:llm": 4}


def test_events_paging_search_and_one_event(server, session_events):
    _, _, page1 = get(server.url + "/api/events?limit=50&total=1")
    assert len(page1["events"]) == 50 and page1["more"] and page1["total"] == len(session_events)
    _, _, page2 = get(server.url + f"/api/events?limit=50&after_id={page1['events'][-1]['id']}")
    assert len(page2["events"]) == len(session_events) - 50 and not page2["more"]
    _, _, found = get(server.url + f"/api/events?text={NEEDLE}&total=1")
    assert found["total"] == 1 and NEEDLE in json.dumps(found["events"][0]["data"])
    _, _, one = get(server.url + f"/api/events/{found['events'][0]['id']}")
    assert one["data"]["bytes"]["$bytes"].count(NEEDLE) == 1
    status, _, _ = get(server.url + "/api/events/99999")
    assert status == 404


def test_processes_and_llm_calls(server):
    _, _, body = get(server.url + "/api/processes")
    procs = {p["pid"]: p for p in body["processes"]}
    assert procs[AGENT_PID]["counts"]["llm_calls"] == 4 and procs[4302]["exit_code"] == 1
    _, _, detail = get(server.url + f"/api/processes/{AGENT_PID}")
    assert len(detail["llm_calls"]) == 4 and len(detail["children"]) == 4
    _, _, calls = get(server.url + "/api/llm/calls")
    assert [c["input_tokens"] for c in calls["calls"]] == [3120, 4410, 4980, 5230]
    _, _, call = get(server.url + f"/api/llm/calls/{calls['calls'][1]['id']}")
    assert call["data"]["messages"][0]["content"].startswith("The test test_parse_duration fails")
    assert call["data"]["output_text"].startswith("The parser treats minutes")


def test_bad_parameters_are_400(server):
    status, _, body = get(server.url + "/api/events?limit=lots")
    assert status == 400 and "limit" in body["error"]
    status, _, _ = get(server.url + "/api/timeline?lanes=nonsense")
    assert status == 400


def test_cross_origin_and_foreign_host_refused(server):
    port = server.server.port
    status, hdrs, _ = get(server.url + "/api/info", {"Origin": "http://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in hdrs
    assert get(server.url + "/api/info", {"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    assert get(server.url + "/api/info", {"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert get(server.url + "/api/info", {"Origin": "null"})[0] == 403
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    assert get(server.url + "/api/info", {"Host": f"evil.example:{port}"})[0] == 403
    status, hdrs, _ = get(server.url + "/timeline")
    assert status == 200 and "frame-ancestors 'none'" in hdrs["Content-Security-Policy"]


def test_token_required_when_set(recording):
    s = serve(recording, token="s3cret")
    try:
        assert get(s.url + "/api/info")[0] == 401
        assert get(s.url + "/api/info", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(s.url + "/api/info", {"Authorization": "Bearer s3cret"})[0] == 200
        status, hdrs, _ = get(s.url + "/timeline?token=s3cret")
        assert status == 303 and hdrs["Location"] == "/timeline"
        cookie = hdrs["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert get(s.url + "/api/info", {"Cookie": cookie.split(";")[0]})[0] == 200
        assert get(s.url + "/timeline?token=nope")[0] == 401
    finally:
        s.thread.stop()


def test_loopback_and_binding_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert check_binding("127.0.0.1", "") is None
    assert check_binding("0.0.0.0", "t") is None
    assert "without a token" in (check_binding("0.0.0.0", "") or "")


def test_web_sink_refuses_other_hosts_without_token():
    with pytest.raises(OptionError, match="without a token"):
        WebSink("web", {"host": "0.0.0.0"})
    problems = WebSink.check_options({"host": "0.0.0.0", "token": ""})
    assert problems and "without a token" in problems[0]
    with pytest.raises(ConfigError) as err:
        loads('[sources.g]\ntype = "generator"\n[sinks.w]\ntype = "web"\ninputs = ["g"]\nhost = "0.0.0.0"\n')
    assert any("without a token" in p.message for p in err.value.problems)


def test_web_sink_records_and_serves(tmp_path):
    from agentsight.event import Event
    from agentsight.web.guard import stored_token

    sink = WebSink("web", {"port": 0, "db": str(tmp_path / "w.db")})
    sink.open()
    auth = {"Authorization": f"Bearer {stored_token()}"}  # no token configured: the user's stored one
    try:
        sink.write([Event("gen.event", 1_000, "g", 1, 1, "x", {"n": 1})])
        assert get(sink.url + "api/info", {"Authorization": ""})[0] == 401  # any other local user
        status, _, info = get(sink.url + "api/info", auth)
        assert status == 200 and info["counts"]["events"] == 0  # written, not yet committed: not shown
        sink.flush()
        status, _, info = get(sink.url + "api/info", auth)
        assert status == 200 and info["counts"]["events"] == 1
        assert info["meta"]["web_url"] == sink.url
    finally:
        sink.close()
    assert (tmp_path / "w.db").exists()


def test_web_sink_private_db_removed_at_close():
    sink = WebSink("web", {"port": 0})
    sink.open()
    path = sink._private
    assert path is not None and path.exists()
    sink.close()
    assert not path.exists()


def test_serve_command_errors_are_one_line(tmp_path: Path, recording: Path):
    run = [sys.executable, "-m", "agentsight", "serve"]
    out = subprocess.run([*run, "--db", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such recording" in out.stderr
    out = subprocess.run([*run, "--db", str(recording), "--host", "0.0.0.0"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "without a token" in out.stderr and "Traceback" not in out.stderr


def test_a_token_is_always_required_and_the_generated_one_is_stored_owner_only(tmp_path, monkeypatch, recording):
    """Loopback is not private: without a token given, the server uses (and makes) the user's stored one."""
    import os
    import stat

    from agentsight.web.guard import TokenError, resolve_token, stored_token

    path = tmp_path / "cfg" / "web-token"
    monkeypatch.setenv("AGENTSIGHT_TOKEN_FILE", str(path))
    monkeypatch.delenv("AGENTSIGHT_TOKEN", raising=False)
    token = resolve_token("")
    assert len(token) >= 24 and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert resolve_token("") == token == stored_token()  # the same next time: bookmarks keep working
    monkeypatch.setenv("AGENTSIGHT_TOKEN", "from-the-env")  # kept out of `ps`
    assert resolve_token("") == "from-the-env" and resolve_token("given") == "given"
    os.chmod(path, 0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        stored_token()
    with pytest.raises(ValueError, match="needs a token"):
        WebServer(recording, host="127.0.0.1", port=0, token="")

    # `agentsight serve` prints the ready-to-open URL with the token, and only it opens the page.
    os.chmod(path, 0o600)
    monkeypatch.delenv("AGENTSIGHT_TOKEN")
    proc = subprocess.Popen([sys.executable, "-m", "agentsight", "serve", "--db", str(recording), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = line.split(" on ", 1)[1].split()[0]
        assert url.endswith(f"timeline?token={token}")
        base = url.split("timeline")[0]
        assert get(base + "api/info", {"Authorization": ""})[0] == 401
        status, hdrs, _ = get(url, {"Authorization": ""})
        assert status == 303 and "HttpOnly" in hdrs["Set-Cookie"]
    finally:
        proc.terminate()
        proc.wait(10)
