"""Seats: how many people a cohort may hold, and how many it holds.

A seat is taken by a pending or a redeemed invite (status.py), so one is free again when its
invite expires or is revoked. A cap is never passed: everything that issues into a cohort
(generate, send --recipients, fill) holds the issuing lock, inserts, then counts the cohort's
taken seats and rolls back when they pass its seats (unless told to go over).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.filters import like_pattern
from beta_invites_cli.status import Status, condition

if TYPE_CHECKING:
    import psycopg

# The condition of an invite that takes a seat.
TAKES_A_SEAT = sql.SQL("({} OR {})").format(condition(Status.REDEEMED), condition(Status.PENDING))


class CohortFull(InvitesError):
    def __init__(self, cohort: str, taken: int, seats: int, wanted: int) -> None:
        self.cohort, self.taken, self.seats, self.wanted = cohort, taken, seats, wanted
        super().__init__(
            f"cohort {cohort} is full: {taken} of {seats} seats taken"
            + (f", {wanted} more asked for" if taken < seats else "")
            + "; free seats with revoke or wait for expiries (--over-cap issues anyway)"
        )


@dataclass(frozen=True)
class Cohort:
    cohort: str
    seats: int | None
    per_day: int | None


def taken(conn: psycopg.Connection[Any], cohort: str) -> int:
    # A redeemed invite is never revoked nor swept: the two conditions only let the planner use
    # the partial index of the invites that may hold a seat.
    query = sql.SQL(
        "SELECT count(*) FROM public.beta_invites WHERE cohort = %s"
        " AND revoked_at IS NULL AND anonymized_at IS NULL AND {}"
    ).format(TAKES_A_SEAT)
    row = conn.execute(query, (cohort,)).fetchone()
    return int(row[0]) if row else 0


def settings(conn: psycopg.Connection[Any], cohort: str) -> Cohort | None:
    row = conn.execute(
        "SELECT cohort, seats, per_day FROM public.beta_invites_cohorts WHERE cohort = %s",
        (cohort,),
    ).fetchone()
    return Cohort(*row) if row else None


def check_cap(
    conn: psycopg.Connection[Any], cohort: str, *, added: int, over_cap: bool = False
) -> None:
    """After `added` invites were inserted into `cohort` (in the caller's transaction, under
    the issuing lock): raise CohortFull when they pass its seats."""
    found = settings(conn, cohort)
    if found is None or found.seats is None or over_cap or added == 0:
        return
    now = taken(conn, cohort)
    if now > found.seats:
        raise CohortFull(cohort, now - added, found.seats, added)


UNCHANGED: Any = object()


def configure(
    conn: psycopg.Connection[Any],
    cohort: str,
    *,
    seats: int | None = UNCHANGED,
    per_day: int | None = UNCHANGED,
) -> Cohort:
    """Set a cohort's seats (None: no cap) and pace (None: none), keeping what is not given."""
    current = settings(conn, cohort) or Cohort(cohort, None, None)
    wanted = Cohort(
        cohort,
        current.seats if seats is UNCHANGED else seats,
        current.per_day if per_day is UNCHANGED else per_day,
    )
    conn.execute(
        """
        INSERT INTO public.beta_invites_cohorts (cohort, seats, per_day)
        VALUES (%s, %s, %s)
        ON CONFLICT (cohort) DO UPDATE
           SET seats = excluded.seats, per_day = excluded.per_day, updated_at = now()
        """,
        (wanted.cohort, wanted.seats, wanted.per_day),
    )
    return wanted


# Per cohort with settings or people waiting: seats, taken, free, waiting, invited today (in
# the timezone given), pace. One grouped pass over each table (the invites through the partial
# index of those that may hold a seat), not a count per cohort.
COHORTS = sql.SQL(
    r"""
    WITH named AS (
      SELECT cohort FROM public.beta_invites_cohorts
      UNION
      SELECT DISTINCT cohort FROM public.beta_invites_waitlist WHERE email IS NOT NULL),
    held AS (
      SELECT b.cohort, count(*) AS taken FROM public.beta_invites AS b
       WHERE b.revoked_at IS NULL AND b.anonymized_at IS NULL AND {takes}
         AND b.cohort IN (SELECT cohort FROM named)
       GROUP BY b.cohort),
    queued AS (
      SELECT q.cohort, count(*) FILTER (WHERE q.email IS NOT NULL) AS waiting,
             count(*) FILTER (WHERE q.invited_at >= {day_start}) AS invited_today
        FROM public.beta_invites_waitlist AS q
       GROUP BY q.cohort)
    SELECT n.cohort, c.seats, coalesce(h.taken, 0) AS taken,
           CASE WHEN c.seats IS NOT NULL THEN greatest(c.seats - coalesce(h.taken, 0), 0) END
             AS free,
           coalesce(w.waiting, 0) AS waiting, coalesce(w.invited_today, 0) AS invited_today,
           c.per_day
      FROM named AS n
      LEFT JOIN public.beta_invites_cohorts AS c USING (cohort)
      LEFT JOIN held AS h USING (cohort)
      LEFT JOIN queued AS w USING (cohort)
     WHERE %(pattern)s::text IS NULL OR n.cohort LIKE %(pattern)s ESCAPE '\'
     ORDER BY n.cohort
    """
)
# The start of today in the operator's timezone (INVITES_TIMEZONE), from the database's clock.
DAY_START = sql.SQL("(date_trunc('day', now() AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s)")


def cohorts(
    conn: psycopg.Connection[Any], pattern: str | None, timezone: str
) -> list[dict[str, Any]]:
    query = COHORTS.format(takes=TAKES_A_SEAT, day_start=DAY_START)
    params = {"pattern": like_pattern(pattern) if pattern else None, "tz": timezone}
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def check_timezone(conn: psycopg.Connection[Any], timezone: str) -> str:
    """INVITES_TIMEZONE, as PostgreSQL knows it (UTC by default)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_timezone_names WHERE name = %s", (timezone,)
    ).fetchone()
    if not row or not row[0]:
        raise InvitesError(f"INVITES_TIMEZONE: {timezone!r} is not a time zone PostgreSQL knows")
    return timezone
