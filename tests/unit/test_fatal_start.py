"""A start failure is fatal (no restart) when the component raises FatalStartError, whatever the cause."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agentsight.pipeline.component import FatalStartError, OptionError, fatal_on


def test_a_bad_option_is_a_fatal_start_error() -> None:
    assert issubclass(OptionError, FatalStartError)


def test_fatal_on_keeps_the_message() -> None:
    with pytest.raises(FatalStartError, match=r"^\[Errno 2\] No such file or directory: '/nonexistent/x'$"):
        with fatal_on(OSError):
            open("/nonexistent/x")
    with pytest.raises(KeyError):  # anything else passes through (the supervisor retries it)
        with fatal_on(OSError):
            raise KeyError("x")


def test_no_bpf_is_fatal() -> None:
    from agentsight.kernel.bpfprog import BpfUnavailable

    assert issubclass(BpfUnavailable, FatalStartError)


def test_a_busy_port_is_fatal_not_a_bad_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentsight.actors.sinks.web import WebSink

    monkeypatch.setenv("AGENTSIGHT_TOKEN", "t" * 32)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        sink = WebSink("web", {"port": port, "db": str(tmp_path / "r.db"), "show_token": False})
        with pytest.raises(FatalStartError, match=f"cannot listen on 127.0.0.1:{port}") as caught:
            sink.open()
        assert not isinstance(caught.value, OptionError)
        sink.close()


def test_a_file_the_user_named_that_cannot_be_made_or_found_is_fatal(tmp_path: Path) -> None:
    from agentsight.actors.sinks.jsonl import JsonlSink
    from agentsight.actors.sinks.sqlite import SqliteSink
    from agentsight.actors.sources.replay import Replay

    nowhere = "/proc/agentsight-nowhere"  # no directory can be made here, even by root
    gone = tmp_path / "gone.jsonl"
    gone.write_text("")
    replay = Replay("r", {"path": str(gone)})
    gone.unlink()  # after the options were checked, before the start
    for component in (JsonlSink("j", {"path": f"{nowhere}/x.jsonl"}), SqliteSink("s", {"path": f"{nowhere}/x.db"}),
                      replay):
        with pytest.raises(FatalStartError, match="No such file or directory"):
            component.open()
