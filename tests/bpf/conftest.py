"""Tests in this folder load real eBPF programs: they need root, bcc and tracefs, else they skip."""

from __future__ import annotations

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
