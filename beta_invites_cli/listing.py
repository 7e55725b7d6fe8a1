"""`invites list` and `invites show`: day-to-day lookups, streamed from a server-side cursor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli import exporting
from beta_invites_cli.codes import normalise
from beta_invites_cli.errors import UnknownCode
from beta_invites_cli.filters import Filters
from beta_invites_cli.status import STATUS

if TYPE_CHECKING:
    import psycopg

LIST_KEYS = (
    "code",
    "email",
    "cohort",
    "status",
    "created_at",
    "sent_at",
    "used_at",
    "expires_at",
    "refusal",
)
FETCH_SIZE = 5_000
# The last refusal of a failed or bounced invite: its codes and class, never the reply's text.
REFUSAL = sql.SQL(
    "CASE WHEN delivery_outcome IN ('failed', 'bounced') THEN concat_ws(' ',"
    r" substring(delivery_reply FROM '^(?:\d{3} )?(?:\d\.\d{1,3}\.\d{1,3}|\d{3})'),"
    " delivery_class) END"
)

LIST = sql.SQL(
    """
    SELECT code, {email} AS email, {cohort} AS cohort, {status} AS status,
           {created_at} AS created_at, {sent_at} AS sent_at, {used_at} AS used_at,
           {expires_at} AS expires_at, {refusal} AS refusal
      FROM public.beta_invites
     WHERE {where}
     ORDER BY beta_invites.created_at DESC, id DESC  -- the column, not the text shown
     LIMIT %(limit)s
    """
)


def _list_query(
    filters: Filters, columns: dict[str, sql.Composable]
) -> tuple[sql.Composed, dict[str, Any]]:
    where, params = filters.where()
    plain: dict[str, sql.Composable] = {
        key: sql.Identifier(key) for key in LIST_KEYS if key not in ("code", "status", "refusal")
    }
    plain["refusal"] = REFUSAL
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


TIMESTAMPS = ("created_at", "sent_at", "used_at", "expires_at")


def _iso_columns() -> dict[str, sql.Composable]:
    return {key: exporting.ISO.format(sql.Identifier(key)) for key in TIMESTAMPS}


def _csv_select(filters: Filters) -> tuple[sql.Composed, dict[str, Any]]:
    columns: dict[str, sql.Composable] = {
        key: exporting.CSV_SAFE.format(sql.Identifier(key)) for key in ("email", "cohort")
    }
    return _list_query(filters, {**columns, **_iso_columns()})


def csv_copy(filters: Filters, limit: int | None = None) -> tuple[sql.Composed, dict[str, Any]]:
    """The COPY statement that exports matching invites as CSV (the benchmark's baseline runs
    this very statement through psql)."""
    select, params = _csv_select(filters)
    return exporting.CSV_COPY.format(select=select), {**params, "limit": limit}


def export_csv(
    conn: psycopg.Connection[Any], filters: Filters, out: IO[bytes], *, limit: int | None = None
) -> int:
    """Matching invites as CSV, formatted by PostgreSQL and streamed with COPY: as fast as psql's
    \\copy and in constant memory."""
    select, params = _csv_select(filters)
    return exporting.copy_csv(conn, select, {**params, "limit": limit}, out)


def json_copy(filters: Filters, limit: int | None = None) -> tuple[sql.Composed, dict[str, Any]]:
    """The COPY statement that exports matching invites as JSON lines (keys as `list` shows
    them; timestamps ISO 8601 with offset, `infinity` as PostgreSQL writes it)."""
    select, params = _list_query(filters, _iso_columns())
    return exporting.JSON_COPY.format(select=select), {**params, "limit": limit}


def export_json(
    conn: psycopg.Connection[Any],
    filters: Filters,
    out: IO[bytes],
    *,
    limit: int | None = None,
    lines: bool = False,
) -> int:
    """Matching invites as a JSON list, or JSON lines, streamed: constant memory, psql's speed."""
    select, params = _list_query(filters, _iso_columns())
    return exporting.copy_json(conn, select, {**params, "limit": limit}, out, lines=lines)


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
    "delivery_class",
    "message_id",
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
