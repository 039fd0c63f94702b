"""The component checks of a pipeline, done in a short-lived process when asked.

Checking a config imports the module of every component it names (their options, checks,
claimed endpoints, whether they need eBPF): 30-35 MB of modules a supervisor would keep
imported for as long as it runs, though only the actors use them. A long-lived supervisor
(the always-on collector) calls :func:`isolate` first; from then on :func:`validate
<agentsight.pipeline.config.validate>` and :func:`needs_bpf
<agentsight.pipeline.presets.needs_bpf>` ask a child, ``python -m
agentsight.pipeline.check``, which reads the spec as JSON on stdin, checks it the usual way
and writes ``{"problems": [[section, message], ...], "needs_bpf": bool}`` on stdout. The
answer for the last spec asked about is kept, so a start or a reload costs one child. The
price: each check imports the modules anew (0.3-2.5 s on a loaded 2-core machine), which a
reload waits for; `agentsight run` keeps checking in process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentsight.pipeline.config import PipelineSpec

__all__ = ["isolate", "isolated", "facts", "facts_in_child", "needs_bpf_in_child", "CheckFailed"]

CHILD_TIMEOUT_S = 120.0
_isolated = False
_last: tuple[str, dict[str, Any]] | None = None
_bpf: dict[tuple[tuple[str, str], ...], bool] = {}  # whether a set of component types needs eBPF (options do not change it)


class CheckFailed(RuntimeError):
    """The checking child could not answer (it crashed, or timed out)."""


def isolate(on: bool = True) -> None:
    """Check components in a child from now on (this process keeps their modules out)."""
    global _isolated
    _isolated = on


def isolated() -> bool:
    return _isolated


def facts(spec: PipelineSpec) -> dict[str, Any]:
    """What the component classes say of ``spec``, checked here: its problems, and whether it needs eBPF."""
    from agentsight.pipeline import config, presets

    problems = config.validate(spec)
    try:
        bpf = presets.needs_bpf(spec)
    except (LookupError, ImportError):  # an unknown type: one of the problems already
        bpf = False
    return {"problems": [[p.section, p.message] for p in problems], "needs_bpf": bpf}


def facts_in_child(spec: PipelineSpec) -> dict[str, Any]:
    """:func:`facts` of ``spec`` from a short-lived child (the last answer is reused)."""
    global _last
    text = json.dumps(spec.to_dict(), sort_keys=True)
    if _last is not None and _last[0] == text:
        return _last[1]
    try:
        out = subprocess.run([sys.executable, "-m", "agentsight.pipeline.check"], input=text, capture_output=True,
                             text=True, timeout=CHILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckFailed(f"the config check did not finish: {exc}") from None
    try:
        answer: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        last = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        raise CheckFailed(f"the config check failed: {last}") from None
    _last = (text, answer)
    _bpf[_types(spec)] = bool(answer.get("needs_bpf"))
    return answer


def needs_bpf_in_child(spec: PipelineSpec) -> bool:
    """Whether ``spec`` needs eBPF, as the child that checked it (or one with the same types) said."""
    known = _bpf.get(_types(spec))
    return known if known is not None else bool(facts_in_child(spec)["needs_bpf"])


def _types(spec: PipelineSpec) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(c.kind, c.type) for c in spec.components.values()}))


def main() -> int:
    from agentsight.pipeline.config import spec_from_dict

    spec = spec_from_dict(json.loads(sys.stdin.read()))
    print(json.dumps(facts(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
