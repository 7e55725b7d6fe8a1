"""What an operator does to invites after issuing them: revoke and extend.

Each is one UPDATE whose condition is the one status definition, so a concurrent sweep,
redemption or revoke is respected; named codes are all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli.codes import normalise
from beta_invites_cli.database import act
from beta_invites_cli.errors import InvalidCode, ValidationFailed
from beta_invites_cli.filters import COHORT_MATCHES, like_pattern
from beta_invites_cli.host import find_many
from beta_invites_cli.status import LIVE, STATUS, Status, condition
from beta_invites_cli.timestamps import register as load_infinity

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Change:
    code: str
    cohort: str
    status: str
    expires_at: datetime


def change_rows(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Change]:
    cursor = conn.cursor(row_factory=class_row(Change))
    load_infinity(cursor)
    return cursor


def when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "?"


def normalised_codes(codes: tuple[str, ...] | list[str], *, outcome: str) -> list[str]:
    """The codes as stored, each once; every unreadable one refused with `outcome`."""
    problems: list[str] = []
    result: list[str] = []
    for typed in codes:
        try:
            code = normalise(typed)
        except InvalidCode as exc:
            problems.append(str(exc))
            continue
        if code not in result:
            result.append(code)
    if problems:
        raise ValidationFailed([*problems, outcome])
    return result


def _refusals(
    conn: psycopg.Connection[Any],
    codes: list[str],
    changed: set[str],
    verb: str,
    expired_why: str = "",
) -> list[str]:
    """Why each named code that was not changed could not be."""
    found = find_many(conn, codes)
    problems = []
    for code in codes:
        if code in changed:
            continue
        invite = found.get(code)
        if invite is None:
            problems.append(f"{code} is not an invite code we issued")
        elif invite.status == Status.REDEEMED:
            problems.append(f"{code} was redeemed at {when(invite.used_at)}: cannot {verb} it")
        elif invite.status == Status.REVOKED:
            problems.append(f"{code} was revoked at {when(invite.revoked_at)}: cannot {verb} it")
        elif invite.status == Status.EXPIRED:
            problems.append(f"{code} already expired at {when(invite.expires_at)}{expired_why}")
        else:
            problems.append(f"{code} cannot be {verb}d")
    return problems


# expires_at moves to now as well, so the sweep anonymises revoked invites like expired ones.
REVOKE = sql.SQL(
    """
    UPDATE public.beta_invites
       SET expires_at = least(expires_at, now()), revoked_at = now(), revoked_reason = %(reason)s
     WHERE {which} AND {live}
    RETURNING code, cohort, {status} AS status, expires_at
    """
)


def revoke(
    conn: psycopg.Connection[Any], codes: tuple[str, ...], *, reason: str | None = None
) -> list[Change]:
    """End pending invites now, all or none: one UPDATE; any refusal rolls everything back."""
    wanted = normalised_codes(codes, outcome="nothing was revoked")
    query = REVOKE.format(which=sql.SQL("code = ANY(%(codes)s)"), live=LIVE, status=STATUS)
    with conn.transaction():
        act(conn)
        changes = change_rows(conn).execute(query, {"codes": wanted, "reason": reason}).fetchall()
        problems = _refusals(conn, wanted, {c.code for c in changes}, "revoke")
        if problems:
            raise ValidationFailed([*problems, "nothing was revoked"])
    return changes


def revoke_cohorts(
    conn: psycopg.Connection[Any], pattern: str, *, reason: str | None = None, dry_run: bool = False
) -> list[Change]:
    """Revoke every pending invite of the cohorts matching `pattern` (`press-*`)."""
    params = {"cohort_pattern": like_pattern(pattern), "reason": reason}
    if dry_run:
        query = sql.SQL(
            """
            SELECT code, cohort, {status} AS status, expires_at FROM public.beta_invites
             WHERE {which} AND {live}
             ORDER BY cohort, created_at, id
            """
        ).format(which=COHORT_MATCHES, live=LIVE, status=STATUS)
        return change_rows(conn).execute(query, params).fetchall()
    query = REVOKE.format(which=COHORT_MATCHES, live=LIVE, status=STATUS)
    with conn.transaction():
        act(conn)
        return change_rows(conn).execute(query, params).fetchall()


def extend(
    conn: psycopg.Connection[Any],
    *,
    by: timedelta,
    codes: tuple[str, ...] = (),
    cohort: str | None = None,
    include_expired: bool = False,
) -> list[Change]:
    """Push expires_at of pending invites (and expired, never-redeemed ones if asked) by `by`.

    Expired invites restart from now. Revoked and anonymised invites are never extended: an
    operator ended the first, and nobody can be reached at the address of the second. The
    condition is part of the UPDATE, so it holds against a concurrent revoke or sweep too.
    """
    extendable: sql.Composable = LIVE
    if include_expired:
        extendable = sql.SQL("({live} OR ({expired} AND anonymized_at IS NULL))").format(
            live=LIVE, expired=condition(Status.EXPIRED)
        )
    wanted = normalised_codes(codes, outcome="nothing was extended") if codes else []
    query = sql.SQL(
        """
        UPDATE public.beta_invites
           SET expires_at = greatest(expires_at, now()) + %(by)s
         WHERE {extendable} AND (code = ANY(%(codes)s) OR cohort = %(cohort)s)
        RETURNING code, cohort, {status} AS status, expires_at
        """
    ).format(extendable=extendable, status=STATUS)
    with conn.transaction():
        act(conn)
        changes = (
            change_rows(conn)
            .execute(query, {"by": by, "codes": wanted, "cohort": cohort})
            .fetchall()
        )
        if wanted:
            why = " and its email was anonymised" if include_expired else ""
            problems = _refusals(conn, wanted, {c.code for c in changes}, "extend", why)
            if problems:
                raise ValidationFailed([*problems, "nothing was extended"])
    return changes
