"""`agentsight report summary|tokens|prompts|export --db FILE`: answers from a recording."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentsight.commands.common import app, fail

if TYPE_CHECKING:
    from agentsight.recording.store import Store

__all__ = ["report_app"]

report_app = typer.Typer(help="Read a recording: summary, tokens, prompts, JSON export.", no_args_is_help=True)
app.add_typer(report_app, name="report")

# Without --db: the always-on collector's store (`agentsight service`), when there is one.
COLLECTOR_STORE = Path(os.environ.get("AGENTSIGHT_STORE", "/var/lib/agentsight/agents.db"))
DbOpt = Annotated[Path, typer.Option("--db", help="The recording (from `agentsight record`); default: the "
                                     "collector's store, /var/lib/agentsight/agents.db.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]


@contextmanager
def _open(db: Path) -> Iterator[Store]:
    from agentsight.recording.store import Store, StoreError

    if db == COLLECTOR_STORE and not db.exists():
        fail(f"no --db given and no collector store at {db} (agentsight service install, or record one)")
    try:
        store = Store(db, readonly=True)
    except StoreError as exc:
        fail(str(exc))
    try:
        yield store
    finally:
        store.close()


def _dump(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@report_app.command()
def summary(db: DbOpt = COLLECTOR_STORE, as_json: JsonOpt = False) -> None:
    """Duration, LLM calls by model with tokens and cost, processes, files, endpoints, losses."""
    from agentsight.recording import report

    with _open(db) as store:
        s = report.summary(store)
    _dump(s) if as_json else typer.echo(report.format_summary(s))


@report_app.command()
def tokens(db: DbOpt = COLLECTOR_STORE,
           by: Annotated[str, typer.Option("--by", help="Group by model, provider, process or session.")] = "model",
           as_json: JsonOpt = False) -> None:
    """Token usage and estimated cost, grouped."""
    from agentsight.recording import report

    if by not in report.GROUPS:
        fail(f"--by must be one of {', '.join(report.GROUPS)}, not {by!r}")
    with _open(db) as store:
        rows = report.tokens(store, by)
    _dump(rows) if as_json else typer.echo(report.format_tokens(rows, by))


@report_app.command()
def prompts(db: DbOpt = COLLECTOR_STORE,
            limit: Annotated[int, typer.Option("--limit", help="At most this many calls (0: all).")] = 0,
            full: Annotated[bool, typer.Option("--full", help="Every message, nothing shortened.")] = False,
            as_json: JsonOpt = False) -> None:
    """Each LLM call: system prompt, messages, tools offered, the answer and its tool calls."""
    from agentsight.recording import report

    with _open(db) as store:
        calls = report.prompts(store, limit)
    _dump(calls) if as_json else typer.echo(report.format_prompts(calls, full))


@report_app.command()
def export(db: DbOpt = COLLECTOR_STORE,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (0600) instead of "
                                                       "stdout.")] = None,
           events: Annotated[bool, typer.Option("--events", help="Include every raw event.")] = False) -> None:
    """The whole recording as one JSON document."""
    from agentsight.recording import report

    with _open(db) as store:
        doc = report.export(store, events)
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if output is None:
        typer.echo(text)
    else:
        report.write_private(str(output), text + "\n")
        typer.echo(f"wrote {output}", err=True)
