"""The host application's contract: redeem and check codes inside its own transaction.

```python
from beta_invites_cli import redeem, check, InviteError
```

These functions take the caller's open psycopg connection and never commit or roll back: the
invite is redeemed if and only if the caller's transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli.codes import normalise
from beta_invites_cli.errors import (
    AlreadyRedeemed,
    InvalidCode,
    InviteError,
    InviteExpired,
    InviteRevoked,
    UnknownCode,
)
from beta_invites_cli.status import LIVE, STATUS, Status
from beta_invites_cli.timestamps import register as load_infinity

if TYPE_CHECKING:
    import psycopg

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


INVITE_COLUMNS = sql.SQL(
    "id, code, email, cohort, {status} AS status, created_at, expires_at, sent_at, used_at,"
    " sent_by, redeemed_by, revoked_at"
).format(status=STATUS)


# Composed once: the host application may redeem thousands of codes a minute.
REDEEM = sql.SQL(
    """
    UPDATE public.beta_invites
       SET used_at = now(), redeemed_by = %(user_id)s
     WHERE code = %(code)s AND {live}
    RETURNING {columns}
    """
).format(live=LIVE, columns=INVITE_COLUMNS)
FIND = sql.SQL("SELECT {columns} FROM public.beta_invites WHERE code = %s").format(
    columns=INVITE_COLUMNS
)
FIND_MANY = sql.SQL("SELECT {columns} FROM public.beta_invites WHERE code = ANY(%s)").format(
    columns=INVITE_COLUMNS
)
_ROWS = class_row(Invite)


def _invites(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Invite]:
    cursor = conn.cursor(row_factory=_ROWS)
    load_infinity(cursor)  # the host's connection may not load 'infinity' by itself
    return cursor


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
    invite = _invites(conn).execute(REDEEM, {"code": code, "user_id": user_id}).fetchone()
    if invite is not None:
        return invite
    current = find(conn, code)
    if current is None:
        raise UnknownCode(code)
    if current.used_at is not None:
        raise AlreadyRedeemed(code, current.used_at)
    if current.status == Status.REVOKED:
        raise InviteRevoked(code, current.revoked_at or current.expires_at)
    raise InviteExpired(code, current.expires_at)


def check(conn: psycopg.Connection[Any], code: str) -> Invite:
    """The invite behind `code`, changing nothing; raises InvalidCode or UnknownCode."""
    code = normalise(code)
    invite = find(conn, code)
    if invite is None:
        raise UnknownCode(code)
    return invite


def find(conn: psycopg.Connection[Any], code: str) -> Invite | None:
    return _invites(conn).execute(FIND, (code,)).fetchone()


def find_many(conn: psycopg.Connection[Any], codes: list[str]) -> dict[str, Invite]:
    return {invite.code: invite for invite in _invites(conn).execute(FIND_MANY, (codes,))}


@dataclass
class Redemption:
    """How one attempt to redeem went, with the invite's state either way (support cases)."""

    code: str
    status: str  # "redeemed", or the refusal's status ("already_redeemed", "expired", ...)
    cohort: str | None = None
    used_at: datetime | None = None
    expires_at: datetime | None = None
    error: InviteError | None = None


def try_redeem(
    conn: psycopg.Connection[Any], typed: str, *, user_id: UUID | None = None
) -> Redemption:
    """redeem(), committing on success; a refusal is returned, not raised."""
    try:
        code = normalise(typed)
    except InvalidCode as exc:
        return Redemption(typed.strip(), exc.status, error=exc)
    try:
        invite = redeem(conn, code, user_id=user_id)
        conn.commit()
        return Redemption(code, "redeemed", invite.cohort, invite.used_at, invite.expires_at)
    except InviteError as exc:
        conn.rollback()
        current = None if isinstance(exc, UnknownCode) else find(conn, code)
        if current is None:
            return Redemption(code, exc.status, error=exc)
        return Redemption(
            code, exc.status, current.cohort, current.used_at, current.expires_at, error=exc
        )
