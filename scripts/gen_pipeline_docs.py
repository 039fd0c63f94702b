#!/usr/bin/env python3
"""Regenerate the component reference in docs/pipeline.md from the components' OPTIONS.

The part between the GENERATED markers is rewritten; tests/unit/test_docs.py fails when
it is out of date. Usage: scripts/gen_pipeline_docs.py [--check]
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from agentsight.pipeline.registry import TYPES, component_class

DOC = Path(__file__).resolve().parents[1] / "docs" / "pipeline.md"
BEGIN, END = "<!-- GENERATED: components -->", "<!-- END GENERATED -->"


def reference() -> str:
    out: list[str] = []
    for kind in ("source", "analyzer", "sink"):
        for t in sorted(TYPES[kind]):
            cls = component_class(kind, t)
            mod = importlib.import_module(cls.__module__)
            first = (mod.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            out.append(f"### {kind} `{t}`\n\n{first}\n")
            if cls.OPTIONS:
                out.append("| option | type | default | live | meaning |\n|---|---|---|---|---|")
                for n, o in cls.OPTIONS.items():
                    types = o.type if isinstance(o.type, tuple) else (o.type,)
                    tn = " or ".join(x.__name__ for x in types)
                    d = "required" if o.required else repr(o.default)
                    ch = f" (one of {', '.join(map(repr, o.choices))})" if o.choices else ""
                    if o.flag:
                        ch += f"; command-line flag `{o.flag}`"
                    if o.renamed_from:
                        ch += f"; formerly `{o.renamed_from[0]}`, still accepted with a deprecation warning"
                    out.append(f"| `{n}` | {tn} | `{d}` | {'yes' if o.live else ''} | "
                               f"{o.help.replace('|', '/')}{ch} |")
                out.append("")
    return "\n".join(out)


def render(current: str) -> str:
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{reference()}\n{END}{tail}"


if __name__ == "__main__":
    text = DOC.read_text()
    new = render(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else 1)
    DOC.write_text(new)
