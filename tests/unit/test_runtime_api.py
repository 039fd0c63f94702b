"""The runtime's public API for commands, without a pipeline: the typed status reply and how a
client waits on it, and the held command `record` starts."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from agentsight.runtime.held import CANCELLED, STATUS_LOST, HeldCommand, Owner, exit_code, invoking_user
from agentsight.runtime.status import ActorStatus, PipelineStatus, StatusError, ask, wait_running

REPORT: dict[str, Any] = {
    "pipeline": "record", "pid": 4242, "uptime_s": 3.5, "phase": "running", "config": None,
    "runtime_dir": "/run/agentsight/record",
    "instances": [
        {"id": "bus", "kind": "bus", "name": "bus", "state": "running", "pid": 11, "restarts": 0,
         "received": 0, "sent": 0, "dropped": 0, "errors": 0, "stats": {}, "message": ""},
        {"id": "analyzers/http#1", "kind": "analyzer", "name": "http", "state": "running", "pid": 12,
         "restarts": 2, "received": 10, "sent": 9, "dropped": 1, "errors": 0, "stats": {"conns": 3},
         "message": ""},
        {"id": "sinks/otlp", "kind": "sink", "name": "otlp", "state": "running", "pid": 13, "restarts": 0,
         "received": 5, "sent": 0, "dropped": 4, "errors": 0, "stats": {"spans_exported": 5}, "message": ""},
    ],
    "events": ["pipeline 'record' running: 3 processes, runtime dir /run/agentsight/record"],
}


def test_a_status_reply_is_typed_and_round_trips() -> None:
    status = PipelineStatus.from_dict(json.loads(json.dumps(REPORT)))
    assert status.running and status.pipeline == "record" and status.pid == 4242
    (http,) = status.actors("analyzer", "http")
    assert http == ActorStatus("analyzers/http#1", "analyzer", "http", "running", 12, restarts=2, received=10,
                               sent=9, dropped=1, stats={"conns": 3})
    assert status.dropped() == 5
    assert status.dropped(without=lambda a: a.kind == "sink" and a.name == "otlp") == 1
    assert status.to_dict() == REPORT


def test_a_reply_from_before_phases_and_names_still_reads() -> None:
    old = {k: v for k, v in REPORT.items() if k != "phase"}
    old["instances"] = [{k: v for k, v in r.items() if k != "name"} for r in REPORT["instances"]]
    status = PipelineStatus.from_dict(old)
    assert status.running  # it answered only once up
    assert [a.name for a in status.instances] == ["bus", "http", "otlp"]


@pytest.fixture
def status_socket(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A REP socket answering with the reports queued in the list (the last one again when it runs out)."""
    endpoint = f"ipc://{tmp_path}/status"
    replies: list[dict[str, object]] = []
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(endpoint)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            if rep.poll(50):
                rep.recv_multipart()
                rep.send(json.dumps(replies.pop(0) if len(replies) > 1 else replies[0]).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield endpoint, replies
    done.set()
    thread.join(5)
    rep.close()
    ctx.term()


def test_ask_returns_the_typed_reply(status_socket: tuple[str, list[dict[str, object]]]) -> None:
    endpoint, replies = status_socket
    replies.append(REPORT)
    assert ask(endpoint, 2.0) == PipelineStatus.from_dict(REPORT)


def test_ask_without_an_answer_says_so(tmp_path: Path) -> None:
    with pytest.raises(StatusError, match="did not answer within 0.2 s"):
        ask(f"ipc://{tmp_path}/nobody", 0.2)


def test_wait_running_waits_through_starting(status_socket: tuple[str, list[dict[str, object]]]) -> None:
    endpoint, replies = status_socket
    replies.extend([{**REPORT, "phase": "starting"}, {**REPORT, "phase": "starting"}, REPORT])
    assert wait_running(endpoint, 10.0, step=0.05).running
    assert replies == [REPORT]  # every "starting" was asked past


def test_wait_running_gives_the_supervisors_word_when_it_stops(
        status_socket: tuple[str, list[dict[str, object]]]) -> None:
    endpoint, replies = status_socket
    replies.append({**REPORT, "phase": "stopping", "events": ["sources/ssl could not start: needs root"]})
    with pytest.raises(StatusError, match="needs root") as err:
        wait_running(endpoint, 10.0, step=0.05)
    assert err.value.status is not None and err.value.status.phase == "stopping"


def test_wait_running_stops_when_the_process_is_gone(tmp_path: Path) -> None:
    with pytest.raises(StatusError, match="exited") as err:
        wait_running(f"ipc://{tmp_path}/never", 10.0, alive=lambda: False, step=0.05)
    assert err.value.status is None
    with pytest.raises(StatusError, match="not running after"):
        wait_running(f"ipc://{tmp_path}/never", 0.2, step=0.05)


def test_a_held_command_runs_only_once_released(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    held = HeldCommand([sys.executable, "-c", f"open({str(out)!r}, 'w').write('x'); raise SystemExit(7)"])
    pid = held.start()
    assert pid > 0 and held.held
    assert held.wait(0.2) is None and not out.exists()  # held: nothing ran
    held.release()
    assert not held.held
    assert held.wait(30) == 7 and out.read_text() == "x"
    held.release()  # once only; a second call does nothing


def test_a_held_command_cancelled_exits_without_running(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    held = HeldCommand(["sh", "-c", f"touch {out}"])
    held.start()
    held.cancel()
    assert held.wait() == CANCELLED and not out.exists()


def test_a_held_command_whose_status_another_waiter_took_is_not_a_success(capfd: pytest.CaptureFixture[str]) -> None:
    held = HeldCommand(["true"])
    held.start()
    held.release()
    os.waitpid(held.pid, 0)  # collected here, behind the held command's back
    assert held.wait() == STATUS_LOST != 0
    assert f"the exit status of true (pid {held.pid}) was collected by another process" in capfd.readouterr().err


def test_a_held_command_killed_by_a_signal_says_128_plus_it() -> None:
    held = HeldCommand(["sleep", "30"])
    held.start()
    held.release()
    held.send_signal(signal.SIGTERM)
    assert held.wait(30) == 128 + signal.SIGTERM
    assert exit_code(0) == 0


def test_a_held_command_that_cannot_run_exits_126(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    held = HeldCommand([str(script)])
    held.start()
    held.release()
    assert held.wait(30) == 126
    assert f"agentsight: cannot run {script}: Permission denied" in capfd.readouterr().err


def test_the_sudo_user_is_who_the_command_runs_as(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert invoking_user() is None
    if os.geteuid() != 0:
        return
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    owner = invoking_user()
    assert owner is not None and (owner.user, owner.group) == (65534, 65534)
    assert owner == Owner(65534, 65534, owner.extra_groups, owner.env)
