"""Source options declared once: the TOML key, the check, and the capture commands' flags."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agentsight.commands.flags import changed, source_flags
from agentsight.pipeline.config import parse, validate
from agentsight.pipeline.presets import Capture, capture_flags

# What docs/cli.md lists: each flag, the source option it sets, and its default on the command line.
FLAGS = {
    "--ssl-uid": ("ssl", "uid", -1), "--binary-path": ("ssl", "binary_path", []),
    "--ssl-handshake": ("ssl", "handshake", False), "--duration": ("process", "duration", 0),
    "--mode": ("process", "mode", 0), "--stdio-uid": ("stdio", "uid", -1),
    "--stdio-all-fds": ("stdio", "all_fds", False), "--stdio-max-bytes": ("stdio", "max_bytes", None),
    "--interval": ("system", "interval", 1.0), "--cpu-threshold": ("system", "cpu_threshold", 0.0),
    "--memory-threshold": ("system", "rss_threshold_mb", 0.0),
}


def test_the_flags_are_the_ones_the_cli_always_had() -> None:
    got = {f.declared.flag: (f.source, f.option, f.declared.cli_default) for f in capture_flags()}
    assert got == FLAGS


def _run(args: list[str], only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    app = typer.Typer()

    @app.command()
    @source_flags(only=only, after="name")
    def cmd(name: str = "x", source_options: dict[str, dict[str, Any]] | None = None) -> None:
        assert source_options is not None
        seen.update(source_options)

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return seen


def test_flags_become_source_options() -> None:
    got = _run(["--ssl-uid", "5", "--binary-path", "/a", "--binary-path", "/b", "--stdio-all-fds", "--mode", "2",
                "--memory-threshold", "10"])
    assert got["ssl"] == {"uid": 5, "binary_path": ["/a", "/b"], "handshake": False}
    assert got["stdio"] == {"uid": -1, "all_fds": True, "max_bytes": None}
    assert got["process"] == {"duration": 0, "mode": 2}
    assert got["system"]["rss_threshold_mb"] == 10.0
    assert changed(got, ["ssl"]) and changed(got, ["process"]) and changed(got, ["stdio"])
    defaults = _run([])
    assert not changed(defaults, ["ssl", "process", "stdio", "system"])
    assert _run(["--binary-path", "/a"], only=["--binary-path"]) == {"ssl": {"binary_path": ["/a"]}}


def test_a_capture_takes_the_flags_it_was_given_and_the_defaults_for_the_rest() -> None:
    cap = Capture(ssl=True, stdio=True, system=True, pid=42, tree=True,
                  source_options={"ssl": {"uid": 7, "binary_path": []}, "stdio": {"max_bytes": None, "all_fds": True},
                                  "system": {"interval": 2.0}})
    src = cap.sources()
    assert src["ssl"] == {"pid": 42, "tree": True, "uid": 7, "binary_path": []}
    assert src["stdio"] == {"pid": 42, "tree": True, "all_fds": True}  # max_bytes: the source's default
    assert src["system"] == {"pid": 42, "tree": True, "interval": 2.0}


def test_ring_pages_is_still_accepted_as_ring_kib(caplog: pytest.LogCaptureFixture) -> None:
    from agentsight.actors.sources.process import ProcessSource
    from agentsight.actors.sources.stdio import StdioSource

    with caplog.at_level(logging.WARNING):
        assert ProcessSource("p", {"ring_pages": 256}).options["ring_kib"] == 1024
    assert "option 'ring_pages' is deprecated: use ring_kib = 1024" in caplog.text
    assert StdioSource("s", {"pid": 1, "ring_pages": 8}).options["ring_kib"] == 32
    spec, problems = parse({"sources": {"p": {"type": "process", "ring_pages": 64}},
                            "sinks": {"n": {"type": "null", "inputs": ["p"]}}})
    assert problems + validate(spec) == []
    spec, problems = parse({"sources": {"p": {"type": "process", "ring_pages": 3}},
                            "sinks": {"n": {"type": "null", "inputs": ["p"]}}})
    assert [p.message for p in validate(spec)] == ["option 'ring_kib': must be a power of two number of 4 KiB "
                                                     "pages, like 1024"]


def test_debug_reads_a_running_collector_unless_a_source_flag_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentsight.commands import capture
    from agentsight.commands.common import app
    from agentsight.runtime import collector

    ran: list[tuple[str, Capture]] = []
    monkeypatch.setattr(collector, "running", lambda: True)
    monkeypatch.setattr(capture, "_debug_from_collector", lambda cap, *_: ran.append(("collector", cap)) or 0)
    monkeypatch.setattr(capture, "run_capture", lambda cap: ran.append(("own", cap)) or 0)
    for args in (["debug", "mcp"], ["debug", "trace", "--interval", "2"], ["debug", "mcp", "--stdio-uid", "5"],
                 ["debug", "trace", "--mode", "1"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert [how for how, _ in ran] == ["collector", "collector", "own", "own"]
    assert ran[0][1].flagged("stdio")["max_bytes"] == capture.STDIO_MAX_BYTES  # debug mcp keeps whole messages
    assert ran[3][1].sources()["process"]["mode"] == 1
