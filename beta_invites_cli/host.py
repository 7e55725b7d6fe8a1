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

from beta_invites_cli.codes import LENGTH, normalise
from beta_invites_cli.errors import (
    AlreadyRedeemed,
    InvalidCode,
    InviteError,
    InviteExpired,
    InviteRevoked,
    UnknownCode,
    excerpt,
)
from beta_invites_cli.status import STATUS
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


# The SQL functions of sql/997 hold the logic (normalising, the single-winner UPDATE, the
# refusal's reason), so hosts in any language get the same answers; these run one of them and,
# in the same round trip (a pipeline), read the invite it decided about.
REDEEM = "SELECT status FROM public.beta_invites_redeem(%s, %s)"
CHECK = "SELECT status FROM public.beta_invites_check(%s)"
FIND_TYPED = sql.SQL(
    "SELECT {columns} FROM public.beta_invites WHERE code = public.beta_invites_normalise_code(%s)"
).format(columns=INVITE_COLUMNS)
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

    public.beta_invites_redeem() decides: one conditional UPDATE, so of any number of
    concurrent callers exactly one wins, and the condition is re-checked by PostgreSQL on the
    newest version of the row (an invite revoked or anonymised after the caller's transaction
    began is refused). Nothing is committed here: the caller's transaction decides.
    """
    status, invite = _decide(conn, REDEEM, (code, user_id), code)
    if status == "redeemed" and invite is not None:
        return invite
    raise _refusal(status, invite, code)


def check(conn: psycopg.Connection[Any], code: str) -> Invite:
    """The invite behind `code`, changing nothing; raises InvalidCode or UnknownCode."""
    status, invite = _decide(conn, CHECK, (code,), code)
    if invite is None:
        raise _refusal(status, invite, code)
    return invite


def _decide(
    conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...], typed: str
) -> tuple[str, Invite | None]:
    if len(typed) > 4 * LENGTH:
        normalise(typed)  # raises InvalidCode, without sending a huge string to the server
    cursor = _invites(conn)
    with conn.pipeline():
        decided = conn.execute(query, params)
        found = cursor.execute(FIND_TYPED, (typed,))
        row = decided.fetchone()
        invite = found.fetchone()
    return (row[0] if row else "unknown"), invite


def _refusal(status: str, invite: Invite | None, typed: str) -> InviteError:
    if status == "invalid":
        try:
            normalise(typed)  # says which character or length is wrong
        except InvalidCode as exc:
            return exc
        return InvalidCode(f"{excerpt(typed.strip(), 40)} is not an invite code")
    if invite is None:
        return UnknownCode(normalise(typed))
    if status == "already_redeemed" and invite.used_at is not None:
        return AlreadyRedeemed(invite.code, invite.used_at)
    if status == "revoked":
        return InviteRevoked(invite.code, invite.revoked_at or invite.expires_at)
    return InviteExpired(invite.code, invite.expires_at)


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
