"""`invites list` and `invites show`: day-to-day lookups, streamed from a server-side cursor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.codes import normalise
from beta_invites_cli.errors import UnknownCode
from beta_invites_cli.filters import Filters
from beta_invites_cli.status import STATUS

if TYPE_CHECKING:
    import psycopg

LIST_KEYS = ("code", "email", "cohort", "status", "created_at", "sent_at", "used_at", "expires_at")
FETCH_SIZE = 5_000

LIST = sql.SQL(
    """
    SELECT code, {email} AS email, {cohort} AS cohort, {status} AS status,
           {created_at} AS created_at, {sent_at} AS sent_at, {used_at} AS used_at,
           {expires_at} AS expires_at
      FROM public.beta_invites
     WHERE {where}
     ORDER BY created_at DESC, id DESC
     LIMIT %(limit)s
    """
)


def _list_query(
    filters: Filters, columns: dict[str, sql.Composable]
) -> tuple[sql.Composed, dict[str, Any]]:
    where, params = filters.where()
    plain = {key: sql.Identifier(key) for key in LIST_KEYS if key not in ("code", "status")}
    return LIST.format(where=where, status=STATUS, **{**plain, **columns}), params


def invites(
    conn: psycopg.Connection[Any], filters: Filters, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Matching invites, newest first, fetched a few thousand at a time (constant memory).

    `conn` must not be in autocommit mode: a server-side cursor lives in a transaction.
    """
    query, params = _list_query(filters, {})
    with conn.cursor(name="invites_list", row_factory=dict_row) as cursor:
        cursor.itersize = FETCH_SIZE
        cursor.execute(query, {**params, "limit": limit})
        yield from cursor


# Spreadsheet formula injection: a cell starting with = + - @ (or a tab or CR) is prefixed with
# an apostrophe, as OWASP recommends. The same rule as the CLI's csv_safe, done by PostgreSQL.
CSV_SAFE = sql.SQL(
    "CASE WHEN left({0}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || {0} ELSE {0} END"
)
# Timestamps as ISO 8601 with offset, as everywhere else.
ISO = sql.SQL("to_json({0}) #>> '{{}}'")


def csv_copy(filters: Filters, limit: int | None = None) -> tuple[sql.Composed, dict[str, Any]]:
    """The COPY statement that exports matching invites as CSV (the benchmark's baseline runs
    this very statement through psql)."""
    columns: dict[str, sql.Composable] = {
        key: CSV_SAFE.format(sql.Identifier(key)) for key in ("email", "cohort")
    }
    for key in ("created_at", "sent_at", "used_at", "expires_at"):
        columns[key] = ISO.format(sql.Identifier(key))
    select, params = _list_query(filters, columns)
    query = sql.SQL("COPY ({select}) TO STDOUT (FORMAT csv, HEADER)").format(select=select)
    return query, {**params, "limit": limit}


def export_csv(
    conn: psycopg.Connection[Any], filters: Filters, out: IO[bytes], *, limit: int | None = None
) -> int:
    """Matching invites as CSV, formatted by PostgreSQL and streamed with COPY: as fast as psql's
    \\copy and in constant memory."""
    query, params = csv_copy(filters, limit)
    rows = 0
    with conn.cursor().copy(query, params) as copy:
        for chunk in copy:
            out.write(chunk)
            rows += bytes(chunk).count(b"\n")
    return max(rows - 1, 0)


# One JSON object per line, formatted by PostgreSQL. CSV format with control characters as
# delimiter and quote writes each object exactly as it is: JSON escapes every control character
# inside its strings, so neither ever occurs (text format would double every backslash).
JSON_COPY = sql.SQL(
    "COPY (SELECT row_to_json(invite) FROM ({select}) AS invite)"
    " TO STDOUT (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
)


def json_copy(filters: Filters, limit: int | None = None) -> tuple[sql.Composed, dict[str, Any]]:
    """The COPY statement that exports matching invites as JSON lines (keys as `list` shows
    them; timestamps ISO 8601 with offset, `infinity` as PostgreSQL writes it)."""
    select, params = _list_query(filters, {})
    return JSON_COPY.format(select=select), {**params, "limit": limit}


def export_json(
    conn: psycopg.Connection[Any],
    filters: Filters,
    out: IO[bytes],
    *,
    limit: int | None = None,
    lines: bool = False,
) -> int:
    """Matching invites as a JSON list, or JSON lines, streamed: constant memory, psql's speed."""
    query, params = json_copy(filters, limit)
    rows = 0
    with conn.cursor().copy(query, params) as copy:
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


SHOW_KEYS = (
    "code",
    "status",
    "email",
    "cohort",
    "created_at",
    "expires_at",
    "sent_at",
    "used_at",
    "sent_by",
    "redeemed_by",
    "revoked_at",
    "revoked_reason",
    "delivery_outcome",
    "delivery_outcome_at",
    "delivery_reply",
    "anonymized_at",
    "id",
)


def show(conn: psycopg.Connection[Any], typed: str) -> dict[str, Any]:
    code = normalise(typed)
    columns = sql.SQL(", ").join(
        sql.SQL("{} AS status").format(STATUS) if key == "status" else sql.Identifier(key)
        for key in SHOW_KEYS
    )
    query = sql.SQL("SELECT {columns} FROM public.beta_invites WHERE code = %s").format(
        columns=columns
    )
    row = conn.cursor(row_factory=dict_row).execute(query, (code,)).fetchone()
    if row is None:
        raise UnknownCode(code)
    return row
