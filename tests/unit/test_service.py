"""`agentsight service`: the unit file (checked by systemd-analyze), install/uninstall into a tree, the pipeline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentsight.commands import service as cli_service
from agentsight.commands.app import app
from agentsight.commands.service import (
    UNIT_NAME,
    Layout,
    agentsight_command,
    collector_info,
    shipped_config,
    unit_text,
    with_db,
)
from agentsight.pipeline.config import load, loads

ROOT = Path(__file__).resolve().parents[2]
AGENTSIGHT = [sys.executable, "-m", "agentsight"]
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


# ---------------------------------------------------------------------------- the unit

@needs_analyze
@pytest.mark.parametrize("db", [None, Path("/srv/agent data/agents.db")])
def test_the_unit_passes_systemd_analyze_verify(tmp_path, db):
    unit = tmp_path / UNIT_NAME
    unit.write_text(unit_text(agentsight_command(), Path("/etc/agentsight/collector.toml"), db))
    r = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Unknown keys, bad values and missing executables are warnings verify still exits 0 on.
    ours = [line for line in r.stderr.splitlines() if UNIT_NAME in line]
    assert ours == [], r.stderr


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a missing ExecStart binary is an error."""
    unit = tmp_path / UNIT_NAME
    unit.write_text(unit_text([str(tmp_path / "no-such-agentsight")], Path("/etc/agentsight/collector.toml")))
    r = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    assert r.returncode != 0 and "no-such-agentsight" in r.stderr


@needs_analyze
def test_the_unit_is_hardened_without_taking_what_ebpf_needs(tmp_path):
    unit = tmp_path / UNIT_NAME
    text = unit_text(agentsight_command(), Path("/etc/agentsight/collector.toml"))
    unit.write_text(text)
    keys = unit_keys(text)
    assert keys["ExecStart"] == [" ".join(agentsight_command())
                                 + " service run --config /etc/agentsight/collector.toml"]
    assert keys["Restart"] == ["on-failure"] and keys["RestartPreventExitStatus"] == ["2"]
    assert keys["KillMode"] == ["mixed"]  # SIGTERM to the supervisor alone: it drains the actors in order
    assert keys["RuntimeDirectory"] == ["agentsight agentsight-clients"] and keys["RuntimeDirectoryMode"] == ["0700"]
    assert keys["RuntimeDirectoryPreserve"] == ["yes"]
    assert keys["StateDirectory"] == ["agentsight"] and keys["StateDirectoryMode"] == ["0700"]
    caps = set(keys["CapabilityBoundingSet"][0].split())
    assert {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"} <= caps
    assert not caps & {"CAP_NET_ADMIN", "CAP_SYS_MODULE", "CAP_SETUID", "CAP_CHOWN", "CAP_DAC_OVERRIDE"}
    # What would stop capture is left out: /sys writable (tracefs), /lib/modules visible (bcc's headers), all of /proc.
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectProc", "MemoryDenyWriteExecute",
                "PrivateNetwork", "PrivateUsers"):
        assert key not in keys, key
    denied = keys["SystemCallFilter"][0]
    assert denied.startswith("~") and not {"@privileged", "@debug", "@resources"} & set(denied[1:].split())
    assert keys["ProtectSystem"] == ["strict"] and keys["ProtectHome"] == ["read-only"]
    r = analyze("security", "--offline=yes", "--no-pager", str(unit), cwd=tmp_path)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    # A service with none of this scores 9.6 ("UNSAFE"); this one, 3.5 ("OK"), can do little
    # better as root with eBPF, and must not get worse unnoticed.
    assert float(m.group(1)) <= 4.0, r.stdout


def test_a_store_outside_the_state_dir_is_made_writable_and_odd_paths_are_quoted():
    text = unit_text(["/opt/agent sight/bin/agentsight"], Path("/etc/agentsight/my collector.toml"),
                     Path("/srv/agent data/agents.db"))
    keys = unit_keys(text)
    assert keys["ExecStart"] == ['"/opt/agent sight/bin/agentsight" service run --config '
                                 '"/etc/agentsight/my collector.toml" --db "/srv/agent data/agents.db"']
    assert keys["ReadWritePaths"] == ['"/srv/agent data"']
    assert "ReadWritePaths" not in unit_keys(unit_text(["/a"], Path("/c.toml"), Path("/var/lib/agentsight/x.db")))


def test_exec_start_is_this_installation():
    cmd = agentsight_command()
    assert Path(cmd[0]).parent == Path(sys.executable).parent
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("agentsight ")


# ---------------------------------------------------------------------------- the pipeline

def test_the_shipped_collector_is_agents_toml_with_a_home_of_its_own():
    path = shipped_config()
    assert path == ROOT / "config" / "collector.toml" or path.name == "collector.toml"
    spec, agents = load(path), load(ROOT / "config" / "agents.toml")
    assert spec.name == "collector"
    # Every agent on the machine: the sources and the analysis chain of agents.toml, plus a stdio
    # source that follows only the trees clients ask for (it starts with no process), whose pipes
    # the sessions stage takes in.
    sources = {c.name: c for c in spec.of_kind("source")}
    stdio = sources.pop("stdio")
    assert stdio.type == "stdio" and stdio.options["follow"] is True and "pid" not in stdio.options
    assert sources == {c.name: c for c in agents.of_kind("source")}
    analyzers = {c.name: c for c in spec.of_kind("analyzer")}
    assert analyzers["sessions"].inputs == [*agents.components["sessions"].inputs, "stdio"]
    analyzers["sessions"] = agents.components["sessions"]
    assert analyzers == {c.name: c for c in agents.of_kind("analyzer")}
    sinks = {c.name: c for c in spec.of_kind("sink")}
    store = sinks["store"]
    assert store.type == "sqlite" and store.inputs == ["redact"]
    assert store.options["path"] == "/var/lib/agentsight/agents.db"
    assert store.options["max_mb"] > 0 and store.options["max_age_h"] > 0
    web = sinks["web"]
    assert web.type == "web" and web.inputs == ["redact"]
    assert web.options["db"] == store.options["path"] and web.options["write"] is False
    assert web.options.get("port", 7395) == 7395 and web.options.get("host", "127.0.0.1") == "127.0.0.1"
    text = path.read_text()
    assert "# [sinks.otel]" in text and "otel" not in sinks
    # The clients sink (record/top/debug through the collector), once this agentsight has it.
    from agentsight.pipeline.registry import TYPES

    assert ("clients" in sinks) == ("clients" in TYPES["sink"] and "\n[sinks.clients]" in text)
    if "clients" in sinks:
        assert sinks["clients"].inputs == ["redact"]


def test_the_shipped_pipelines_are_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"]["agentsight.pipelines"] == "config"
    assert "agentsight.pipelines" in project["packages"]
    assert "*.toml" in project["package-data"]["agentsight.pipelines"]


def test_db_moves_the_store_and_the_web_ui_with_it(tmp_path):
    spec = with_db(load(shipped_config()), tmp_path / "s.db")
    sinks = {c.name: c.options for c in spec.of_kind("sink")}
    assert sinks["store"]["path"] == sinks["web"]["db"] == str(tmp_path / "s.db")
    two = loads("""
[sources.g]
type = "generator"
[sinks.a]
type = "sqlite"
inputs = ["g"]
path = "a.db"
[sinks.b]
type = "sqlite"
inputs = ["g"]
path = "b.db"
""")
    with pytest.raises(ValueError, match="exactly one sqlite sink"):
        with_db(two, tmp_path / "s.db")


def test_what_status_is_told_of_the_pipeline(tmp_path):
    info = collector_info(load(shipped_config()), Path("/etc/agentsight/collector.toml"), tmp_path / "tok")
    assert info["store"] == "/var/lib/agentsight/agents.db" and info["max_mb"] == 1024
    assert info["web_url"] == "http://127.0.0.1:7395/timeline" and info["token_file"] == str(tmp_path / "tok")


# ---------------------------------------------------------------------------- install / uninstall

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENTSIGHT, "service", *args], capture_output=True, text=True, timeout=120)


def test_install_and_uninstall_into_a_tree_leave_the_real_etc_alone(tmp_path):
    real_unit = Path("/etc/systemd/system") / UNIT_NAME
    before = real_unit.exists()
    tree = tmp_path / "root"
    r = run("install", "--root", str(tree))
    assert r.returncode == 0, r.stderr
    unit = tree / "etc/systemd/system" / UNIT_NAME
    config = tree / "etc/agentsight/collector.toml"
    assert unit.is_file() and config.read_bytes() == shipped_config().read_bytes()
    assert unit.stat().st_mode & 0o777 == 0o644
    # The unit names the paths of the machine the tree becomes, never the tree's.
    assert "--config /etc/agentsight/collector.toml" in unit.read_text() and str(tree) not in unit.read_text()
    if shutil.which("systemctl"):  # enabled offline, as systemctl --root does for an image
        wants = tree / "etc/systemd/system/multi-user.target.wants" / UNIT_NAME
        assert wants.is_symlink() and os.readlink(wants) == f"/etc/systemd/system/{UNIT_NAME}"
        assert "enabled" in r.stdout
    st = run("status", "--root", str(tree), "--runtime-dir", str(tmp_path / "no-collector"))
    assert st.returncode == 3, st.stdout + st.stderr  # installed, but no collector runs
    assert f"unit: {unit} (enabled" in st.stdout and "collector: not running" in st.stdout

    # An edited config is kept by a second install and by uninstall; the data stays too.
    config.write_text(config.read_text().replace("max_mb = 1024", "max_mb = 64"))
    r = run("install", "--root", str(tree))
    assert r.returncode == 0 and "(yours, kept)" in r.stdout and "max_mb = 64" in config.read_text()
    state = tree / "var/lib/agentsight"
    state.mkdir(parents=True)
    (state / "agents.db").write_bytes(b"data")
    r = run("uninstall", "--root", str(tree))
    assert r.returncode == 0, r.stderr
    assert not unit.exists() and not (tree / "etc/systemd/system/multi-user.target.wants" / UNIT_NAME).exists()
    assert config.exists() and (state / "agents.db").exists()
    assert "kept" in r.stdout and "--purge" in r.stdout
    r = run("uninstall", "--root", str(tree), "--purge")
    assert r.returncode == 0 and not config.exists() and not state.exists()
    assert real_unit.exists() == before


def test_an_unchanged_config_goes_with_uninstall_and_a_broken_one_stops_install(tmp_path):
    tree = tmp_path / "root"
    assert run("install", "--root", str(tree)).returncode == 0
    assert run("uninstall", "--root", str(tree)).returncode == 0
    assert not (tree / "etc/agentsight").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[sinks.x]\ntype = "nope"\n')
    r = run("install", "--root", str(tree), "--config", str(bad))
    assert r.returncode == 2 and "problem" in r.stderr
    assert not (tree / "etc/systemd/system" / UNIT_NAME).exists()


def test_install_starts_the_service_when_systemd_runs(tmp_path, monkeypatch):
    """PID 1 is not systemd here: its branch runs with systemctl stood in for, files kept under tmp_path."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(cli_service, "systemd_running", lambda: True)
    tree = tmp_path / "tree"
    monkeypatch.setattr(Layout, "at", lambda self, p: tree / p.relative_to("/"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    runner = CliRunner()
    r = runner.invoke(app, ["service", "install"])
    assert r.exit_code == 0, r.output
    assert calls.read_text().splitlines() == ["daemon-reload", f"enable --now {UNIT_NAME}"]
    assert (tree / "etc/systemd/system" / UNIT_NAME).is_file() and "started and enabled" in r.output
    calls.unlink()
    r = runner.invoke(app, ["service", "uninstall"])
    assert r.exit_code == 0, r.output
    assert calls.read_text().splitlines() == [f"disable --now {UNIT_NAME}", "daemon-reload"]
    assert not (tree / "etc/systemd/system" / UNIT_NAME).exists()


def test_without_systemd_install_says_how_to_run_it_in_the_foreground(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_service, "systemd_running", lambda: False)
    monkeypatch.setattr(cli_service, "_systemctl", lambda layout, *args: None)
    tree = tmp_path / "tree"
    monkeypatch.setattr(Layout, "at", lambda self, p: tree / p.relative_to("/"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    r = CliRunner().invoke(app, ["service", "install"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("systemd is not running here"))
    assert "agentsight service run" in line


def test_install_on_the_machine_needs_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    r = CliRunner().invoke(app, ["service", "install"])
    assert r.exit_code == 2 and "needs root" in r.output


def test_status_as_another_user_says_only_root_can_ask(tmp_path, monkeypatch):
    """The machine's collector runs as root in /run/agentsight (0700): a user is told to ask as root."""
    root_runs = tmp_path / "run-agentsight"
    root_runs.mkdir(mode=0o700)
    monkeypatch.setattr(cli_service, "ROOT_RUN_DIR", root_runs)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # what a user sees of root's 0700 directory
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    r = CliRunner().invoke(app, ["service", "status", "--root", str(tmp_path / "tree")])
    assert r.exit_code == 4, r.output
    assert "only root can ask the machine's collector" in r.output and "sudo agentsight service status" in r.output
