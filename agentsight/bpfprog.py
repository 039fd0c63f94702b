"""Loading the eBPF programs in ``bpf/`` with bcc, shared by every eBPF source.

- ``program_text(name, defines)`` gives the final C (what ``agentsight debug dump-bpf``
  prints, no root needed).
- ``require_bpf()`` turns "no root" / "no bcc" / "no kernel headers" into one-line
  :class:`BpfUnavailable` errors that say what to run.
- ``load(name, defines)`` compiles and loads with bcc.
- ``BootClock`` converts the kernel's boot-time nanoseconds (``bpf_ktime_get_boot_ns``)
  to wall-clock nanoseconds, the same way in every source.

bcc is imported lazily, only by the process that loads a program: it costs
~130 MB of LLVM per process, so no other actor may import it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BpfUnavailable", "program_text", "require_bpf", "load", "BootClock", "bpf_dir"]

SETUP_HINT = "run: sudo scripts/setup.sh"


class BpfUnavailable(RuntimeError):
    """eBPF cannot run here; the message is one line that says what to do."""


def bpf_dir() -> Path:
    """Where the C programs are: the installed ``agentsight.bpf`` package data."""
    return Path(str(resources.files("agentsight.bpf")))


def program_text(name: str, defines: dict[str, Any] | None = None) -> str:
    """The final C for ``bpf/<name>.bpf.c`` with ``#define``s for the options prepended.

    Local headers are inlined so the text is complete and auditable on its own.
    """
    root = bpf_dir()
    src = (root / f"{name}.bpf.c").read_text()
    lines = [f"// agentsight eBPF program {name}.bpf.c"]
    for key, value in sorted((defines or {}).items()):
        if isinstance(value, bool):
            value = int(value)
        lines.append(f"#define {key} {value}")
    out: list[str] = []
    for line in src.splitlines():
        stripped = line.strip()
        if stripped.startswith('#include "') and stripped.endswith('"'):
            header = stripped[len('#include "'):-1]
            out.append(f"// --- begin {header}")
            out.append((root / header).read_text())
            out.append(f"// --- end {header}")
        else:
            out.append(line)
    return "\n".join(lines + out) + "\n"


def require_bpf(import_bcc: bool = True) -> None:
    """Raise BpfUnavailable with a one-line reason unless eBPF can be loaded here.

    ``import_bcc=False`` only looks for the bcc package: the check the command-line
    processes make before starting actors, so they do not map libbcc (~60 MB of LLVM)
    for the whole run; the actor that loads a program imports it for real.
    """
    if os.geteuid() != 0:
        raise BpfUnavailable("eBPF capture needs root: run agentsight with sudo")
    if not import_bcc:
        if importlib.util.find_spec("bcc") is None:
            raise BpfUnavailable(f"bcc is not installed for this Python; {SETUP_HINT}")
    else:
        try:
            import bcc  # noqa: F401
        except ImportError as exc:
            raise BpfUnavailable(f"bcc is not importable ({exc}); {SETUP_HINT}") from None
    build = Path("/lib/modules") / os.uname().release / "build"
    if not build.exists():
        raise BpfUnavailable(f"no kernel headers at {build}; {SETUP_HINT}")
    if not Path("/sys/kernel/tracing/events").exists() and not Path("/sys/kernel/debug/tracing/events").exists():
        raise BpfUnavailable("tracefs is not mounted; run: sudo mount -t tracefs nodev /sys/kernel/tracing")


def load(name: str, defines: dict[str, Any] | None = None) -> Any:
    """Compile and load ``bpf/<name>.bpf.c``; returns the ``bcc.BPF`` object."""
    require_bpf()
    from bcc import BPF

    text = program_text(name, defines)
    try:
        return BPF(text=text.encode(), cflags=["-Wno-macro-redefined", "-Wno-unused-value"])
    except Exception as exc:  # bcc raises bare Exception on compile errors
        raise BpfUnavailable(f"could not load bpf/{name}.bpf.c: {exc}") from None


class BootClock:
    """Boot-time ns (``bpf_ktime_get_boot_ns``) -> wall-clock ns.

    The offset is measured once, as the midpoint of two CLOCK_REALTIME reads around
    one CLOCK_BOOTTIME read, and reused, so every event of a run uses the same mapping.
    """

    def __init__(self) -> None:
        best = None
        for _ in range(5):
            a = time.clock_gettime_ns(time.CLOCK_REALTIME)
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            c = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if best is None or c - a < best[0]:
                best = (c - a, (a + c) // 2 - b)
        assert best is not None
        self.offset_ns = best[1]

    def wall_ns(self, boot_ns: int) -> int:
        return boot_ns + self.offset_ns
