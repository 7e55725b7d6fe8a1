"""Rendering records as a table, CSV, JSON or JSON lines, for every command that prints records.

Data goes to stdout; messages go to stderr. rich is imported only when a table is drawn.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.exporting import csv_safe
from beta_invites_cli.timestamps import infinity_name

FORMATS = ("table", "csv", "json", "jsonl")
EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_for(output: Path | None, fmt: str | None) -> str:
    """--format when given, else the output file's extension, else a table."""
    if fmt is not None:
        return fmt
    if output is not None:
        return EXTENSIONS.get(output.suffix.lower(), "table")
    return "table"


STANDARD_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}


class OutputFile:
    """--output FILE, written in full or not at all where that is possible.

    A regular file, or a path that does not exist yet, is written as a temporary file beside
    it (beside the real file, when FILE is a symlink) and renamed into place by commit(): the
    old content stays whole until the new one is complete, and an existing file keeps its mode
    and, where the process may set it, its owner. Anything else (a character device such as
    /dev/null, a FIFO, a socket, /dev/stdout) is written straight through: renaming over it
    would replace the device or pipe itself with a regular file. It is opened now (so a place
    that cannot be written is an error before anything changes), and what the command writes
    is held in an anonymous file until commit() copies it there (a command may rewind and
    write its output again, which a pipe cannot)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handle: IO[str] = sys.stdout
        self._temporary: Path | None = None
        self._target: Path | None = None
        self._keep: os.stat_result | None = None
        self._through: IO[bytes] | None = None

    def __enter__(self) -> OutputFile | None:
        if self.path is None:
            return None
        try:
            self.handle = self._open(self.path)
        except OSError as exc:
            raise InvitesError(
                f"--output {self.path}: cannot write there ({exc.strerror})"
            ) from None
        return self

    def _open(self, path: Path) -> IO[str]:
        import stat
        import tempfile

        if str(path) in STANDARD_STREAMS:
            return self._write_through(open(os.dup(STANDARD_STREAMS[str(path)]), "wb"))
        target = Path(os.path.realpath(path))
        try:
            existing: os.stat_result | None = target.stat()
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise InvitesError(f"--output {path} is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            return self._write_through(open(target, "wb"))
        descriptor, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
        self._temporary, self._target, self._keep = Path(name), target, existing
        return open(descriptor, "w", encoding="utf-8", newline="")

    def _write_through(self, destination: IO[bytes]) -> IO[str]:
        import tempfile

        self._through = destination
        return io.TextIOWrapper(tempfile.TemporaryFile(), encoding="utf-8", newline="")

    @property
    def binary(self) -> IO[bytes]:
        """The file for bytes (what is written as text so far comes first)."""
        self.handle.flush()
        return self.handle.buffer  # type: ignore[attr-defined,no-any-return]

    def commit(self) -> None:
        assert self.path is not None
        if self._through is not None:
            import shutil

            self.handle.flush()
            spool = self.handle.buffer  # type: ignore[attr-defined]
            spool.seek(0)
            shutil.copyfileobj(spool, self._through)
            self._through.close()
            self._through = None
            self.handle.close()
            return
        self.handle.close()
        assert self._temporary is not None and self._target is not None
        if self._keep is not None:
            os.chmod(self._temporary, self._keep.st_mode & 0o7777)
            with contextlib.suppress(OSError):  # only root may give a file to someone else
                os.chown(self._temporary, self._keep.st_uid, self._keep.st_gid)
        else:
            os.chmod(self._temporary, 0o666 & ~_umask())
        self._temporary.replace(self._target)
        self._temporary = None

    def __exit__(self, *exc: object) -> None:
        if self._through is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            with contextlib.suppress(OSError):
                self._through.close()
            self._through = None
        if self._temporary is not None:
            with contextlib.suppress(OSError):  # what is left to flush is thrown away
                self.handle.close()
            with contextlib.suppress(OSError):
                self._temporary.unlink()


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False
    render: Callable[[Any], str] | None = None  # table view only
    # On a terminal too narrow for the table, columns are left out highest `drop` first
    # (0: never left out) before the table turns into one block per record.
    drop: int = 0
    # A colour that means something (a status, a rate), from the cell's text; NO_COLOR and
    # pipes drop it.
    style: Callable[[str], str] | None = None


def plain(value: Any) -> Any:
    """A JSON- and CSV-friendly form of a database value (ISO 8601 timestamps with offset)."""
    if isinstance(value, datetime):
        return infinity_name(value) or value.isoformat(timespec="microseconds")
    if isinstance(value, date):
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
        if type(value) is str:
            return csv_safe(value)
        if type(value) is int:
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


def write_jsonl(records: Iterable[Mapping[str, Any]], keys: Sequence[str], out: IO[str]) -> int:
    """One JSON object per line (for jq and log tools)."""
    count = 0
    for record in records:
        out.write(json.dumps({k: plain(record.get(k)) for k in keys}, ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def table_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if infinity_name(value):
            return "never" if value > datetime.now(value.tzinfo) else "always"
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
    """A table that never cuts a value. Too wide for the terminal, its least important columns
    are left out first (said under it); if it is still too wide, each record becomes a block of
    `field value` lines instead (as psql's expanded display). In a file or a pipe, the table is
    as wide as its content."""

    def cell(column: Column, value: Any) -> str:
        return column.render(value) if column.render and value is not None else table_text(value)

    rows = [[cell(column, record.get(column.key)) for column in columns] for record in records]
    footer_cells = (
        [cell(column, footer.get(column.key)) for column in columns] if footer is not None else None
    )
    screen = console(out)
    table, natural = _table(columns, rows, footer_cells, title, [])
    if not out.isatty():
        console(out, width=max(natural, 20)).print(table)
        return len(rows)
    width = screen.size.width
    left_out: list[Column] = []
    droppable = sorted((c for c in columns if c.drop), key=lambda c: -c.drop)
    while natural > width and droppable:
        left_out.append(droppable.pop(0))
        table, natural = _table(columns, rows, footer_cells, title, left_out)
    if natural <= width:
        screen.print(table)
    else:
        _write_records(rows, footer_cells, columns, out, title)
    return len(rows)


def _table(
    columns: Sequence[Column],
    rows: list[list[str]],
    footer: list[str] | None,
    title: str | None,
    left_out: list[Column],
) -> tuple[Any, int]:
    """The rich table without the `left_out` columns, and its natural width."""
    from rich.table import Table
    from rich.text import Text

    def text(index: int, value: str) -> Text:
        # Text, not markup: a value such as `[/x]` is shown as it is, never interpreted.
        style = columns[index].style
        return Text(value, style=style(value) if style else "")

    kept = [i for i, column in enumerate(columns) if column not in left_out]
    caption = None
    if left_out:
        names = ", ".join(c.header for c in left_out)
        caption = f"Not shown at this width: {names} (--format csv shows every column)"
    table = Table(
        title=Text(title) if title else None,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        show_footer=footer is not None,
    )
    for index in kept:
        column = columns[index]
        table.add_column(
            Text(column.header),
            justify="right" if column.numeric else "left",
            footer=Text(footer[index]) if footer else "",
            no_wrap=True,
        )
    for row in rows:
        table.add_row(*(text(i, row[i]) for i in kept))
    screen = console(io.StringIO())
    natural = screen.measure(table, options=screen.options.update(max_width=1_000_000)).maximum
    return table, natural


def _write_records(
    rows: list[list[str]],
    footer: list[str] | None,
    columns: Sequence[Column],
    out: IO[str],
    title: str | None,
) -> None:
    width = max(len(column.header) for column in columns)
    if title:
        out.write(f"{title}\n")
    blocks = [(f"[ {number} ]", row) for number, row in enumerate(rows, start=1)]
    if footer is not None:
        blocks.append(("[ total ]", footer))
    for label, row in blocks:
        out.write(f"-{label}{'-' * max(width - len(label), 2)}\n")
        for column, text in zip(columns, row, strict=True):
            out.write(f"{column.header.ljust(width)}  {text}\n")


def write_fields(
    record: Mapping[str, Any], keys: Sequence[str], out: IO[str], *, title: str
) -> None:
    """One record as `field  value` lines under a title."""
    width = max(len(key) for key in keys)
    out.write(f"{title}\n")
    for key in keys:
        out.write(f"{key.ljust(width)}  {table_text(record.get(key))}".rstrip() + "\n")


def console(out: IO[str] | None = None, *, stderr: bool = False, width: int | None = None) -> Any:
    """A rich Console; rich itself honours NO_COLOR and drops styling when not on a terminal."""
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False)
    out = out or sys.stdout
    if width is None and not out.isatty():
        width = terminal_columns() or 200
    return Console(file=out, highlight=False, soft_wrap=False, width=width)


def terminal_columns() -> int | None:
    """$COLUMNS when it is a sensible number; anything else is ignored, never an error."""
    text = os.environ.get("COLUMNS", "").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 100_000 else None


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
    if fmt == "jsonl":
        return write_jsonl(records, keys, out)
    return write_table(records, columns, out, title=title, footer=footer)


def stream_to_stdout(
    fmt: str,
    export_csv: Callable[[IO[bytes]], int],
    export_json: Callable[[IO[bytes], bool], int],
) -> int:
    """csv, json or jsonl (export_json's flag) formatted by PostgreSQL and streamed straight to
    stdout; how many records."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    count = export_csv(out) if fmt == "csv" else export_json(out, fmt == "jsonl")
    out.flush()
    return count


STATUS_STYLES = {
    "redeemed": "green",
    "sent": "cyan",
    "uncertain": "yellow",
    "bounced": "yellow",
    "revoked": "red",
    "expired": "dim",
}


def status_style(value: str) -> str:
    return STATUS_STYLES.get(value, "")


def rate_style(value: str) -> str:
    """A redemption or retention rate: green from half, red under a fifth."""
    try:
        rate = float(value.rstrip("%").split()[-1]) / 100
    except (ValueError, IndexError):
        return ""
    return "green" if rate >= 0.5 else "red" if rate < 0.2 else "yellow"
