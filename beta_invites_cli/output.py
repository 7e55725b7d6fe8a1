"""Rendering records as a table, CSV or JSON: the one `--format` every listing command shares.

Data goes to stdout; messages go to stderr. rich is imported only when a table is drawn.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any, TypeVar
from uuid import UUID

import click

FORMATS = ("table", "csv", "json")
F = TypeVar("F", bound=Callable[..., Any])


def format_option(default: str = "table") -> Callable[[F], F]:
    """The shared `--format table|csv|json` option."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format: a table for people, CSV or JSON for programs.",
    )


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False
    render: Callable[[Any], str] | None = None  # table view only


def plain(value: Any) -> Any:
    """A JSON- and CSV-friendly form of a database value (ISO 8601 timestamps with offset)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def write_csv(records: Iterable[Mapping[str, Any]], keys: Sequence[str], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    count = 0
    converted: dict[Any, Any] = {}  # a batch shares timestamps: format each one once

    def value_of(value: Any) -> Any:
        if value is None:
            return ""
        if type(value) is str or type(value) is int:
            return value
        if value not in converted:
            if len(converted) > 1000:
                converted.clear()
            converted[value] = plain(value)
        return converted[value]

    for record in records:
        writer.writerow([value_of(record.get(k)) for k in keys])
        count += 1
    return count


def write_json(records: Iterable[Mapping[str, Any]], keys: Sequence[str], out: IO[str]) -> int:
    """A JSON list written one object at a time, so a long export never sits in memory."""
    count = 0
    out.write("[")
    for record in records:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps({k: plain(record.get(k)) for k in keys}, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def table_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def write_table(
    records: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    out: IO[str],
    *,
    title: str | None = None,
    footer: Mapping[str, Any] | None = None,
) -> int:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_footer=footer is not None)
    for column in columns:
        footer_value = ""
        if footer is not None:
            raw = footer.get(column.key)
            footer_value = (
                column.render(raw) if column.render and raw is not None else table_text(raw)
            )
        table.add_column(
            column.header, justify="right" if column.numeric else "left", footer=footer_value
        )
    count = 0
    for record in records:
        cells = []
        for column in columns:
            value = record.get(column.key)
            cells.append(column.render(value) if column.render else table_text(value))
        table.add_row(*cells)
        count += 1
    console(out).print(table)
    return count


def console(out: IO[str] | None = None, *, stderr: bool = False) -> Any:
    """A rich Console; rich itself honours NO_COLOR and drops styling when not on a terminal."""
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False)
    out = out or sys.stdout
    # Piped output is not cut to 80 columns: a table in a file or a pager keeps its rows whole.
    width = None if out.isatty() else int(os.environ.get("COLUMNS") or 200)
    return Console(file=out, highlight=False, soft_wrap=False, width=width)


def render(
    records: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    out: IO[str] | None = None,
    *,
    title: str | None = None,
    footer: Mapping[str, Any] | None = None,
) -> int:
    out = out or sys.stdout
    keys = [c.key for c in columns]
    if fmt == "csv":
        return write_csv(records, keys, out)
    if fmt == "json":
        return write_json(records, keys, out)
    return write_table(records, columns, out, title=title, footer=footer)
