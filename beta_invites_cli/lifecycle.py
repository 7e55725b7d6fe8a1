"""Redeeming and checking codes: the API the host application calls inside its transaction.

These functions take the caller's open psycopg connection and never commit or roll back: the
invite is redeemed if and only if the caller's transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli.codes import normalise
from beta_invites_cli.errors import (
    AlreadyRedeemed,
    InvalidCode,
    InviteError,
    InviteExpired,
    InviteRevoked,
    UnknownCode,
    ValidationFailed,
)
from beta_invites_cli.filters import like_pattern
from beta_invites_cli.status import LIVE, STATUS_CONDITION, STATUS_SQL
from beta_invites_cli.timestamps import register as load_infinity

if TYPE_CHECKING:
    import psycopg

    from beta_invites_cli.delivery import Pending

__all__ = [
    "AlreadyRedeemed",
    "InvalidCode",
    "Invite",
    "InviteError",
    "InviteExpired",
    "InviteRevoked",
    "UnknownCode",
    "check",
    "redeem",
]

INVITE_COLUMNS = f"""id, code, email, cohort, {STATUS_SQL} AS status, created_at, expires_at,
  sent_at, used_at, sent_by, redeemed_by, revoked_at"""


@dataclass(frozen=True)
class Invite:
    id: UUID
    code: str
    email: str
    cohort: str
    status: str
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    used_at: datetime | None
    sent_by: UUID | None
    redeemed_by: UUID | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Invite:
        return cls(*row)


def redeem(
    conn: psycopg.Connection[Any], code: str, *, user_id: UUID | str | None = None
) -> Invite:
    """Redeem `code` for `user_id` (stored in redeemed_by). Raises an InviteError subclass.

    One conditional UPDATE does the work, so of any number of concurrent callers exactly one
    wins; the reason for a refusal is looked up only afterwards. The condition is the whole
    definition of a live invite, re-checked by PostgreSQL on the newest version of the row: an
    invite revoked or anonymised by the sweep after the caller's transaction began is refused.
    """
    code = normalise(code)
    cursor = conn.cursor()
    load_infinity(cursor)
    row = cursor.execute(
        f"""
        UPDATE public.beta_invites
           SET used_at = now(), redeemed_by = %(user_id)s
         WHERE code = %(code)s AND {LIVE}
        RETURNING {INVITE_COLUMNS}
        """,
        {"code": code, "user_id": user_id},
    ).fetchone()
    if row is not None:
        return Invite.from_row(row)
    current = _find(conn, code)
    if current is None:
        raise UnknownCode(code)
    if current.used_at is not None:
        raise AlreadyRedeemed(code, current.used_at)
    if current.status == "revoked":
        raise InviteRevoked(code, current.revoked_at or current.expires_at)
    raise InviteExpired(code, current.expires_at)


def check(conn: psycopg.Connection[Any], code: str) -> Invite:
    """The invite behind `code`, changing nothing; raises InvalidCode or UnknownCode."""
    code = normalise(code)
    invite = _find(conn, code)
    if invite is None:
        raise UnknownCode(code)
    return invite


def _find(conn: psycopg.Connection[Any], code: str) -> Invite | None:
    cursor = conn.cursor()
    load_infinity(cursor)
    row = cursor.execute(
        f"SELECT {INVITE_COLUMNS} FROM public.beta_invites WHERE code = %s", (code,)
    ).fetchone()
    return None if row is None else Invite.from_row(row)


def resendable(
    conn: psycopg.Connection[Any], *, codes: tuple[str, ...] = (), cohort: str | None = None
) -> list[Pending]:
    """The sent, live invites to email again; named codes that cannot be resent are refused."""
    from beta_invites_cli.delivery import Pending

    if cohort is not None:
        rows = conn.execute(
            f"""
            SELECT id, code, email, cohort, expires_at FROM public.beta_invites
             WHERE cohort = %s AND {STATUS_CONDITION["sent"]}
             ORDER BY created_at, id
            """,
            (cohort,),
        ).fetchall()
        return [Pending(*row) for row in rows]
    wanted = _normalised_codes(codes, outcome="nothing was resent")
    found = _find_many(conn, wanted)
    problems: list[str] = []
    result = []
    for code in wanted:
        invite = found.get(code)
        if invite is None:
            problems.append(f"{code} is not an invite code we issued")
        elif invite.status == "redeemed":
            problems.append(f"{code} was redeemed at {_when(invite.used_at)}: not resent")
        elif invite.status == "revoked":
            problems.append(f"{code} was revoked at {_when(invite.revoked_at)}: not resent")
        elif invite.status == "expired":
            problems.append(f"{code} expired at {_when(invite.expires_at)}: not resent")
        elif invite.status == "uncertain":
            problems.append(
                f"{code}: its first message may or may not have arrived: use "
                f"`invites send --cohort {invite.cohort} --retry-uncertain`"
            )
        elif invite.status == "unsent":
            problems.append(
                f"{code} has not been sent yet: use `invites send --cohort {invite.cohort}`"
            )
        else:
            result.append(
                Pending(invite.id, invite.code, invite.email, invite.cohort, invite.expires_at)
            )
    if problems:
        raise ValidationFailed([*problems, "nothing was resent"])
    return result


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "?"


@dataclass(frozen=True)
class Change:
    code: str
    cohort: str
    status: str
    expires_at: datetime


def _find_many(conn: psycopg.Connection[Any], codes: list[str]) -> dict[str, Invite]:
    cursor = conn.cursor()
    load_infinity(cursor)
    rows = cursor.execute(
        f"SELECT {INVITE_COLUMNS} FROM public.beta_invites WHERE code = ANY(%s)", (codes,)
    ).fetchall()
    return {invite.code: invite for invite in map(Invite.from_row, rows)}


def _normalised_codes(
    codes: tuple[str, ...] | list[str], *, outcome: str = "nothing was changed"
) -> list[str]:
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
    found = _find_many(conn, codes)
    problems = []
    for code in codes:
        if code in changed:
            continue
        invite = found.get(code)
        if invite is None:
            problems.append(f"{code} is not an invite code we issued")
        elif invite.status == "redeemed":
            problems.append(f"{code} was redeemed at {_when(invite.used_at)}: cannot {verb} it")
        elif invite.status == "revoked":
            problems.append(f"{code} was revoked at {_when(invite.revoked_at)}: cannot {verb} it")
        elif invite.status == "expired":
            problems.append(f"{code} already expired at {_when(invite.expires_at)}{expired_why}")
        else:
            problems.append(f"{code} cannot be {verb}d")
    return problems


def revoke(
    conn: psycopg.Connection[Any], codes: tuple[str, ...], *, reason: str | None = None
) -> list[Change]:
    """End pending invites now, all or none: one UPDATE; any refusal rolls everything back."""
    wanted = _normalised_codes(codes)
    with conn.transaction():
        changes = _revoke_where(conn, "code = ANY(%(codes)s)", {"codes": wanted}, reason)
        problems = _refusals(conn, wanted, {c.code for c in changes}, "revoke")
        if problems:
            raise ValidationFailed([*problems, "nothing was revoked"])
    return changes


def revoke_cohorts(
    conn: psycopg.Connection[Any], pattern: str, *, reason: str | None = None, dry_run: bool = False
) -> list[Change]:
    """Revoke every pending invite of the cohorts matching `pattern` (`press-*`)."""
    where = r"cohort LIKE %(pattern)s ESCAPE '\'"
    params = {"pattern": like_pattern(pattern)}
    if dry_run:
        rows = conn.execute(
            f"""
            SELECT code, cohort, {STATUS_SQL}, expires_at FROM public.beta_invites
             WHERE {where} AND {LIVE}
             ORDER BY cohort, created_at, id
            """,
            params,
        ).fetchall()
        return [Change(*row) for row in rows]
    with conn.transaction():
        return _revoke_where(conn, where, params, reason)


def _revoke_where(
    conn: psycopg.Connection[Any], where: str, params: dict[str, Any], reason: str | None
) -> list[Change]:
    # expires_at moves to now as well, so the sweep anonymises revoked invites like expired ones.
    cursor = conn.cursor()
    load_infinity(cursor)
    rows = cursor.execute(
        f"""
        UPDATE public.beta_invites
           SET expires_at = least(expires_at, now()), revoked_at = now(),
               revoked_reason = %(reason)s
         WHERE {where} AND {LIVE}
        RETURNING code, cohort, {STATUS_SQL}, expires_at
        """,
        {**params, "reason": reason},
    ).fetchall()
    return [Change(*row) for row in rows]


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
    condition = (
        f"({LIVE} OR ({STATUS_CONDITION['expired']} AND anonymized_at IS NULL))"
        if include_expired
        else LIVE
    )
    wanted = _normalised_codes(codes) if codes else []
    with conn.transaction():
        cursor = conn.cursor()
        load_infinity(cursor)
        rows = cursor.execute(
            f"""
            UPDATE public.beta_invites
               SET expires_at = greatest(expires_at, now()) + %(by)s
             WHERE {condition}
               AND (code = ANY(%(codes)s) OR cohort = %(cohort)s)
            RETURNING code, cohort, {STATUS_SQL}, expires_at
            """,
            {"by": by, "codes": wanted, "cohort": cohort},
        ).fetchall()
        changes = [Change(*row) for row in rows]
        if wanted:
            why = " and its email was anonymised" if include_expired else ""
            problems = _refusals(conn, wanted, {c.code for c in changes}, "extend", why)
            if problems:
                hint = (
                    []
                    if include_expired
                    else ["(--include-expired extends expired, never-redeemed invites too)"]
                )
                raise ValidationFailed([*problems, *hint, "nothing was extended"])
    return changes
