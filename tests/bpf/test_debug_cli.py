"""`agentsight debug ssl|process|stdio|system|trace` as a user runs them: real eBPF, real clients.

Each test starts the command, waits until its pipeline runs, does something known, stops it
with Ctrl-C (SIGINT) and checks what it printed (JSON lines on a pipe) and what it logged.
Together they pass every flag the seed documents.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bpf.test_ssl_capture import Server, cert, server  # noqa: F401  (fixtures)
from tests.conftest import AGENTSIGHT, read_jsonl, wait_for

pytestmark = pytest.mark.bpf

TOKEN = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"


class Debug:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.err_path = workdir / f"debug-{time.monotonic_ns()}.err"
        self.out_path = self.err_path.with_suffix(".out")
        self.proc = subprocess.Popen([*AGENTSIGHT, "debug", args[0], "--runtime-dir", str(workdir / "run"), *args[1:]],
                                     stdout=open(self.out_path, "w"), stderr=open(self.err_path, "w"), text=True)
        wait_for(lambda: "running:" in self.stderr() or self.proc.poll() is not None, 90, what="debug running")
        assert self.proc.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def rows(self) -> list[dict[str, Any]]:
        """What it printed so far (complete lines)."""
        return read_jsonl(self.out_path)

    def stop(self) -> tuple[int, list[dict[str, Any]]]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        return code, [json.loads(line) for line in self.out_path.read_text().splitlines() if line.strip()]


@pytest.fixture
def debug(workdir: Path) -> Iterator[Any]:
    made: list[Debug] = []

    def start(*args: str) -> Debug:
        d = Debug(workdir, *args)
        made.append(d)
        return d

    yield start
    for d in made:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def curl(crt: Path, port: int, path: str, *extra: str) -> None:
    subprocess.run(["curl", "-sS", "--cacert", str(crt), f"https://127.0.0.1:{port}{path}", "-o", "/dev/null",
                    *extra], check=True, timeout=30)


def topics(rows: list[dict[str, Any]]) -> list[str]:
    return [r["topic"] for r in rows]


def test_debug_ssl_with_parser_filters_and_log(debug, workdir, server, cert):  # noqa: F811
    log = workdir / "ssl.jsonl"
    d = debug("ssl", "-c", "curl", "--http-parser", "--sse-merge", "--http-raw-data",
              "--http-filter", "GET /health", "--ssl-filter", "data.type=binary", "--ssl-uid", str(os.getuid()),
              "--ssl-handshake", "--log-file", str(log), "--json", "--", "--max-bytes", "65536")
    curl(cert[0], server.port, "/size/100", "-H", f"Authorization: Bearer {TOKEN}")
    curl(cert[0], server.port, "/health")
    # Every byte the server sent was read by curl and printed as ssl.data (--http-raw-data): the http
    # stage emits each record before what it completes, so both exchanges went by the filter too.
    sent = sum(len(out) for _, out in server.transcripts())
    wait_for(lambda: sum(r["data"]["len"] for r in d.rows() if r["topic"] == "ssl.data" and r["data"]["dir"] == "read")
             == sent, 30, what="every response byte through the http stage")
    code, rows = d.stop()
    assert code == 0, d.stderr()
    exchanges = [r["data"] for r in rows if r["topic"] == "http.exchange"]
    assert [x["request"]["path"] for x in exchanges] == ["/size/100"]  # /health filtered out
    assert exchanges[0]["response"]["body_size"] == 100
    assert "ssl.data" in topics(rows) and "ssl.handshake" in topics(rows)
    assert all(r["comm"] == "curl" for r in rows if r["topic"] == "ssl.data")
    assert TOKEN not in d.out_path.read_text() and "[REDACTED" in d.out_path.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert topics(read_jsonl(log)) == topics(rows)
    assert "no events lost" in d.stderr()


def test_debug_ssl_disable_auth_removal_keeps_credentials_and_quiet_prints_nothing(debug, workdir, server,  # noqa: F811
                                                                                   cert):  # noqa: F811
    log = workdir / "raw.jsonl"
    d = debug("ssl", "-c", "curl", "--disable-auth-removal", "--quiet", "--log-file", str(log))
    curl(cert[0], server.port, "/size/10", "-H", f"Authorization: Bearer {TOKEN}")
    wait_for(lambda: log.exists() and TOKEN in log.read_text(), 10, what="the raw capture in the log")
    code, rows = d.stop()
    assert code == 0 and rows == []


def test_debug_process_mode_duration_comm(debug, workdir):
    d = debug("process", "-c", "sh", "--mode", "2", "--duration", "0", "--json")
    subprocess.run(["sh", "-c", "sleep 0.2; cat /etc/hostname > /dev/null; exit 3"], timeout=10)
    subprocess.run(["true"], timeout=10)  # not sh, not under sh: mode 2 leaves it out
    subprocess.run(["sh", "-c", "exit 7"], timeout=10)  # after it: once this exit is out, so would true's exec be
    wait_for(lambda: any(r["topic"] == "process.exit" and r["data"]["exit_code"] == 7 for r in d.rows()), 30,
             what="the last sh's exit")
    code, rows = d.stop()
    assert code == 0, d.stderr()
    exits = [r for r in rows if r["topic"] == "process.exit" and r["comm"] == "sh"]
    assert any(r["data"]["exit_code"] == 3 for r in exits)
    assert any(r["data"]["path"] == "/etc/hostname" for r in rows if r["topic"] == "file.open")
    assert not any(r["data"].get("filename") == "/usr/bin/true" for r in rows if r["topic"] == "process.exec")


def test_debug_process_mode_1_has_no_files_and_duration_hides_short_lives(debug):
    d = debug("process", "-c", "sh", "--mode", "1", "--duration", "400", "--json")
    subprocess.run(["sh", "-c", "cat /etc/hostname > /dev/null; exit 4"], timeout=10)
    subprocess.run(["sh", "-c", "sleep 0.6; exit 5"], timeout=10)  # lives past --duration 400
    wait_for(lambda: any(r["topic"] == "process.exit" and r["data"]["exit_code"] == 5 for r in d.rows()), 30,
             what="the long-lived sh's exit")
    code, rows = d.stop()
    assert code == 0
    assert not [r for r in rows if r["topic"] == "file.open"]
    codes = [r["data"]["exit_code"] for r in rows if r["topic"] == "process.exit" and r["comm"] == "sh"]
    assert 5 in codes and 4 not in codes


def test_debug_stdio_of_a_pid(debug):
    # The child reads stdin only once told the capture runs (SIGUSR1): a read already waiting in the
    # kernel when the probes attach would be seen without its start.
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal,sys\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
                              "print('waiting', flush=True)\nsignal.sigwait({signal.SIGUSR1})\n"
                              "line=sys.stdin.readline()\n"
                              "sys.stdout.write('got:'+line)\nsys.stdout.flush()\n"
                              "open('/dev/null','w').write('x'*100)\n"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "waiting\n"
        d = debug("stdio", "-p", str(child.pid), "--stdio-uid", str(os.getuid()), "--stdio-all-fds",
                  "--stdio-max-bytes", "64", "--json")
        child.send_signal(signal.SIGUSR1)
        out, _ = child.communicate('{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n', timeout=20)
        # Its last act, the write to /dev/null, is out: everything before it is too.
        wait_for(lambda: any(r["topic"] == "stdio.data" and r["data"]["dir"] == "write" and r["data"]["fd"] > 2
                             for r in d.rows()), 30, what="the child's last write captured")
        code, rows = d.stop()
    finally:
        child.kill()
    assert code == 0 and out.startswith("got:")
    data = [r["data"] for r in rows if r["topic"] == "stdio.data"]
    reads = [x for x in data if x["dir"] == "read" and x["fd"] == 0]
    assert reads and reads[0]["bytes"] == {"$bytes": '{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n'}
    writes = [x for x in data if x["dir"] == "write"]
    assert any(x["fd"] == 1 and x["bytes"]["$bytes"].startswith("got:") for x in writes)
    big = [x for x in writes if x["fd"] > 2]  # --stdio-all-fds: the write to /dev/null too, cut at 64
    assert big and big[0]["len"] == 100 and big[0]["truncated"] and len(big[0]["bytes"]["$bytes"]) == 64


def test_debug_system_samples_and_alerts(debug):
    busy = subprocess.Popen([sys.executable, "-c", "x=bytearray(40<<20)\nwhile True: pass"])
    try:
        d = debug("system", "-p", str(busy.pid), "--interval", "0.2", "--cpu-threshold", "20",
                  "--memory-threshold", "10", "--json")
        def alerted() -> bool:
            rows = d.rows()
            samples = [r for r in rows if r["topic"] == "system.sample" and r["data"]["rss_bytes"] > 40 << 20]
            return len(samples) >= 5 and {r["data"]["metric"] for r in rows if r["topic"] == "system.alert"} >= \
                {"cpu_percent", "rss_mb"}
        wait_for(alerted, 30, what="five samples of the loaded process and both alerts")
        code, rows = d.stop()
    finally:
        busy.kill()
    assert code == 0
    samples = [r["data"] for r in rows if r["topic"] == "system.sample"]
    assert len(samples) >= 5 and samples[-1]["rss_bytes"] > 40 << 20
    alerts = {r["data"]["metric"] for r in rows if r["topic"] == "system.alert"}
    assert alerts == {"cpu_percent", "rss_mb"}, alerts


def test_debug_trace_with_sources_switched(debug, workdir, server, cert):  # noqa: F811
    d = debug("trace", "-c", "curl", "--no-process", "--system", "--no-stdio", "--ssl", "--interval", "0.5",
              "--json")
    curl(cert[0], server.port, "/size/20")
    wait_for(lambda: {"http.exchange", "system.sample"} <= set(topics(d.rows())), 30, what="an exchange and a sample")
    code, rows = d.stop()
    assert code == 0, d.stderr()
    t = set(topics(rows))
    assert "http.exchange" in t and "system.sample" in t and "process.exec" not in t


def test_options_after_dashdash_are_checked_against_the_source(workdir):
    r = subprocess.run([*AGENTSIGHT, "debug", "ssl", "--", "--port", "443"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "has no option --port" in r.stderr


def test_debug_with_server_serves_the_web_ui_live(debug):
    import json
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = debug("process", "-c", "sh", "--quiet", "--server", "--server-port", str(port))
    from agentsight.web.guard import stored_token

    token = stored_token()  # the web UI always needs one: the user's stored token here

    def served_execs() -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/events?topics=process.exec",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return len(json.loads(r.read())["events"])
        except OSError:
            return 0

    subprocess.run(["sh", "-c", "exit 0"], timeout=10)
    wait_for(lambda: served_execs() >= 1, 15, what="the exec in the web UI")
    code, rows = d.stop()
    assert code == 0 and rows == []  # --quiet: nothing on the console
