"""The shipped collector, for real (root): `agentsight service run` with only the unit's capabilities.

It runs under ``setpriv`` with the capability bounding set and no_new_privs of the systemd
unit `service install` writes, so the unit's restriction is tested against real capture:
the eBPF sources start, uprobes attach, tracepoints report a process, the web UI serves
the store, ``service status`` answers, and SIGTERM ends it cleanly.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentsight.commands.service import agentsight_command, shipped_config, unit_text
from agentsight.kernel.tlslibs import system_library_paths
from agentsight.recording.store import Store, StoreError
from agentsight.runtime.collector import Client
from tests.conftest import wait_for

AGENTSIGHT = [sys.executable, "-m", "agentsight"]
CAP_BITS = {"dac_read_search": 2, "sys_ptrace": 19, "sys_admin": 21, "sys_resource": 24, "perfmon": 38, "bpf": 39}


def unit_capabilities() -> list[str]:
    text = unit_text(agentsight_command(), Path("/etc/agentsight/collector.toml"))
    line = next(x for x in text.splitlines() if x.startswith("CapabilityBoundingSet="))
    return [c.removeprefix("CAP_").lower() for c in line.split("=", 1)[1].split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(run_dir: Path) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([*AGENTSIGHT, "service", "status", "--json", "--runtime-dir", str(run_dir)],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, json.loads(r.stdout)


def processes_with(db: Path, marker: str) -> list[dict[str, Any]]:
    try:
        with Store(db, readonly=True) as s:
            return [p for p in s.processes() if marker in " ".join(p["argv"])]
    except StoreError:
        return []


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv (util-linux) here")
def test_the_shipped_collector_runs_with_the_units_capabilities(workdir):
    libs = system_library_paths()
    if not libs:
        pytest.skip("no system libssl to probe")
    libssl = libs[0]
    # A private copy of libssl: its own inode, so no other tracer on this machine has probes there.
    probe_me = workdir / "libssl-copy.so"
    shutil.copy(libssl, probe_me)
    port = free_port()
    config = workdir / "collector.toml"
    text = shipped_config().read_text()
    text = text.replace('[sources.ssl]\ntype = "ssl"', f'[sources.ssl]\ntype = "ssl"\nbinary_path = ["{probe_me}"]')
    text = text.replace("show_token = false", f"show_token = false\nport = {port}")
    sock = workdir / "collector.sock"
    text = text.replace('[sinks.clients]\ntype = "clients"', f'[sinks.clients]\ntype = "clients"\nsocket = "{sock}"')
    assert f"port = {port}" in text and str(probe_me) in text and str(sock) in text
    config.write_text(text)
    db = workdir / "agents.db"
    run_dir = workdir / "run"
    caps = ",".join(["-all", *(f"+{c}" for c in unit_capabilities())])
    err = open(workdir / "stderr.log", "w")
    proc = subprocess.Popen(["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", "--no-new-privs", "--",
                             *AGENTSIGHT, "service", "run", "--config", str(config), "--db", str(db),
                             "--runtime-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        def all_running() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError((workdir / "stderr.log").read_text())
            code, out = status(run_dir)
            c = out["collector"]
            return c if code == 0 and all(i["state"] == "running" for i in c["instances"]) else None

        c = wait_for(all_running, 120, interval=0.5, what="every actor of the collector running")
        # The restriction holds: the collector and its actors have the unit's capabilities, no more.
        allowed = sum(1 << CAP_BITS[name] for name in unit_capabilities())
        for pid in [proc.pid, *(i["pid"] for i in c["instances"])]:
            status_text = Path(f"/proc/{pid}/status").read_text()
            eff = int(next(x for x in status_text.splitlines() if x.startswith("CapEff:")).split()[1], 16)
            assert eff and eff & ~allowed == 0, (pid, hex(eff))
        assert c["pid"] == proc.pid and c["pipeline"] == "collector" and c["store"] == str(db)
        ssl = next(i for i in c["instances"] if i["id"] == "sources/ssl")
        assert ssl["stats"].get("attached", 0) >= 1, ssl  # uprobes on the private libssl copy
        # The process source sees a process started now, and the store has it.
        marker = f"svc-{uuid.uuid4().hex[:8]}"
        subprocess.run(["/bin/sh", "-c", f"exit 0 # {marker}"], check=True)
        rows = wait_for(lambda: processes_with(db, marker), 30, interval=0.2, what="the marked process recorded")
        assert rows[0]["exit_code"] == 0 or rows[0]["end_ns"] is None
        # The web UI serves the same store, with the token status shows (root reads it).
        url = c["web_url"]
        assert url.startswith(f"http://127.0.0.1:{port}/timeline?token=")
        token = url.split("token=", 1)[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/info", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            info = json.loads(resp.read())
        assert info["file"] == db.name and info["counts"]["processes"] >= 1
        # Its clients (record, top, debug) reach it on the clients sink's socket.
        with Client(str(sock)) as client:
            hello = client.info()
            assert hello["socket"] == str(sock) and hello["uid"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (workdir / "stderr.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    log = (workdir / "stderr.log").read_text()
    assert "pipeline 'collector' running" in log and "no events lost" in log
    assert "token=" not in log  # the service's output goes to a log others may read
    code, out = status(run_dir)
    assert code == 3 and out["collector"]["running"] is False
