"""The one status definition: every row has exactly one status, and the conditions agree with
the status column, whatever combination of columns the tool or the host application left."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
from psycopg import sql

from beta_invites_cli.status import CONDITION, STATUS, Status

FINAL = (
    Status.REDEEMED,
    Status.REVOKED,
    Status.EXPIRED,
    Status.UNSENT,
    Status.UNCERTAIN,
    Status.SENT,
)


def test_every_row_has_exactly_one_status(conn: psycopg.Connection[Any]) -> None:
    combinations = itertools.product(
        (None, "now() - interval '1 hour'"),  # used_at
        (None, "now() - interval '2 hours'"),  # revoked_at
        ("now() + interval '1 day'", "now() - interval '1 day'"),  # expires_at
        (None, "now() - interval '1 minute'"),  # anonymized_at
        (None, "now() - interval '3 hours'"),  # sent_at
        (None, "'uncertain'", "'failed'"),  # delivery_outcome
    )
    for number, (used, revoked, expires, anonymized, sent, outcome) in enumerate(combinations):
        values = sql.SQL(", ").join(
            sql.SQL(v) if v is not None else sql.NULL
            for v in (used, revoked, expires, anonymized, sent, outcome)
        )
        code = f"{number:016d}".translate(str.maketrans("0123456789", "ABCDEFGHJK"))
        conn.execute(
            sql.SQL(
                "INSERT INTO beta_invites (code, email, cohort, used_at, revoked_at, expires_at,"
                " anonymized_at, sent_at, delivery_outcome) VALUES (%s, %s, 'c', {})"
            ).format(values),
            (code, f"p{number}@example.com"),
        )
    flags = sql.SQL(", ").join(
        sql.SQL("({}) AS {}").format(CONDITION[status], sql.Identifier(status.value))
        for status in Status
    )
    query = sql.SQL("SELECT {status} AS status, {flags} FROM beta_invites").format(
        status=STATUS, flags=flags
    )
    rows = conn.cursor(row_factory=psycopg.rows.dict_row).execute(query).fetchall()
    assert len(rows) == 2 * 2 * 2 * 2 * 2 * 3
    seen = set()
    for row in rows:
        final = [status for status in FINAL if row[status.value]]
        assert final == [Status(row["status"])], row
        assert row["pending"] == (row["status"] in ("unsent", "uncertain", "sent")), row
        seen.add(row["status"])
    assert seen == {status.value for status in FINAL}
