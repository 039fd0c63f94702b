"""Tests in this folder load real eBPF programs: they need root, bcc and tracefs, else they skip."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from agentsight.event import Event
from agentsight.kernel.bpfprog import BpfUnavailable, require_bpf


def _unavailable() -> str | None:
    try:
        require_bpf()
    except BpfUnavailable as exc:
        return str(exc)
    return None


_REASON = _unavailable()


@pytest.fixture(autouse=True)
def bpf_available() -> None:
    """Skip the test (with the one-line reason) unless eBPF can be loaded here."""
    if _REASON is not None:
        pytest.skip(_REASON)


@pytest.fixture
def source_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Open the test module's ``SOURCE`` class with the given options; every one is closed after."""
    cls = request.module.SOURCE
    opened: list[Any] = []

    def make(**options: object) -> Any:
        src = cls(cls.TYPE, options)
        src.open()
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


def run_gated(argv: list[str], attach: Callable[[int], Any], *, tree: bool = True, timeout: float = 90.0,
              stdout: int | IO[bytes] = subprocess.DEVNULL,
              stderr: int | IO[bytes] = subprocess.PIPE) -> tuple[list[Event], Any, subprocess.Popen[bytes]]:
    """Run ``argv`` behind a shell gate, traced from its first instruction.

    ``attach(pid)`` opens a source on the gate's pid (``tree``: the shell stays the parent;
    otherwise it execs ``argv``); the gate opens once it returns. Polls until ``argv`` ends,
    then drains the source. Returns (events, source, the finished gate process).
    """
    script = 'read go && "$@"' if tree else 'read go && exec "$@"'
    gate = subprocess.Popen(["/bin/sh", "-c", script, "sh", *argv], stdin=subprocess.PIPE, stdout=stdout,
                            stderr=stderr)
    assert gate.stdin is not None
    events: list[Event] = []
    try:
        source = attach(gate.pid)
        gate.stdin.write(b"go\n")
        gate.stdin.close()
        deadline = time.monotonic() + timeout
        while gate.poll() is None:
            assert time.monotonic() < deadline, f"{argv[0]} did not finish in {timeout}s"
            events.extend(source.poll(0.05))
        # Every record was committed before the client returned from its calls.
        events.extend(source.poll(0))
        events.extend(source.stop())
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
    return events, source, gate
