"""Every registered component type declares (``CAPS``) exactly the hooks it implements.

The runtime and the config loader call a hook only when its capability is declared, so a
hook implemented but not declared would never run, and one declared but not implemented
would run the base's no-op.
"""

from __future__ import annotations

import inspect
import sys

import pytest

from agentsight.pipeline.component import Analyzer, Capabilities, Component, Sink
from agentsight.pipeline.registry import TYPES, component_class

BPF = "agentsight.kernel.bpfprog"  # a module that loads an eBPF program uses this one
ALL = [(kind, name) for kind, types in TYPES.items() for name in types]


def _overrides(cls: type, base: type, hook: str) -> bool:
    mine = inspect.getattr_static(cls, hook, None)
    theirs = inspect.getattr_static(base, hook, None)
    unwrap = lambda f: getattr(f, "__func__", f)  # noqa: E731 (classmethods)
    return mine is not None and unwrap(mine) is not unwrap(theirs)


def _implemented(cls: type[Component]) -> Capabilities:
    module = sys.modules[cls.__module__]
    return Capabilities(
        needs_bpf=BPF in {getattr(v, "__module__", getattr(v, "__name__", None)) for v in vars(module).values()},
        raw_frames="decode" in cls.OPTIONS and (not issubclass(cls, Sink) or _overrides(cls, Sink, "write_raw")),
        batch=issubclass(cls, Analyzer) and _overrides(cls, Analyzer, "process_batch"),
        tick=issubclass(cls, Analyzer) and _overrides(cls, Analyzer, "tick"),
        settle=_overrides(cls, Component, "settle"),
        follow=_overrides(cls, Component, "follow"),
        requests=_overrides(cls, Component, "requests"),
        check_options=_overrides(cls, Component, "check_options"),
        claims=_overrides(cls, Component, "claims"),
    )


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_declared_capabilities_match_the_hooks(kind: str, name: str) -> None:
    cls = component_class(kind, name)
    assert cls.CAPS == _implemented(cls)


def test_a_type_that_answers_control_also_asks() -> None:
    # on_control and on_mark answer what requests asked for: they come with it.
    for kind, name in ALL:
        cls = component_class(kind, name)
        if _overrides(cls, Component, "on_control") or _overrides(cls, Component, "on_mark"):
            assert cls.CAPS.requests, f"{kind}:{name}"


def test_raw_frames_follow_the_decode_option() -> None:
    from agentsight.actors.analyzers.passthrough import Passthrough
    from agentsight.actors.sinks.null import NullSink

    assert Passthrough("p", {"decode": False}).raw and not Passthrough("p").raw
    assert NullSink("n", {"decode": False}).raw and not NullSink("n").raw
