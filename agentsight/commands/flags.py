"""The capture commands' source flags, made from the source options that declare one.

A source option that is also a flag (``Option(..., flag="--ssl-uid", flag_help=...)`` in
:mod:`agentsight.actors.sources.options`) becomes a typer option of each command decorated
with :func:`source_flags`; the command receives the values as ``source_options`` (source ->
option -> value, None for a flag whose default is "not given"), what
:attr:`agentsight.pipeline.presets.Capture.source_options` takes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from agentsight.pipeline.presets import CaptureFlag, capture_flags

__all__ = ["source_flags", "changed"]


def _parameter(f: CaptureFlag) -> inspect.Parameter:
    opt = f.declared
    kind = opt.type if isinstance(opt.type, type) else opt.type[0]
    default = opt.cli_default
    if kind is list:
        annotation: Any = list[str] | None
        default = None  # typer's "not given" for a repeatable flag
    elif default is None:
        annotation = kind | None
    else:
        annotation = kind
    return inspect.Parameter(f.param, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=Annotated[annotation, typer.Option(opt.flag, help=opt.flag_help or opt.help)])


def source_flags(only: Iterable[str] | None = None,
                 after: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the source flags (those named in ``only``, or all) to a command, after its parameter
    ``after`` (else at the end: where --help lists them); the command gets ``source_options``."""
    wanted = None if only is None else set(only)
    flags = [f for f in capture_flags() if wanted is None or f.declared.flag in wanted]

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(command, eval_str=True)  # real annotations: the wrapper keeps no module
        params = [p for p in sig.parameters.values() if p.name != "source_options"]
        added = [_parameter(f) for f in flags]
        at = next((i + 1 for i, p in enumerate(params) if p.name == after), len(params))
        params[at:at] = added

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values: dict[str, dict[str, Any]] = {}
            for f in flags:
                value = kwargs.pop(f.param)
                if isinstance(value, list | tuple):
                    value = list(value)
                values.setdefault(f.source, {})[f.option] = value
            return command(*args, source_options=values, **kwargs)

        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap


def changed(source_options: dict[str, dict[str, Any]], sources: Iterable[str]) -> bool:
    """Whether a flag of one of ``sources`` was given a value other than its default."""
    for f in (f for f in capture_flags() if f.source in set(sources)):
        value = source_options.get(f.source, {}).get(f.option)
        if value is not None and value != f.declared.cli_default and value != []:
            return True
    return False
