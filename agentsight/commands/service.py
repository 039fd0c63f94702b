"""`agentsight service run|install|uninstall|status`: the always-on collector.

One collector per machine: the shipped pipeline ``config/collector.toml`` (every agent on
the machine, one SQLite store with retention under /var/lib/agentsight, the web UI on
127.0.0.1:7395), run by the same :class:`~agentsight.runtime.supervisor.Supervisor` as
``agentsight run``, under the pipeline name ``collector`` (runtime dir
/run/agentsight/collector).

- ``run``: the collector in the foreground (what the systemd unit starts; where PID 1 is
  not systemd, the way to run it at all).
- ``install``: the config to /etc/agentsight/collector.toml (an edited one is kept), the
  unit to /etc/systemd/system/agentsight.service, then ``systemctl daemon-reload`` and
  ``enable --now`` when systemd runs. ``--root DIR`` installs into a tree instead of /
  (an image, a test): nothing is started, ``systemctl --root`` only enables.
- ``uninstall``: the reverse; the store and the token stay unless ``--purge``.
- ``status``: the unit (installed, enabled, active) and the collector itself, asked on its
  status socket: pid, uptime, actors, store path and size, web UI URL.

While it runs, the collector keeps ``<run dir>/service.json`` (root only, like the run dir):
the config, store and web UI it uses, which ``status`` reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from agentsight.commands.common import app, fail, load_config, need_bpf

__all__ = ["service_app", "unit_text", "shipped_config", "with_db", "collector_info", "web_binding", "Layout",
           "UNIT_NAME"]

service_app = typer.Typer(help="The always-on collector: every agent on this machine, as a systemd service "
                          "or in the foreground.", no_args_is_help=True)
app.add_typer(service_app, name="service")

UNIT_NAME = "agentsight.service"
PIPELINE = "collector"
SERVICE_FILE = "service.json"   # in the run dir, while the collector runs
ROOT_RUN_DIR = Path("/run/agentsight")  # root's runtime dirs: the machine's collector's is in there


@dataclass(frozen=True)
class Layout:
    """Where an installed collector's files live, under ``root`` (/ for the real machine).

    The paths named inside the unit and the config are the ones under /: a tree
    installed with ``--root`` is meant to become a machine's /.
    """

    root: Path = Path("/")
    unit_dir: Path = Path("/etc/systemd/system")
    config_dir: Path = Path("/etc/agentsight")
    state_dir: Path = Path("/var/lib/agentsight")

    def at(self, path: Path) -> Path:
        """``path`` (absolute) as a file in this tree."""
        return self.root / path.relative_to("/")

    @property
    def unit(self) -> Path:
        return self.unit_dir / UNIT_NAME

    @property
    def config(self) -> Path:
        return self.config_dir / "collector.toml"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "web-token"


MACHINE = Layout()


def shipped_config() -> Path:
    """The collector pipeline this agentsight ships: package data, or the checkout's config/."""
    try:
        path = Path(str(resources.files("agentsight.pipelines") / "collector.toml"))
        if path.is_file():
            return path
    except ModuleNotFoundError:  # an editable install made before config/ became package data
        pass
    return Path(__file__).resolve().parents[2] / "config" / "collector.toml"


def default_config() -> Path:
    """What `service run` runs without --config: the installed copy, else the shipped file."""
    return MACHINE.config if MACHINE.config.is_file() else shipped_config()


def agentsight_command() -> list[str]:
    """This installation's agentsight: its console script beside the Python running now, else ``python -m``.

    The interpreter's path is kept as it is (a virtualenv's ``bin/python`` is a symlink
    whose own location says which virtualenv).
    """
    script = Path(sys.executable).parent / "agentsight"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "agentsight"]


def systemd_running() -> bool:
    """Whether PID 1 is systemd (sd_booted(3): the directory it makes at boot)."""
    return Path("/run/systemd/system").is_dir()


# ---------------------------------------------------------------------------- the unit

def unit_text(command: list[str], config: Path, db: Path | None = None) -> str:
    """The systemd unit running ``command service run --config CONFIG [--db DB]``.

    ``db`` outside the state directory is made writable (ProtectSystem=strict makes the
    rest of the file system read-only).
    """
    exec_start = " ".join(_quote(a) for a in [*command, "service", "run", "--config", str(config)]
                          + (["--db", str(db)] if db else []))
    writable = ""
    if db is not None and not db.is_relative_to(MACHINE.state_dir):
        writable = f"# The store given at install (--db) is outside the state directory.\nReadWritePaths={_quote(str(db.parent))}\n"
    return f"""\
# agentsight: the always-on collector (`agentsight service install` wrote this file).
# Every AI agent on this machine, recorded with eBPF into {MACHINE.state_dir}; its pipeline
# is {config} (edit it: the collector applies changes while it runs).
# `agentsight service status` says how it is doing; `agentsight service uninstall` removes this.

[Unit]
Description=agentsight collector: every AI agent on this machine, observed with eBPF
After=local-fs.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=on-failure
RestartSec=5s
# Exit code 2: the pipeline could not start (its config, no bcc...): a restart would not fix it.
RestartPreventExitStatus=2
# The supervisor stops the pipeline itself: SIGTERM to it alone, then it drains every actor
# in order (graceful_timeout, 10 s by default); systemd kills whatever is left after this.
KillMode=mixed
TimeoutStopSec=30s

# /run/agentsight (0700) holds the runtime dir of every local pipeline; the collector's is
# /run/agentsight/{PIPELINE}, which the supervisor removes at exit. Kept at stop: a
# `record` running beside the collector has its own directory in there.
RuntimeDirectory=agentsight agentsight-clients
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
# /run/agentsight-clients holds the clients socket (record, top, debug as clients): the
# clients sink opens the directory to every user (0755) and the socket (0666); what each
# may see is decided by the kernel's word on who connected (SO_PEERCRED), docs/cli.md.
# /var/lib/agentsight: the store and the web UI's token, root only (prompts and answers).
StateDirectory=agentsight
StateDirectoryMode=0700
# /var/cache/agentsight: the TLS functions found in stripped agent builds, kept per build.
CacheDirectory=agentsight
CacheDirectoryMode=0700
UMask=0077
# eBPF maps count against RLIMIT_MEMLOCK on kernels before 5.11 (and bcc may not raise it:
# no CAP_SYS_RESOURCE).
LimitMEMLOCK=infinity

# Hardening that still lets eBPF capture work. It runs as root, with only the capabilities
# capture needs: CAP_BPF and CAP_PERFMON (load programs, open tracepoints and uprobes),
# CAP_SYS_ADMIN (the same on kernels before 5.8, and some bpf helpers), CAP_SYS_PTRACE (read
# /proc/PID/maps, exe and root of other users' agents, to find and probe their TLS
# libraries), CAP_DAC_READ_SEARCH (read agent binaries in other users' private directories).
# (tests/bpf/test_service_collector.py runs the shipped pipeline with exactly these.)
CapabilityBoundingSet=CAP_SYS_ADMIN CAP_BPF CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
# Everything read-only but /dev, /proc, /sys and the directories above.
ProtectSystem=strict
{writable}# Agents and their TLS libraries live in home directories: read, never written.
ProtectHome=read-only
# A /tmp of its own; an agent binary in the real /tmp is reached through /proc/PID/root.
PrivateTmp=yes
PrivateMounts=yes
PrivateDevices=yes
ProtectClock=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
# ZeroMQ between the actors (unix), the web UI and the OTLP export (inet), netlink (psutil).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# System calls capture never makes. Not denied: @privileged (bpf), @debug (perf_event_open,
# which attaches tracepoints and uprobes), @resources (setrlimit, bcc's).
SystemCallFilter=~@clock @cpu-emulation @module @mount @obsolete @raw-io @reboot @swap
SystemCallErrorNumber=EPERM
# Not set, on purpose (each would break capture):
#   ProtectKernelTunables=  makes /sys read-only: bcc writes probe definitions in /sys/kernel/tracing
#   ProtectKernelModules=   hides /lib/modules, where bcc finds the headers it compiles against
#   ProtectProc=invisible   the sources read /proc/PID of every process on the machine
#   MemoryDenyWriteExecute= bcc compiles with LLVM in the process
#   SystemCallFilter=@system-service  an allow list without bpf(2) and perf_event_open(2)
#   PrivateNetwork=         the web UI must be reachable on this machine's loopback
#   PrivateUsers=           capabilities would then apply to a user namespace, not the kernel

[Install]
WantedBy=multi-user.target
"""


def _quote(arg: str) -> str:
    """One ExecStart= argument (systemd's quoting: double quotes, backslash escapes)."""
    if arg and not any(c in arg for c in " \t\"'\\;$%"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


# ---------------------------------------------------------------------------- the pipeline

def with_db(spec: Any, db: Path) -> Any:
    """``spec`` with its store at ``db``: the sqlite sink's path, and the web sink serving it.

    ValueError when the pipeline has no sqlite sink or several (which one would be meant).
    """
    stores = spec.of_kind("sink")
    sqlite = [c for c in stores if c.type == "sqlite"]
    if len(sqlite) != 1:
        raise ValueError(f"--db needs exactly one sqlite sink in the pipeline, it has {len(sqlite)}")
    old = os.path.abspath(str(sqlite[0].options.get("path", "")))
    sqlite[0].options["path"] = str(db)
    for c in stores:
        if c.type == "web" and c.options.get("db") and os.path.abspath(str(c.options["db"])) == old:
            c.options["db"] = str(db)
    return spec


def web_binding(spec: Any) -> tuple[str, int] | None:
    """Host and port of the pipeline's web UI (its first web sink), None without one."""
    from agentsight.web import DEFAULT_HOST, DEFAULT_PORT

    web = next((c.options for c in spec.of_kind("sink") if c.type == "web"), None)
    if web is None:
        return None
    return str(web.get("host", DEFAULT_HOST)), int(web.get("port", DEFAULT_PORT))


def collector_info(spec: Any, config: Path, token_file: Path | None) -> dict[str, Any]:
    """What `service status` shows of a running collector beside its supervisor's report."""
    store = next((c.options for c in spec.of_kind("sink") if c.type == "sqlite"), None)
    web = next((c.options for c in spec.of_kind("sink") if c.type == "web"), None)
    binding = web_binding(spec)
    url = None
    if binding is not None and binding[1]:  # port 0: a free one, known to the web sink only
        host, port = binding
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/timeline"
    return {
        "config": str(config), "pid": os.getpid(),
        "store": os.path.abspath(str(store["path"])) if store else None,
        "max_mb": store.get("max_mb", 0) if store else None,
        "max_age_h": store.get("max_age_h", 0) if store else None,
        "web_url": url,
        # Where the web UI's token is, when it comes from that file (not the config, not the environment).
        "token_file": str(token_file) if token_file and web is not None and not web.get("token") else None,
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-C", help="Pipeline to run (default: "
                      "/etc/agentsight/collector.toml when installed, else the shipped config/collector.toml).")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="Store the collector writes (and the web UI serves) "
                  "instead of the config's (/var/lib/agentsight/agents.db).")]
RuntimeDirOpt = Annotated[Path | None, typer.Option("--runtime-dir", help="Runtime dir of the collector "
                          "(default /run/agentsight/collector).")]


@service_app.command("run")
def run_collector(
    config: ConfigOpt = None,
    db: DbOpt = None,
    runtime_dir: RuntimeDirOpt = None,
    watch: Annotated[bool, typer.Option(help="Apply changes to the config while running.")] = True,
) -> None:
    """Run the collector in the foreground until SIGTERM / Ctrl-C (what the systemd unit starts)."""
    from agentsight.pipeline import check
    from agentsight.pipeline.presets import needs_bpf, port_problem
    from agentsight.runtime.endpoints import RunDirError
    from agentsight.runtime.supervisor import Supervisor
    from agentsight.web.guard import TOKEN_ENV, TOKEN_FILE_ENV

    config = (config or default_config()).absolute()
    db = db.absolute() if db is not None else None
    # The web UI's token: given in the config or the environment, else the collector's own,
    # kept in the state directory (root's), made at the first start.
    token_file: Path | None = None
    if not os.environ.get(TOKEN_ENV):
        if os.environ.get(TOKEN_FILE_ENV):
            token_file = Path(os.environ[TOKEN_FILE_ENV])
        elif os.geteuid() == 0:
            token_file = MACHINE.token_file
            os.environ[TOKEN_FILE_ENV] = str(token_file)
    check.isolate()  # the supervisor runs on: the components' modules are for the actors (and a checking child)
    spec = load_config(config)
    if db is not None:
        try:
            with_db(spec, db)
        except ValueError as exc:
            fail(f"{config}: {exc}")
    if spec.name != PIPELINE and runtime_dir is None:
        typer.echo(f"agentsight: {config}: pipeline {spec.name!r}, not {PIPELINE!r}: `agentsight service status` "
                   "will not find it", err=True)
    spec.supervisor.watch = watch and spec.supervisor.watch
    if needs_bpf(spec):
        need_bpf(f"{config}: ")
    web = web_binding(spec)
    problem = port_problem(*web) if web is not None else None
    if problem:
        fail(f"{problem.split(' (')[0]} (another collector? set the web sink's port in {config})")
    try:
        sup = Supervisor(spec, config, runtime_dir)
    except RunDirError as exc:
        fail(str(exc))
    info = collector_info(spec, config, token_file)

    def keep_info() -> None:
        _write_private(sup.run.path / SERVICE_FILE, json.dumps(info))

    def amend(new: Any) -> Any:
        """Every reloaded config: the --db given still applies; status learns what changed."""
        if db is not None:
            try:
                with_db(new, db)
            except ValueError as exc:
                sup.say(f"config change rejected, the running pipeline is kept: {exc} (--db {db})")
                return sup.spec
        info.update(collector_info(new, config, token_file))
        keep_info()
        return new

    def on_running() -> None:
        keep_info()
        url = info.get("web_url")
        if url and sys.stderr.isatty() and token_file is not None and token_file.is_file():
            url += f"?token={token_file.read_text().strip()}"  # a terminal: the user's own eyes
        sup.say(f"collector running: config {config}, "
                + (f"store {info['store']}" if info.get("store") else "no store")
                + (f", web UI {url}" if url else "") + " (`agentsight service status`)")

    sup.amend = amend
    sup.on_running = on_running
    try:
        code = sup.run_forever()
    except RunDirError as exc:
        fail(str(exc))
    typer.echo(sup.summary(), err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------- install

RootOpt = Annotated[Path | None, typer.Option("--root", help="Install into this directory tree instead of / "
                    "(an image, a test): nothing is started.")]


def _systemctl(layout: Layout, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run systemctl (``--root`` for a tree); None when there is no systemctl."""
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    root = [f"--root={layout.root}"] if layout.root != Path("/") else []
    return subprocess.run([exe, *root, *args], capture_output=True, text=True, timeout=120)


def _need_root(layout: Layout, what: str) -> None:
    if layout.root == Path("/") and os.geteuid() != 0:
        fail(f"service {what} needs root: run it with sudo")


@service_app.command()
def install(
    config: Annotated[Path | None, typer.Option("--config", "-C", help="Have the unit run this pipeline file "
                      "(its path as given) instead of a copy of the shipped one in /etc/agentsight.")] = None,
    db: DbOpt = None,
    root: RootOpt = None,
) -> None:
    """Install the collector as a systemd service (and start it, when systemd runs)."""
    layout = Layout(root=root.absolute() if root else Path("/"))
    _need_root(layout, "install")
    installed = layout.at(layout.config)
    if config is not None:
        source = config.absolute()
    else:  # an edited copy installed before stays, and is what the unit will run
        source = installed if installed.is_file() else shipped_config()
    spec = load_config(source)  # checked before anything is written
    if db is not None:
        db = db.absolute()
        try:
            with_db(spec, db)
        except ValueError as exc:
            fail(f"{source}: {exc}")
    spec_path = source if config is not None else layout.config
    said: list[str] = []
    if config is None:
        installed.parent.mkdir(parents=True, exist_ok=True)
        if not installed.exists():
            shutil.copyfile(shipped_config(), installed)
            os.chmod(installed, 0o644)
            said.append(f"config {installed}")
        elif installed.read_bytes() != shipped_config().read_bytes():
            said.append(f"config {installed} (yours, kept)")
        else:
            said.append(f"config {installed}")
    unit = layout.at(layout.unit)
    unit.parent.mkdir(parents=True, exist_ok=True)
    _write_unit(unit, unit_text(agentsight_command(), spec_path, db))
    said.insert(0, f"unit {unit}")
    typer.echo("installed " + ", ".join(said))
    if layout.root == Path("/"):
        from agentsight.kernel.bpfprog import BpfUnavailable, require_bpf
        from agentsight.pipeline.presets import needs_bpf

        try:
            if needs_bpf(spec):
                require_bpf(import_bcc=False)
        except BpfUnavailable as exc:
            typer.echo(f"note: the collector cannot capture here yet: {exc}")
    if layout.root != Path("/"):
        r = _systemctl(layout, "enable", UNIT_NAME)
        typer.echo("enabled (systemctl --root): it starts at the tree's next boot" if r and r.returncode == 0
                   else "not enabled: " + (r.stderr.strip().splitlines()[-1] if r and r.stderr.strip()
                                           else "no systemctl here"))
        return
    if not systemd_running():
        r = _systemctl(layout, "enable", UNIT_NAME)  # offline: a later boot with systemd starts it
        enabled = " (enabled for a boot with systemd)" if r and r.returncode == 0 else ""
        typer.echo(f"systemd is not running here (PID 1 is {_pid1()}){enabled}: run the same collector in the "
                   "foreground with `sudo agentsight service run`")
        return
    for args in (("daemon-reload",), ("enable", "--now", UNIT_NAME)):
        r = _systemctl(layout, *args)
        if r is None or r.returncode != 0:
            why = r.stderr.strip() if r is not None else "no systemctl"
            fail(f"systemctl {' '.join(args)} failed: {why}", 1)
    typer.echo(f"started and enabled {UNIT_NAME}: `agentsight service status` (the web UI's URL with its token), "
               f"`journalctl -u {UNIT_NAME}`")


def _write_unit(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _pid1() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@service_app.command()
def uninstall(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the store, the token and "
                     "/etc/agentsight (the data is kept otherwise).")] = False,
    root: RootOpt = None,
) -> None:
    """Stop and remove the collector's systemd service; the store stays unless --purge."""
    layout = Layout(root=root.absolute() if root else Path("/"))
    _need_root(layout, "uninstall")
    unit = layout.at(layout.unit)
    said = []
    if layout.root == Path("/") and systemd_running():
        r = _systemctl(layout, "disable", "--now", UNIT_NAME)
        if r is not None and r.returncode != 0 and unit.exists():
            fail(f"systemctl disable --now {UNIT_NAME} failed: {r.stderr.strip()}", 1)
    elif unit.exists():
        _systemctl(layout, "disable", UNIT_NAME)  # the wants/ link, offline
    if unit.exists():
        unit.unlink()
        said.append(f"removed {unit}")
        if layout.root == Path("/") and systemd_running():
            _systemctl(layout, "daemon-reload")
    config = layout.at(layout.config)
    if config.exists() and (purge or config.read_bytes() == shipped_config().read_bytes()):
        config.unlink()
        said.append(f"removed {config}")
        with_dir = config.parent
        if not any(with_dir.iterdir()):
            with_dir.rmdir()
    elif config.exists():
        said.append(f"kept {config} (edited; --purge removes it)")
    state = layout.at(layout.state_dir)
    if state.exists():
        if purge:
            shutil.rmtree(state)
            said.append(f"deleted {state}")
        else:
            said.append(f"kept the data in {state} (--purge deletes it)")
    running = _ask_collector(None)
    if running.get("running") and not (layout.root == Path("/") and systemd_running()):
        said.append(f"a collector is still running (pid {running['pid']}): stop it with Ctrl-C or "
                    f"kill -TERM {running['pid']}")
    typer.echo("; ".join(said) if said else "nothing installed")


# ---------------------------------------------------------------------------- status

def _ask_collector(runtime_dir: Path | None, timeout: float = 3.0) -> dict[str, Any]:
    """The running collector's supervisor report (and its service.json), or why there is none."""
    from agentsight.runtime.endpoints import RunDir, RunDirError, default_runtime_dir
    from agentsight.runtime.status import StatusError, ask

    machine = ROOT_RUN_DIR / PIPELINE
    try:
        run = RunDir(runtime_dir or default_runtime_dir(PIPELINE))
        run.check()
    except RunDirError as exc:
        return {"running": None, "why": str(exc)}
    if not (run.path / "status").exists():
        if runtime_dir is None and os.geteuid() != 0 and ROOT_RUN_DIR.exists():
            # The machine's collector runs as root: its runtime dir is root's alone.
            if not os.access(ROOT_RUN_DIR, os.X_OK):
                return {"running": None, "why": f"only root can ask the machine's collector ({machine}): "
                        "sudo agentsight service status"}
        return {"running": False, "runtime_dir": str(run.path)}
    try:
        report = ask(run.status, timeout)
    except StatusError as exc:
        return {"running": None, "why": f"the collector at {run.path} {exc}"}
    try:
        service = json.loads((run.path / SERVICE_FILE).read_text())
    except (OSError, ValueError):
        service = {}
    return {"running": True, **service, "pid": report.pid, "uptime_s": report.uptime_s,
            "runtime_dir": str(run.path), "pipeline": report.pipeline,
            "instances": [a.to_dict() for a in report.instances]}


def _exit_code(collector: dict[str, Any]) -> int:
    """LSB status codes: 0 running, 3 not running, 4 unknown (not allowed to ask)."""
    running = collector.get("running")
    return 0 if running is True else 3 if running is False else 4


def _size(path: str) -> int | None:
    try:
        return sum(os.stat(f"{path}{s}").st_size for s in ("", "-wal") if os.path.exists(f"{path}{s}"))
    except OSError:
        return None


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


@service_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    runtime_dir: RuntimeDirOpt = None,
    root: Annotated[Path | None, typer.Option("--root", help="Look for the unit in this tree instead of /.")] = None,
) -> None:
    """Whether the collector is installed, enabled, active and running: pid, uptime, store, web UI.

    Exit code 0 when a collector is running, 3 when none is, 4 when it cannot be told (not root).
    """
    layout = Layout(root=root.absolute() if root else Path("/"))
    unit = layout.at(layout.unit)
    out: dict[str, Any] = {"unit": str(unit) if unit.exists() else None, "systemd": systemd_running()}
    if unit.exists():
        r = _systemctl(layout, "is-enabled", UNIT_NAME)
        out["enabled"] = r.stdout.strip() if r is not None else None
        if out["systemd"] and layout.root == Path("/"):
            r = _systemctl(layout, "is-active", UNIT_NAME)
            out["active"] = r.stdout.strip() if r is not None else None
    collector = _ask_collector(runtime_dir)
    if collector.get("store"):
        collector["store_bytes"] = _size(collector["store"])
    token_file = collector.get("token_file")
    if collector.get("web_url") and token_file:
        try:
            collector["web_url"] += f"?token={Path(token_file).read_text().strip()}"
        except OSError:
            pass  # not yours to read: the URL without it
    out["collector"] = collector
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        raise typer.Exit(_exit_code(collector))
    if out["unit"] is None:
        typer.echo(f"unit: not installed ({'`sudo agentsight service install`'})")
    else:
        state = [out.get("enabled") or "?"]
        if "active" in out:
            state.append(out["active"] or "?")
        elif not out["systemd"]:
            state.append("systemd is not running here")
        typer.echo(f"unit: {unit} ({', '.join(state)})")
    if collector.get("running") is None:
        typer.echo(f"collector: cannot tell: {collector['why']}")
    elif not collector["running"]:
        typer.echo("collector: not running (`sudo agentsight service run` in the foreground"
                   + (", or `sudo systemctl start agentsight`)" if out["unit"] and out["systemd"] else ")"))
    else:
        states: dict[str, int] = {}
        for inst in collector["instances"]:
            states[inst["state"]] = states.get(inst["state"], 0) + 1
        lost = sum(int(i.get("dropped", 0)) for i in collector["instances"])
        typer.echo(f"collector: running, pid {collector['pid']}, up {_duration(collector['uptime_s'])}, "
                   + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + " actors"
                   + (f", {lost} events lost" if lost else ", no events lost")
                   + f" (`sudo agentsight status --pipeline {collector['pipeline']}`)")
        if collector.get("store"):
            size = collector.get("store_bytes")
            limits = []
            if collector.get("max_mb"):
                limits.append(f"{collector['max_mb']:g} MiB")
            if collector.get("max_age_h"):
                hours = collector["max_age_h"]
                days = hours / 24
                limits.append(f"{days:g} day{'s' if days != 1 else ''}" if hours % 24 == 0 else f"{hours:g} hours")
            typer.echo(f"store: {collector['store']}, "
                       + (f"{size / (1 << 20):.1f} MiB" if size is not None else "size unknown")
                       + (f" (keeps at most {' and '.join(limits)})" if limits else ""))
        if collector.get("web_url"):
            typer.echo(f"web UI: {collector['web_url']}")
    raise typer.Exit(_exit_code(collector))

