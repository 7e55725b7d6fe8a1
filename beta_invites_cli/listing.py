"""`invites list` and `invites show`: day-to-day lookups, streamed from a server-side cursor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from beta_invites_cli.codes import normalise
from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.errors import UnknownCode
from beta_invites_cli.filters import Filters
from beta_invites_cli.status import STATUS_CONDITION, STATUS_SQL

if TYPE_CHECKING:
    import psycopg

LIST_KEYS = ("code", "email", "cohort", "status", "created_at", "sent_at", "used_at", "expires_at")
FETCH_SIZE = 5_000


def status_filter(status: str) -> str:
    return STATUS_CONDITION[status]


def invites(
    conn: psycopg.Connection[Any],
    filters: Filters,
    *,
    email: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Matching invites, newest first, fetched a few thousand at a time (constant memory).

    `conn` must not be in autocommit mode: a server-side cursor lives in a transaction.
    """
    if email is not None:
        filters.extra.append("public.invites_email_key(email) = %(email_key)s")
        filters.params["email_key"] = email_key(email.strip())
    where = filters.where()
    params = {**filters.params, "limit": limit}
    with conn.cursor(name="invites_list") as cursor:
        cursor.itersize = FETCH_SIZE
        cursor.execute(
            f"""
            SELECT code, email, cohort, {STATUS_SQL} AS status, created_at, sent_at, used_at, expires_at
              FROM public.beta_invites
             WHERE {where}
             ORDER BY created_at DESC, id DESC
             LIMIT %(limit)s
            """.encode(),
            params,
        )
        for row in cursor:
            yield dict(zip(LIST_KEYS, row, strict=True))


# Spreadsheet formula injection: a cell starting with = + - @ (or a tab or CR) is prefixed with
# an apostrophe, as OWASP recommends. The same rule as output.csv_safe, done by PostgreSQL.
CSV_SAFE_SQL = (
    "CASE WHEN left({0}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || {0} ELSE {0} END"
)


def export_csv(
    conn: psycopg.Connection[Any],
    filters: Filters,
    out: IO[bytes],
    *,
    email: str | None = None,
    limit: int | None = None,
) -> int:
    """Matching invites as CSV, formatted by PostgreSQL and streamed with COPY: as fast as psql's
    \\copy and in constant memory. Timestamps are ISO 8601 with offset, as everywhere else."""
    if email is not None:
        filters.extra.append("public.invites_email_key(email) = %(email_key)s")
        filters.params["email_key"] = email_key(email.strip())
    where = filters.where()
    iso = "to_json({0}) #>> '{{}}' AS {0}"
    columns = ", ".join(iso.format(c) for c in ("created_at", "sent_at", "used_at", "expires_at"))
    text = ", ".join(f"{CSV_SAFE_SQL.format(c)} AS {c}" for c in ("email", "cohort"))
    rows = 0
    with conn.cursor().copy(
        f"""
        COPY (
          SELECT code, {text}, {STATUS_SQL} AS status, {columns}
            FROM public.beta_invites
           WHERE {where}
           ORDER BY created_at DESC, id DESC
           LIMIT %(limit)s
        ) TO STDOUT (FORMAT csv, HEADER)
        """.encode(),
        {**filters.params, "limit": limit},
    ) as copy:
        for chunk in copy:
            out.write(chunk)
            rows += bytes(chunk).count(b"\n")
    return max(rows - 1, 0)


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
    row = conn.execute(
        f"""
        SELECT code, {STATUS_SQL} AS status, email, cohort, created_at, expires_at, sent_at, used_at,
               sent_by, redeemed_by, revoked_at, revoked_reason, delivery_outcome,
               delivery_outcome_at, delivery_reply, anonymized_at, id
          FROM public.beta_invites WHERE code = %s
        """,
        (code,),
    ).fetchone()
    if row is None:
        raise UnknownCode(code)
    return dict(zip(SHOW_KEYS, row, strict=True))
