"""`fill`: invite the next people waiting, while a cohort has free seats and the day's quota
lasts, then email them with the engine under `send` (crash-safe, never twice).

Taking people off the waitlist is one transaction per cohort under the issuing lock, which
every command that issues takes: it counts the free seats and today's invitations (in
INVITES_TIMEZONE, by the database's clock) after every other issuer before it has committed, so
no number of concurrent fills, sends and generates passes a cap or a day's quota. Each invite
takes its entry's id, so the entry's history is the invite's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.codes import new_codes
from beta_invites_cli.database import act
from beta_invites_cli.delivery.selection import Pending, candidates, sendable
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.filters import like_pattern
from beta_invites_cli.issuing import DEFAULT_EXPIRY, ISSUE_LOCK_KEY, MAX_CODE_ATTEMPTS
from beta_invites_cli.seats import DAY_START, TAKES_A_SEAT

if TYPE_CHECKING:
    from datetime import timedelta


@dataclass(frozen=True)
class Room:
    """How many of a cohort's waiting people may be invited now, and what holds the others."""

    cohort: str
    seats: int | None
    taken: int
    waiting: int
    per_day: int | None
    invited_today: int
    now: int  # how many may be invited now
    held: str | None  # why the rest wait

    @staticmethod
    def of(row: dict[str, Any], limit: int | None) -> Room:
        free = None if row["seats"] is None else max(row["seats"] - row["taken"], 0)
        quota = None if row["per_day"] is None else max(row["per_day"] - row["invited_today"], 0)
        now = min(n for n in (free, quota, limit, row["waiting"]) if n is not None)
        held = None
        if now < row["waiting"]:
            # As it will be once these `now` are invited.
            if free is not None and now == free:
                held = f"cap reached: {row['taken'] + now} of {row['seats']} seats taken"
            elif quota is not None and now == quota:
                held = f"today's quota used: {row['invited_today'] + now} of {row['per_day']}"
            else:
                held = f"--limit {limit}"
        return Room(
            row["cohort"], row["seats"], row["taken"], row["waiting"], row["per_day"],
            row["invited_today"], now, held,
        )  # fmt: skip


ROOMS = sql.SQL(
    r"""
    SELECT w.cohort, c.seats, coalesce(%(per_day)s, c.per_day) AS per_day, w.waiting,
           (SELECT count(*) FROM public.beta_invites AS b
             WHERE b.cohort = w.cohort AND b.revoked_at IS NULL AND b.anonymized_at IS NULL
               AND {takes}) AS taken,
           (SELECT count(*) FROM public.beta_invites_waitlist AS q
             WHERE q.cohort = w.cohort AND q.invited_at >= {day_start}) AS invited_today
      FROM (SELECT cohort, count(*) AS waiting FROM public.beta_invites_waitlist
             WHERE email IS NOT NULL AND cohort LIKE %(pattern)s ESCAPE '\'
             GROUP BY cohort) AS w
      LEFT JOIN public.beta_invites_cohorts AS c USING (cohort)
     WHERE %(cohort)s::text IS NULL OR w.cohort = %(cohort)s
     ORDER BY w.cohort
    """
).format(takes=TAKES_A_SEAT, day_start=DAY_START)


def rooms(
    conn: psycopg.Connection[Any],
    pattern: str,
    *,
    per_day: int | None,
    limit: int | None,
    timezone: str,
    cohort: str | None = None,
) -> list[Room]:
    params = {
        "pattern": like_pattern(pattern),
        "per_day": per_day,
        "tz": timezone,
        "cohort": cohort,
    }
    rows = conn.cursor(row_factory=dict_row).execute(ROOMS, params).fetchall()
    return [Room.of(row, limit) for row in rows]


def known(conn: psycopg.Connection[Any], pattern: str) -> bool:
    """Whether a cohort matching `pattern` has settings or ever had anyone waiting."""
    row = conn.execute(
        r"""
        SELECT EXISTS (SELECT 1 FROM public.beta_invites_cohorts
                        WHERE cohort LIKE %(p)s ESCAPE '\')
            OR EXISTS (SELECT 1 FROM public.beta_invites_waitlist
                        WHERE cohort LIKE %(p)s ESCAPE '\')
        """,
        {"p": like_pattern(pattern)},
    ).fetchone()
    return bool(row and row[0])


NEXT = """
    SELECT id, email FROM public.beta_invites_waitlist
     WHERE cohort = %s AND email IS NOT NULL
     ORDER BY priority DESC, joined_at, id
     LIMIT %s
       FOR UPDATE SKIP LOCKED
"""

INVITE = """
    WITH chosen AS (
      SELECT n.id, n.code, n.position, w.email
        FROM unnest(%(ids)s::uuid[], %(codes)s::text[], %(positions)s::int[])
             AS n (id, code, position)
        JOIN public.beta_invites_waitlist AS w ON w.id = n.id),
    issued AS (
      INSERT INTO public.beta_invites (id, code, email, cohort, sent_by, expires_at)
      SELECT id, code, email, %(cohort)s, %(sent_by)s, %(expires_at)s FROM chosen
      RETURNING id)
    UPDATE public.beta_invites_waitlist AS w
       SET invite_id = c.id, invited_at = now(), invited_position = c.position, email = NULL
      FROM chosen AS c
     WHERE w.id = c.id
"""


def invite_next(
    conn: psycopg.Connection[Any],
    cohort: str,
    *,
    per_day: int | None,
    limit: int | None,
    timezone: str,
    expires_in: timedelta | None = None,
    sent_by: Any = None,
) -> int:
    """Issue invites to the next waiting people of one cohort, as many as its room allows now
    (counted under the issuing lock); in one transaction. Returns how many."""
    for _ in range(MAX_CODE_ATTEMPTS):
        try:
            with conn.transaction():
                act(conn)
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ISSUE_LOCK_KEY,))
                found = rooms(
                    conn, cohort, per_day=per_day, limit=limit, timezone=timezone, cohort=cohort
                )
                if not found or found[0].now == 0:
                    return 0
                room = found[0]
                chosen = conn.execute(NEXT, (cohort, room.now)).fetchall()
                ids = [row[0] for row in chosen]
                conn.execute(
                    INVITE,
                    {
                        "ids": ids,
                        "codes": new_codes(len(ids)),
                        "positions": list(range(1, len(ids) + 1)),
                        "cohort": cohort,
                        "sent_by": sent_by,
                        "expires_at": _expiry(conn, expires_in),
                    },
                )
                return len(ids)
        except psycopg.errors.UniqueViolation as exc:
            if "code" not in (exc.diag.constraint_name or ""):
                raise
    raise InvitesError("could not draw unused invite codes; nobody was invited")


def _expiry(conn: psycopg.Connection[Any], expires_in: timedelta | None) -> Any:
    """When the new invites expire: after `expires_in`, else by the table's own default."""
    if expires_in is not None:
        row = conn.execute("SELECT now() + %s", (expires_in,)).fetchone()
    else:
        default = conn.execute(DEFAULT_EXPIRY).fetchone()
        if default is None or default[0] is None:
            raise InvitesError("beta_invites.expires_at has no default: pass --expires-in")
        row = conn.execute(sql.SQL("SELECT {}").format(sql.SQL(default[0]))).fetchone()
    assert row is not None
    return row[0]


def waiting_to_send(conn: psycopg.Connection[Any], pattern: str) -> Iterator[Pending]:
    """The invites fill issued (now or in a run that stopped) that are still unsent, cohort by
    cohort: each cohort pages through the index `send` uses (an equality on the cohort; a LIKE
    over all of them would scan every unsent invite for every page)."""
    cohorts = [
        row[0]
        for row in conn.execute(
            r"SELECT DISTINCT cohort FROM public.beta_invites_waitlist"
            r" WHERE invite_id IS NOT NULL AND cohort LIKE %s ESCAPE '\' ORDER BY cohort",
            (like_pattern(pattern),),
        )
    ]
    # An invite from the waitlist has its entry's id: one primary-key probe a row.
    where = sql.SQL(
        "cohort = %(cohort)s AND {sendable}"
        " AND EXISTS (SELECT 1 FROM public.beta_invites_waitlist AS w"
        "              WHERE w.id = beta_invites.id AND w.invite_id = beta_invites.id)"
    ).format(sendable=sendable(False))
    for cohort in cohorts:
        yield from candidates(conn, where, {"cohort": cohort})


def next_people(conn: psycopg.Connection[Any], cohort: str, count: int) -> list[dict[str, Any]]:
    """Who a fill would invite next in a cohort (a dry run), in order."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
            SELECT cohort, row_number() OVER () AS position, email, priority, source, joined_at
              FROM (SELECT * FROM public.beta_invites_waitlist
                     WHERE cohort = %s AND email IS NOT NULL
                     ORDER BY priority DESC, joined_at, id LIMIT %s) AS next
            """,
            (cohort, count),
        )
        .fetchall()
    )
