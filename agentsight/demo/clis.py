"""Real agent CLIs (Claude Code, Codex, Gemini CLI, Qwen Code) run fully offline against the demo LLM server.

Usage (root: network namespaces)::

    python -m agentsight.demo.clis install                 # npm install the pinned CLIs (idempotent)
    python -m agentsight.demo.clis list                    # the setups, their packages, installed or not
    python -m agentsight.demo.clis run NAME [--keep DIR]   # one 2-turn task, offline; exit 0 if it completed

``run`` creates a network namespace with only loopback (:class:`LoopbackNetns`), starts
:mod:`agentsight.demo.llm_server` and a DNS sink inside it, writes the CLI's configuration
into a fresh home (:func:`prepare`), and runs the CLI there on a task that takes two
LLM calls: the scripted model first asks for the shell command in backticks, the CLI
runs it, then the model answers with text. Nothing the CLI tries can leave the machine:
the namespace has no route out, and every name it looks up is answered NXDOMAIN (and
reported). It prints the CLI's output, its wall time, one line per exchange the server
logged, and the names looked up; it exits non-zero when the CLI failed, fewer than two
LLM exchanges were logged, or the probe command's output never reached the model.

The setups (:data:`SETUPS`), each a pinned npm package (:data:`PACKAGES`) and the knobs
that point it at the local server:

- ``claude``: Anthropic Messages, streamed (``ANTHROPIC_BASE_URL``).
- ``codex``: OpenAI Responses over HTTP SSE, through a custom model provider.
- ``codex-ws``: Responses over WebSocket, as Codex talks to OpenAI by default (its built-in
  provider with ``openai_base_url`` and an API-key login).
- ``gemini``: Gemini API ``/v1beta/models/*:streamGenerateContent`` (``GOOGLE_GEMINI_BASE_URL``).
- ``gemini-code-assist``: Gemini Code Assist ``/v1internal:*`` (``CODE_ASSIST_ENDPOINT``
  and an access token, as after "Login with Google").
- ``qwen``: OpenAI Chat Completions, streamed (``OPENAI_BASE_URL``).

The CLIs live in an npm prefix, ``/var/cache/agentsight-clis`` unless
``AGENTSIGHT_CLI_CACHE`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsight.demo.agent import ANTHROPIC_KEY, OPENAI_KEY
from agentsight.demo.llm_server import GENERATE_APIS, read_log
from agentsight.kernel import procfs

__all__ = ["PACKAGES", "SETUPS", "PROBE_COMMAND", "PROBE_OUTPUT", "Package", "Setup", "RunResult", "LoopbackNetns",
           "cache_dir", "install", "prepare", "run", "report", "exchange_line", "dns_nxdomain", "main"]

DEFAULT_CACHE = "/var/cache/agentsight-clis"
GEMINI_KEY = "AIzaSyDemo-agentsight-0f3b9c2e7a4d1b6c8e5"  # fake, in Google's key format
GOOGLE_TOKEN = "ya29.demo-agentsight-access-token-5c1e9a7b"  # fake OAuth access token
# The shell command the task asks for. Its output is not in its own text, so finding the output in
# what the CLI sends back proves the command really ran.
PROBE_COMMAND = "printf 'agentsight-%s\\n' probe"
PROBE_OUTPUT = "agentsight-probe"
PROMPT = f"Run this shell command and tell me what it printed: `{PROBE_COMMAND}`"


@dataclass(frozen=True)
class Package:
    """One pinned npm package and the executable it installs in ``node_modules/.bin``."""

    name: str
    version: str
    bin: str
    note: str = ""
    install_script: bool = False  # needs its own install script to run (npm asks for an allowScripts entry)


@dataclass(frozen=True)
class Setup:
    """One way to run a CLI offline: its package and how to prepare a run (argv, env, config files)."""

    name: str
    package: Package
    wire: str  # what it speaks to the server
    prepare: Callable[[Path, str, Path, str], tuple[list[str], dict[str, str]]]


PACKAGES = {
    # Its postinstall copies the native binary over the bin/claude.exe placeholder.
    "claude": Package("@anthropic-ai/claude-code", "2.1.332", "claude", "a native Bun executable",
                      install_script=True),
    "codex": Package("@openai/codex", "0.171.0", "codex", "a node launcher for a static Rust binary"),
    "gemini": Package("@google/gemini-cli", "0.61.0", "gemini"),
    # It declares node >= 22 but runs the whole task on the machine's node 20 (checked: 0.24.4 on 20.20).
    "qwen": Package("@qwen-code/qwen-code", "0.24.4", "qwen", "declares node>=22, works on node 20"),
}


def cache_dir() -> Path:
    """The npm prefix the CLIs are installed in."""
    return Path(os.environ.get("AGENTSIGHT_CLI_CACHE") or DEFAULT_CACHE)


def _installed_version(prefix: Path, package: Package) -> str | None:
    try:
        return str(json.loads((prefix / "node_modules" / package.name / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _allow_scripts(package_json: Path, packages: list[Package]) -> None:
    """Approve these packages' install scripts in the prefix's package.json (npm 11 skips unapproved ones)."""
    if not packages:
        return
    try:
        meta = json.loads(package_json.read_text())
    except (OSError, ValueError):
        meta = {}
    meta.setdefault("allowScripts", {}).update({p.name: True for p in packages})  # as npm install-scripts writes
    package_json.write_text(json.dumps(meta, indent=2) + "\n")


def install(prefix: Path | None = None, packages: list[Package] | None = None) -> list[Package]:
    """npm-install the pinned packages missing from ``prefix`` (exact versions); returns what it installed."""
    prefix = prefix or cache_dir()
    wanted = packages if packages is not None else list(PACKAGES.values())
    missing = [p for p in wanted if _installed_version(prefix, p) != p.version]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: install Node.js (with npm) first")
        prefix.mkdir(parents=True, exist_ok=True)
        _allow_scripts(prefix / "package.json", [p for p in missing if p.install_script])
        subprocess.run([npm, "install", "--prefix", str(prefix), "--save-exact", "--no-audit", "--no-fund",
                        *(f"{p.name}@{p.version}" for p in missing)], check=True)
    return missing


# --------------------------------------------------------------------------- preparing a run


def _base_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the machine's but PATH (with node's directory)."""
    node = shutil.which("node")
    path = ["/usr/local/bin", "/usr/bin", "/bin"]
    if node and str(Path(node).parent) not in path:
        path.insert(0, str(Path(node).parent))
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"PATH": ":".join(path), "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8", "TERM": "dumb",
            "NO_COLOR": "1"}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _bin(package: Package) -> str:
    return str(cache_dir() / "node_modules" / ".bin" / package.bin)


def _claude(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    env = {**_base_env(home), "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
           "NODE_EXTRA_CA_CERTS": str(ca),
           # No telemetry, error reporting, auto-update or side calls (title, quota) to api.anthropic.com.
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    return [_bin(PACKAGES["claude"]), "-p", prompt, "--allowedTools", "Bash"], env


# Off: the update check, analytics, and plugins/apps (they ls-remote github.com and call chatgpt.com).
_CODEX_QUIET = """check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
"""


def _codex_env(home: Path, ca: Path) -> dict[str, str]:
    return {**_base_env(home), "CODEX_HOME": str(home / ".codex"), "CODEX_CA_CERTIFICATE": str(ca)}


def _codex_argv(prompt: str) -> list[str]:
    return [_bin(PACKAGES["codex"]), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "--color", "never", prompt]


def _codex(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    """A custom provider: HTTP POST /v1/responses, SSE (custom providers do not use WebSockets)."""
    _write(home / ".codex" / "config.toml", f"""model_provider = "agentsight"
{_CODEX_QUIET}
[model_providers.agentsight]
name = "agentsight demo"
base_url = "{base_url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
""")
    return _codex_argv(prompt), {**_codex_env(home, ca), "OPENAI_API_KEY": OPENAI_KEY}


def _codex_ws(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    """Codex's own OpenAI provider moved to the local server: Responses over WebSocket (what it does by
    default), after a warm-up request with ``generate: false``. An API-key login is its auth.json."""
    _write(home / ".codex" / "config.toml", f'openai_base_url = "{base_url}/v1"\n{_CODEX_QUIET}')
    _write(home / ".codex" / "auth.json", json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": OPENAI_KEY}), 0o600)
    return _codex_argv(prompt), _codex_env(home, ca)


def _gemini_settings(home: Path, auth: str) -> None:
    _write(home / ".gemini" / "settings.json", json.dumps({
        "security": {"auth": {"selectedType": auth}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},  # else it posts to play.googleapis.com
    }, indent=2))


def _gemini(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    _gemini_settings(home, "gemini-api-key")
    env = {**_base_env(home), "GOOGLE_GEMINI_BASE_URL": base_url, "GEMINI_API_KEY": GEMINI_KEY,
           "NODE_EXTRA_CA_CERTS": str(ca)}
    return [_bin(PACKAGES["gemini"]), "-p", prompt, "--yolo"], env


def _gemini_code_assist(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    """"Login with Google" without Google: an access token from the environment, the Code Assist endpoint
    moved to the local server, a project so no onboarding is needed. It still asks
    www.googleapis.com for the account's e-mail (the lookup fails; it goes on)."""
    _gemini_settings(home, "oauth-personal")
    env = {**_base_env(home), "GOOGLE_GENAI_USE_GCA": "true", "GOOGLE_CLOUD_ACCESS_TOKEN": GOOGLE_TOKEN,
           "CODE_ASSIST_ENDPOINT": base_url, "GOOGLE_CLOUD_PROJECT": "agentsight-demo",
           "NODE_EXTRA_CA_CERTS": str(ca)}
    return [_bin(PACKAGES["gemini"]), "-p", prompt, "--yolo"], env


def _qwen(home: Path, base_url: str, ca: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    _write(home / ".qwen" / "settings.json", json.dumps({
        "security": {"auth": {"selectedType": "openai"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},  # else it posts to *.rum.aliyuncs.com
    }, indent=2))
    env = {**_base_env(home), "OPENAI_BASE_URL": f"{base_url}/v1", "OPENAI_API_KEY": OPENAI_KEY,
           "OPENAI_MODEL": "qwen3-coder-plus", "NODE_EXTRA_CA_CERTS": str(ca),
           "QWEN_CODE_SUPPRESS_YOLO_WARNING": "1"}
    return [_bin(PACKAGES["qwen"]), "-p", prompt, "--yolo"], env


SETUPS = {s.name: s for s in (
    Setup("claude", PACKAGES["claude"], "Anthropic Messages, SSE", _claude),
    Setup("codex", PACKAGES["codex"], "OpenAI Responses, HTTP SSE", _codex),
    Setup("codex-ws", PACKAGES["codex"], "OpenAI Responses, WebSocket", _codex_ws),
    Setup("gemini", PACKAGES["gemini"], "Gemini API generateContent, SSE", _gemini),
    Setup("gemini-code-assist", PACKAGES["gemini"], "Gemini Code Assist v1internal, SSE", _gemini_code_assist),
    Setup("qwen", PACKAGES["qwen"], "OpenAI Chat Completions, SSE", _qwen),
)}


def prepare(name: str, home_dir: Path, base_url: str, ca_file: Path, prompt: str) -> tuple[list[str], dict[str, str]]:
    """The argv and the whole environment to run setup ``name`` against ``base_url`` (``https://host:port``,
    trusting ``ca_file``) on ``prompt``; its configuration files are written into ``home_dir``."""
    if name not in SETUPS:
        raise KeyError(f"unknown CLI {name!r}: choose from {', '.join(SETUPS)}")
    home_dir.mkdir(parents=True, exist_ok=True)
    return SETUPS[name].prepare(home_dir, base_url.rstrip("/"), ca_file, prompt)


# --------------------------------------------------------------------------- the network namespace


class LoopbackNetns:
    """A network namespace with only ``lo`` (up), named ``agentsight-cli-<creator pid>-<random>``.

    Its ``/etc/netns/<name>/resolv.conf`` (bind-mounted over ``/etc/resolv.conf`` by ``ip netns
    exec``) sends DNS to 127.0.0.1 inside it, where :func:`serve_dns` can answer. ``close`` kills
    what still runs inside and deletes it; :meth:`remove_stale` deletes those whose creator is gone.
    """

    PREFIX = "agentsight-cli-"

    def __init__(self) -> None:
        self.ip = shutil.which("ip") or "/usr/sbin/ip"
        self.name = f"{self.PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.etc = Path("/etc/netns") / self.name
        subprocess.run([self.ip, "netns", "add", self.name], check=True, capture_output=True, text=True)
        try:
            subprocess.run([self.ip, "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True)
            self.etc.mkdir(parents=True, exist_ok=True)
            (self.etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
        except BaseException:
            self.close()
            raise

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return [self.ip, "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        out = subprocess.run([self.ip, "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """Kill every process still inside (only this run's), then delete the namespace."""
        self._delete(self.ip, self.name)

    @classmethod
    def _delete(cls, ip: str, name: str) -> None:
        out = subprocess.run([ip, "netns", "pids", name], capture_output=True, text=True).stdout
        for pid in (int(p) for p in out.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run([ip, "netns", "delete", name], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)

    @classmethod
    def remove_stale(cls) -> list[str]:
        """Delete the namespaces this module created whose creating process is gone."""
        ip = shutil.which("ip") or "/usr/sbin/ip"
        out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
        removed = []
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(cls.PREFIX):
                continue
            pid = name[len(cls.PREFIX):].split("-")[0]
            if pid.isdigit() and procfs.alive(int(pid)):
                continue
            cls._delete(ip, name)
            removed.append(name)
        return removed

    def __enter__(self) -> LoopbackNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dns_nxdomain(query: bytes) -> tuple[str, bytes] | None:
    """The NXDOMAIN answer to a DNS query, and what it asked ("name TYPE"); None if it is not a query."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount < 1:  # a response, or no question
        return None
    labels: list[str] = []
    i = 12
    while i < len(query) and query[i] and len(labels) < 64:
        labels.append(query[i + 1:i + 1 + query[i]].decode("ascii", "replace"))
        i += 1 + query[i]
    if i + 5 > len(query):
        return None
    qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
    # Response, recursion desired + available, NXDOMAIN; the (first) question echoed back.
    answer = struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + query[12:i + 5]
    return f"{'.'.join(labels)} {_QTYPES.get(qtype, qtype)}", answer


def serve_dns(log: Path, ready: Path) -> None:
    """Answer every DNS query on 127.0.0.1:53 with NXDOMAIN and append "name TYPE" to ``log``.

    Run inside the namespace: lookups of outside names fail at once (instead of after resolver
    timeouts) and the names tried are on record.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    ready.write_text("53\n")
    with open(log, "a", encoding="utf-8") as out:
        while True:
            data, peer = sock.recvfrom(4096)
            if (reply := dns_nxdomain(data)) is not None:
                out.write(reply[0] + "\n")
                out.flush()
                sock.sendto(reply[1], peer)


_QTYPES = {1: "A", 28: "AAAA", 5: "CNAME", 12: "PTR", 33: "SRV", 65: "HTTPS"}


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    """What one run of a CLI did."""

    name: str
    returncode: int | None  # None: killed at the timeout
    wall_s: float
    stdout: str
    stderr: str
    exchanges: list[dict[str, Any]]
    dns: list[str]  # "name type" per query
    probe_seen: bool  # the probe's output reached the model

    @property
    def llm_calls(self) -> int:
        return sum(1 for e in self.exchanges if e.get("api") in GENERATE_APIS and e.get("status") == 200)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.llm_calls >= 2 and self.probe_seen


def _start(argv: list[str], ready: Path, out: Path, what: str, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """Start a helper that writes ``ready`` once it serves; wait for that (or its death)."""
    with open(out, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start: {out.read_text(errors='replace').strip()[-400:]}")
        time.sleep(0.02)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_cli(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int | None, float, str, str]:
    """Run the CLI in its own session; at the timeout kill its process group. (returncode, wall s, out, err)"""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    wall = time.monotonic() - start
    return code, wall, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _probe_seen(exchanges: list[dict[str, Any]]) -> bool:
    """Whether a request sent to the model holds the probe's output (the tool ran, its result went back)."""
    return any(PROBE_OUTPUT in json.dumps(e.get("request"), ensure_ascii=False) for e in exchanges
               if e.get("api") in GENERATE_APIS)


def run(name: str, run_dir: Path, timeout: float = 180.0, prompt: str = PROMPT,
        wrap: list[str] | None = None, wrap_env: dict[str, str] | None = None) -> RunResult:
    """Run setup ``name`` once, offline, in a fresh loopback namespace; everything it writes goes to
    ``run_dir`` (``home/``, ``work/``, ``server.jsonl``, ``dns.log``, ``ca.pem``).

    ``wrap`` runs the CLI under another command, outside the namespace (``["agentsight",
    "record", "--db", F, "--"]``): ``wrap + ["ip", "netns", "exec", NS, cli...]``, with
    ``wrap_env`` added to its environment."""
    if name not in SETUPS:
        raise KeyError(f"unknown CLI {name!r}: choose from {', '.join(SETUPS)}")
    package = SETUPS[name].package
    if _installed_version(cache_dir(), package) != package.version:
        raise RuntimeError(f"{package.name}@{package.version} is not installed in {cache_dir()}: "
                           f"run python -m agentsight.demo.clis install")
    run_dir.mkdir(parents=True, exist_ok=True)
    home, work = run_dir / "home", run_dir / "work"
    ca, log, dns_log = run_dir / "ca.pem", run_dir / "server.jsonl", run_dir / "dns.log"
    for old in (home, work):  # a kept directory of an earlier run: start fresh
        shutil.rmtree(old, ignore_errors=True)
    for stale in (log, dns_log, run_dir / "server.port", run_dir / "dns.ready"):
        stale.unlink(missing_ok=True)
    work.mkdir()
    LoopbackNetns.remove_stale()
    helpers: list[subprocess.Popen[bytes]] = []
    with LoopbackNetns() as ns:
        try:
            py = sys.executable
            helpers.append(_start(ns.argv([py, "-m", "agentsight.demo.clis", "dns-sink", "--log", str(dns_log),
                                           "--ready-file", str(run_dir / "dns.ready")]),
                                  run_dir / "dns.ready", run_dir / "dns.out", "the DNS sink"))
            helpers.append(_start(ns.argv([py, "-m", "agentsight.demo.llm_server", "--port", "0", "--ca-out",
                                           str(ca), "--log", str(log), "--ready-file", str(run_dir / "server.port")]),
                                  run_dir / "server.port", run_dir / "server.out", "the LLM server"))
            port = int((run_dir / "server.port").read_text())
            argv, env = prepare(name, home, f"https://127.0.0.1:{port}", ca, prompt)
            code, wall, out, err = _run_cli([*(wrap or []), *ns.argv(argv)], {**env, **(wrap_env or {})}, work,
                                            timeout)
        finally:
            for proc in reversed(helpers):
                _stop(proc)
    exchanges = read_log(log)
    dns = dns_log.read_text().splitlines() if dns_log.exists() else []
    return RunResult(name, code, wall, out, err, exchanges, dns, _probe_seen(exchanges))


def _usage_text(usage: Any) -> str:
    """The provider's usage object, its counts as ``key=value`` (nested detail objects flattened)."""
    if not isinstance(usage, dict):
        return "no usage sent"
    parts = []
    for k, v in usage.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            parts.append(f"{k}={v}")
        elif isinstance(v, dict):
            parts += [f"{k}.{k2}={v2}" for k2, v2 in v.items() if isinstance(v2, int) and v2]
    return " ".join(parts)


def exchange_line(e: dict[str, Any]) -> str:
    """One line per logged exchange: api, endpoint, transport, stream, status, model, usage."""
    transport = "ws" if e.get("transport") == "websocket" else "http"
    stream = "stream" if e.get("stream") else "plain"
    calls = ",".join(c["name"] for c in e.get("tool_calls") or [])
    what = f" tool_call={calls}" if calls else ""
    return (f"#{e.get('seq')} {e.get('api') or '-'} {e.get('endpoint')} {transport} {stream} {e.get('status')} "
            f"model={e.get('model_requested') or '-'}{what} usage: {_usage_text(e.get('usage'))}")


def report(result: RunResult) -> str:
    """The human summary of a run."""
    lines = [f"== {result.name}: exit {result.returncode if result.returncode is not None else 'timeout'}, "
             f"wall {result.wall_s:.2f} s", "-- stdout:", result.stdout.rstrip()]
    if result.stderr.strip():
        lines += ["-- stderr:", result.stderr.rstrip()]
    lines.append(f"-- {len(result.exchanges)} exchange(s), {result.llm_calls} LLM call(s):")
    lines += [exchange_line(e) for e in result.exchanges]
    names = sorted({d.split()[0] for d in result.dns if d.split()})
    lines.append(f"-- names looked up (answered NXDOMAIN): {', '.join(names) if names else 'none'}")
    lines.append(f"-- probe output back to the model: {'yes' if result.probe_seen else 'NO'}")
    lines.append(f"== {result.name}: {'OK' if result.ok else 'FAILED'} ({result.llm_calls} LLM calls, "
                 f"{result.wall_s:.2f} s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


@contextlib.contextmanager
def _run_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        yield keep
        return
    tmp = Path(tempfile.mkdtemp(prefix="agentsight-cli-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentsight.demo.clis", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="npm install the pinned CLIs that are missing")
    sub.add_parser("list", help="the setups, their packages and whether they are installed")
    r = sub.add_parser("run", help="run one CLI on the 2-turn task, offline (root)")
    r.add_argument("name", choices=sorted(SETUPS))
    r.add_argument("--keep", type=Path, help="run in this directory and keep it (home, work, logs)")
    r.add_argument("--timeout", type=float, default=180.0, help="seconds before the CLI is killed")
    d = sub.add_parser("dns-sink", help=argparse.SUPPRESS)
    d.add_argument("--log", type=Path, required=True)
    d.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "dns-sink":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        serve_dns(a.log, a.ready_file)
        return 0
    if a.cmd == "list":
        for s in SETUPS.values():
            have = _installed_version(cache_dir(), s.package)
            state = "installed" if have == s.package.version else f"not installed (found {have})" if have else "missing"
            print(f"{s.name:20} {s.package.name}@{s.package.version:10} {s.wire:38} {state}")
        return 0
    try:
        if a.cmd == "install":
            done = install()
            print(f"clis: installed {', '.join(f'{x.name}@{x.version}' for x in done)}" if done
                  else f"clis: all pinned CLIs are already in {cache_dir()}")
            return 0
        if os.geteuid() != 0:
            print("clis: run needs root (it creates a network namespace): use sudo", file=sys.stderr)
            return 2
        with _run_dir(a.keep) as run_dir:
            result = run(a.name, run_dir, a.timeout)
            print(report(result), flush=True)
        return 0 if result.ok else 1
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"clis: {exc}{': ' + detail.strip() if detail else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
