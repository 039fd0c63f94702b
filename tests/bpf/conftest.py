"""Tests in this folder load real eBPF programs: they need root, bcc and tracefs, else they skip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentsight.bpfprog import BpfUnavailable, require_bpf


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
