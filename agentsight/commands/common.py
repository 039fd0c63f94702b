"""What every `agentsight` command shares: the typer app, one-line failures, common options.

The command modules (:mod:`agentsight.commands.app`, ``capture``, ``report``, ``service``,
``top``) import from here and never from each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from agentsight import __version__

app = typer.Typer(
    name="agentsight",
    help="Observe AI agents from outside with eBPF: processes, files, TLS plaintext, LLM calls, tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback, non-zero exit."""
    typer.echo(f"agentsight: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentsight {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


ConfigOpt = Annotated[Path, typer.Option("--config", "-C", help="pipeline.toml to use.")]
# The web UI options `run`, `debug` and `record` share (defaults: agentsight.web).
ServerHostOpt = Annotated[str, typer.Option("--server-host", help="Web UI address.")]
ServerPortOpt = Annotated[int, typer.Option("--server-port", help="Web UI port.")]
ServerTokenOpt = Annotated[str, typer.Option("--server-token", envvar="AGENTSIGHT_TOKEN", show_envvar=True,
                                             help="Token the web UI requires (default: the one stored in "
                                             "~/.config/agentsight/web-token; set it off loopback).")]


def need_bpf(prefix: str = "", hint: str = "") -> None:
    """Exit with one line unless eBPF capture can work here (root, bcc, headers, tracefs)."""
    from agentsight.kernel.bpfprog import BpfUnavailable, require_bpf

    try:
        require_bpf(import_bcc=False)
    except BpfUnavailable as exc:
        fail(f"{prefix}{exc}{hint}")


def need_port(host: str, port: int) -> None:
    """Exit with one line when the web UI could not listen on host:port."""
    from agentsight.pipeline.presets import port_problem

    problem = port_problem(host, port)
    if problem:
        fail(problem)


def load_config(path: Path) -> Any:
    from agentsight.pipeline.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        typer.echo(f"agentsight: {path}: {len(exc.problems)} problem(s):", err=True)
        for p in exc.problems:
            typer.echo(f"  {p}", err=True)
        raise typer.Exit(2) from None


def bus_endpoint(connect: str | None, pipeline: str, runtime_dir: Path | None) -> str:
    from agentsight.runtime.endpoints import RunDir, RunDirError, default_runtime_dir

    if connect:
        return connect
    try:
        run = RunDir(runtime_dir or default_runtime_dir(pipeline))
        run.check()  # a bus in a directory someone else made could be theirs
    except RunDirError as exc:
        fail(str(exc))
    if not (run.path / "bus").exists():
        fail(f"no running pipeline {pipeline!r} with a bus at {run.path} (start one with `agentsight run`, "
             "or pass --connect)")
    return run.bus_out
