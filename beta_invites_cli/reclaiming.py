"""`reclaim`: seats back from people who never came.

Invites delivered more than a while ago and never redeemed are revoked (reason `reclaimed`), so
`fill` gives their seats to the next people waiting. Redeemers who went quiet are only listed
(with the report's activity query): the tool never touches the host's accounts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.activity import DEFAULT_TIMEOUT, ActivityQuery, read_only
from beta_invites_cli.database import act
from beta_invites_cli.filters import COHORT_MATCHES, like_pattern
from beta_invites_cli.lifecycle import REVOKE, Change, change_rows
from beta_invites_cli.status import LIVE, STATUS

if TYPE_CHECKING:
    import psycopg

REASON = "reclaimed"
NEVER_CAME = sql.SQL("{} AND sent_at < now() - %(after)s::interval").format(COHORT_MATCHES)


def reclaim(
    conn: psycopg.Connection[Any], pattern: str, after: timedelta, *, dry_run: bool = False
) -> list[Change]:
    """Revoke the pending invites of the matching cohorts delivered more than `after` ago."""
    params = {"cohort_pattern": like_pattern(pattern), "after": after, "reason": REASON}
    if dry_run:
        query = sql.SQL(
            "SELECT code, cohort, {status} AS status, expires_at FROM public.beta_invites"
            " WHERE {which} AND {live} ORDER BY cohort, sent_at, id"
        ).format(which=NEVER_CAME, live=LIVE, status=STATUS)
        return change_rows(conn).execute(query, params).fetchall()
    with conn.transaction():
        act(conn)
        query = REVOKE.format(which=NEVER_CAME, live=LIVE, status=STATUS)
        return change_rows(conn).execute(query, params).fetchall()


QUIET = sql.SQL(
    """
    SELECT i.code, i.cohort, i.redeemed_by, i.used_at, max(a.at) AS last_activity
      FROM public.beta_invites AS i
      LEFT JOIN (SELECT q.{match}::{match_type} AS match, q.at::timestamptz AS at
                   FROM {activity} AS q) AS a ON {joined}
     WHERE i.used_at IS NOT NULL AND i.used_at < now() - %(quiet)s::interval AND {which}
     GROUP BY i.id, i.code, i.cohort, i.redeemed_by, i.used_at
    HAVING max(a.at) IS NULL OR max(a.at) < now() - %(quiet)s::interval
     ORDER BY i.cohort, i.used_at
    """
)


def quiet_redeemers(
    conn: psycopg.Connection[Any], pattern: str, activity: ActivityQuery, quiet: timedelta
) -> list[dict[str, Any]]:
    """Redeemers of the matching cohorts with no activity in the last `quiet` (for the operator
    to act on in the host), read in a READ ONLY transaction as the report reads activity."""
    from beta_invites_cli.report import JOINED

    with conn.transaction():
        read_only(conn, DEFAULT_TIMEOUT)
        match = activity.check(conn)
        query = QUIET.format(
            match=sql.Identifier(match),
            match_type=sql.SQL("uuid" if match == "user_id" else "text"),
            activity=activity.subquery(),
            joined=JOINED[match],
            which=sql.SQL("i.cohort LIKE %(cohort_pattern)s ESCAPE '\\'"),
        )
        params = {"cohort_pattern": like_pattern(pattern), "quiet": quiet}
        return activity.run(conn.cursor(row_factory=dict_row), query, params).fetchall()
