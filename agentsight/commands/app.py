"""The `agentsight` command line (typer).

Every command that captures builds a pipeline and hands it to the supervisor:
one runtime, whether the graph comes from pipeline.toml or from flags.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agentsight.commands.common import (
    ConfigOpt,
    ServerHostOpt,
    ServerPortOpt,
    ServerTokenOpt,
    app,
    bus_endpoint,
    fail,
    load_config,
    need_bpf,
    need_port,
)
from agentsight.web import DEFAULT_HOST, DEFAULT_PORT


@app.command()
def validate(config: ConfigOpt) -> None:
    """Check a pipeline.toml (types, options, inputs, cycles, endpoint clashes) without starting it."""
    spec = load_config(config)
    kinds = {k: len(spec.of_kind(k)) for k in ("source", "analyzer", "sink")}
    procs = sum(c.workers for c in spec.components.values()) + (1 if spec.bus.enabled else 0)
    typer.echo(f"{config}: ok: {kinds['source']} sources, {kinds['analyzer']} analyzers, "
               f"{kinds['sink']} sinks, {procs} processes")


@app.command()
def run(
    config: ConfigOpt,
    watch: Annotated[bool, typer.Option(help="Reload the config when the file changes.")] = True,
    runtime_dir: Annotated[Path | None, typer.Option(help="Where the run keeps its sockets.")] = None,
    server: Annotated[bool, typer.Option("--server", help="Also serve the web UI of what the sinks get.")] = False,
    server_host: ServerHostOpt = DEFAULT_HOST,
    server_port: ServerPortOpt = DEFAULT_PORT,
    server_token: ServerTokenOpt = "",
) -> None:
    """Run the pipeline in pipeline.toml until Ctrl-C (or until its sources finish)."""
    from agentsight.pipeline.config import validate as validate_spec
    from agentsight.runtime.endpoints import RunDirError
    from agentsight.runtime.supervisor import Supervisor

    def with_server(spec: Any) -> Any:
        """The spec plus a web sink fed what the file's sinks are fed."""
        from agentsight.pipeline.config import ComponentSpec

        inputs = sorted({i for c in spec.of_kind("sink") for i in c.inputs})
        name = next(n for n in ("web_ui", "web_ui_2", "web_ui_3") if n not in spec.components)
        spec.components[name] = ComponentSpec(
            kind="sink", name=name, type="web", inputs=inputs,
            options={"host": server_host, "port": server_port, "token": server_token})
        return spec

    spec = load_config(config)
    if server:
        spec = with_server(spec)
        problems = validate_spec(spec)
        if problems:
            fail("; ".join(str(p) for p in problems))
        need_port(server_host, server_port)
    spec.supervisor.watch = watch and spec.supervisor.watch
    from agentsight.pipeline.presets import needs_bpf

    if needs_bpf(spec):
        need_bpf(f"{config}: ")
    try:
        sup = Supervisor(spec, config, runtime_dir)
        if server:
            sup.amend = with_server
        code = sup.run_forever()
    except RunDirError as exc:
        fail(str(exc))
    typer.echo(sup.summary(), err=True)
    raise typer.Exit(code)


@app.command()
def tap(
    prefixes: Annotated[list[str] | None, typer.Argument(help="Topic prefixes (ssl. http. llm. process. ...); none: all.")] = None,
    connect: Annotated[str | None, typer.Option(help="Bus endpoint (ipc://... or tcp://HOST:PORT).")] = None,
    pipeline: Annotated[str, typer.Option(help="Name of the local pipeline to attach to.")] = "default",
    runtime_dir: Annotated[Path | None, typer.Option(help="Runtime dir of the pipeline.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of readable lines.")] = False,
    server_key: Annotated[str | None, typer.Option(help="Remote bus public key (file or Z85).")] = None,
    client_key: Annotated[str | None, typer.Option(help="Your .key_secret file, authorized on the bus.")] = None,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: no limit).")] = 0,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: no limit).")] = 0.0,
) -> None:
    """Print live events from a running pipeline's bus."""
    from agentsight.commands.render import pretty
    from agentsight.jsonform import event_to_json
    from agentsight.runtime.bus import load_public_key, load_secret_key
    from agentsight.runtime.subscriber import Subscriber

    endpoint = bus_endpoint(connect, pipeline, runtime_dir)
    try:
        sub = Subscriber(endpoint, prefixes or [""],
                         server_key=load_public_key(server_key) if server_key else None,
                         client_keys=load_secret_key(client_key) if client_key else None)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    color = sys.stdout.isatty()
    end = time.monotonic() + duration if duration else None
    seen = 0
    reported_lost = 0
    refused = ""
    out = sys.stdout
    try:
        while not stop["flag"] and (end is None or time.monotonic() < end):
            events = sub.recv(0.2)
            for e in events:
                out.write((event_to_json(e) if as_json else pretty(e, color)) + "\n")
                seen += 1
                if count and seen >= count:
                    stop["flag"] = True
                    break
            if events:
                out.flush()
            if sub.stats.lost > reported_lost:
                typer.echo(f"agentsight tap: {sub.stats.lost - reported_lost} events lost on the bus "
                           f"(this tap is slower than the pipeline)", err=True)
                reported_lost = sub.stats.lost
            if sub.stats.refused and sub.stats.refused != refused:
                refused = sub.stats.refused
                typer.echo(f"agentsight tap: {refused}", err=True)
    except BrokenPipeError:
        pass
    finally:
        sub.close()
    why = f"; refused: {sub.stats.refused}" if sub.stats.refused else ""
    typer.echo(f"agentsight tap: {sub.stats.events} events in {sub.stats.frames} frames, "
               f"{sub.stats.lost} lost, {sub.stats.bad_frames} bad frames{why}", err=True)


@app.command()
def status(
    pipeline: Annotated[str, typer.Option(help="Name of the local pipeline.")] = "default",
    runtime_dir: Annotated[Path | None, typer.Option(help="Runtime dir of the pipeline.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status as JSON.")] = False,
) -> None:
    """Per-actor state, pid, restarts and received/sent/dropped/errors of a running pipeline."""
    from agentsight.runtime.endpoints import RunDir, RunDirError, default_runtime_dir
    from agentsight.runtime.status import StatusError, ask
    from agentsight.runtime.supervisor import actor_table

    try:
        run = RunDir(runtime_dir or default_runtime_dir(pipeline))
        run.check()
    except RunDirError as exc:
        fail(str(exc))
    if not (run.path / "status").exists():
        fail(f"no running pipeline {pipeline!r} at {run.path}")
    try:
        report = ask(run.status, 3.0)
    except StatusError as exc:
        fail(f"pipeline at {run.path} {exc}")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(f"pipeline {report.pipeline} (supervisor pid {report.pid}, up {report.uptime_s}s)")
    typer.echo(actor_table([a.to_dict() for a in report.instances], pid=True))


@app.command()
def keys(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the keys.")] = Path("keys"),
    client: Annotated[list[str] | None, typer.Option(help="Client key names to make and authorize.")] = None,
) -> None:
    """Make CURVE keys for a bus reachable from other machines.

    Writes DIR/server.key (give it to subscribers), DIR/server.key_secret (the bus's),
    DIR/<client>.key_secret for each client, and DIR/authorized/<client>.key, the
    directory the bus's `authorized_keys` points at.
    """
    import shutil

    import zmq.auth

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    auth = directory / "authorized"
    auth.mkdir(exist_ok=True)
    made = []
    for name in ["server", *(client or ["client"])]:
        if (directory / f"{name}.key_secret").exists():
            typer.echo(f"keeping existing {directory / name}.key_secret")
        else:
            zmq.auth.create_certificates(str(directory), name)
            made.append(name)
        os.chmod(directory / f"{name}.key_secret", 0o600)
        if name != "server":
            shutil.copy(directory / f"{name}.key", auth / f"{name}.key")
    typer.echo(f"keys in {directory}: made {', '.join(made) or 'nothing new'}; "
               f"bus: secret_key = \"{directory}/server.key_secret\", authorized_keys = \"{auth}\"")


@app.command()
def serve(
    db: Annotated[Path, typer.Option("--db", help="Recording to serve (read-only; rows appended later show live).")],
    host: Annotated[str, typer.Option(help="Address to listen on; a non-loopback one needs --token.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="TCP port.")] = DEFAULT_PORT,
    token: Annotated[str, typer.Option(help="Secret the page and API require (default: the stored one, "
                                       "~/.config/agentsight/web-token).", envvar="AGENTSIGHT_TOKEN")] = "",
) -> None:
    """Serve the web UI (timeline, process tree, LLM calls, log) over a recording."""
    from agentsight.web.serve import ServeError
    from agentsight.web.serve import serve as serve_web

    try:
        serve_web(db, host, port, token)
    except ServeError as exc:
        fail(str(exc))


# The other command groups register themselves on the shared app when imported.
from agentsight.commands import capture as _capture  # noqa: E402,F401  (debug, record)
from agentsight.commands import report as _report  # noqa: E402,F401  (report)
from agentsight.commands import service as _service  # noqa: E402,F401  (service)
from agentsight.commands import top as _top  # noqa: E402,F401  (top)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
