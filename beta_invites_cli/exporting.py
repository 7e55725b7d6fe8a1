"""Query results written by PostgreSQL itself and streamed with COPY: psql's speed, constant
memory. Used by `list` and by `generate --output`."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    import psycopg

# Spreadsheet formula injection: a cell starting with = + - @ (or a tab or CR) is prefixed with
# an apostrophe, as OWASP recommends; in Python, and done by PostgreSQL.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP: prefix =, +, -, @ with '). A
    value that only looks escaped (apostrophes before one of them) gets one more too, so that
    csv_unguard() always gives back exactly what was written."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_STARTS) else text


def csv_unguard(text: str) -> str:
    """The value csv_safe() escaped: a ' before = + - @, a tab or a carriage return is the
    escape, not part of the value (an exported file read back in, or edited in a spreadsheet
    and saved, names the same people)."""
    if text.startswith("'") and text.lstrip("'").startswith(FORMULA_STARTS):
        return text[1:]
    return text


CSV_SAFE = sql.SQL(
    "CASE WHEN left(ltrim({0}, ''''), 1) IN ('=', '+', '-', '@', E'\\t', E'\\r')"
    " THEN '''' || {0} ELSE {0} END"
)
# Timestamps as ISO 8601 with offset, always with microseconds (PostgreSQL's own JSON drops a
# zero fraction, and a column of mixed shapes defeats pandas' inferred format); infinity as
# PostgreSQL writes it. The same shape as render.plain() gives in Python.
ISO = sql.SQL(
    "CASE WHEN isfinite({0}) THEN to_char({0}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM')"
    " ELSE {0}::text END"
)

CSV_COPY = sql.SQL("COPY ({select}) TO STDOUT (FORMAT csv, HEADER)")

# One JSON object per line, formatted by PostgreSQL. CSV format with control characters as
# delimiter and quote writes each object exactly as it is: JSON escapes every control character
# inside its strings, so neither ever occurs (text format would double every backslash).
JSON_COPY = sql.SQL(
    "COPY (SELECT row_to_json(invite) FROM ({select}) AS invite)"
    " TO STDOUT (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
)


def copy_csv(
    conn: psycopg.Connection[Any],
    select: sql.Composable,
    params: Any,
    out: IO[bytes],
) -> int:
    """The rows of `select` as CSV with a header line; returns how many rows."""
    rows = 0
    with conn.cursor().copy(CSV_COPY.format(select=select), params) as copy:
        for chunk in copy:
            out.write(chunk)
            rows += bytes(chunk).count(b"\n")
    return max(rows - 1, 0)


def copy_json(
    conn: psycopg.Connection[Any],
    select: sql.Composable,
    params: Any,
    out: IO[bytes],
    *,
    lines: bool = False,
) -> int:
    """The rows of `select` as a JSON list of objects, or as JSON lines; returns how many."""
    rows = 0
    with conn.cursor().copy(JSON_COPY.format(select=select), params) as copy:
        for chunk in copy:
            data = bytes(chunk)
            if lines:
                out.write(data)
                rows += data.count(b"\n")
                continue
            for row in data.splitlines():
                out.write(b",\n  " if rows else b"[\n  ")
                out.write(row)
                rows += 1
    if not lines:
        out.write(b"\n]\n" if rows else b"[]\n")
    return rows
