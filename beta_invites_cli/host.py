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
from psycopg.rows import class_row, dict_row

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
# refusal's reason), so hosts in any language get the same answers. One statement calls one and
# reads the invite it decided about, in one round trip.
CHECK_TEMPLATE = sql.SQL(
    """
    SELECT c.status AS outcome, {columns}
      FROM public.beta_invites_check(%(code)s) AS c
      LEFT JOIN public.beta_invites AS i ON i.id = c.invite_id
    """
)
# The function's UPDATE runs after this statement took its snapshot, so the row read here is
# the one from before it; what the UPDATE set on a win is known (now() is the transaction's).
REDEEM_TEMPLATE = sql.SQL(
    """
    WITH decided AS MATERIALIZED (
      SELECT * FROM public.beta_invites_redeem(%(code)s, %(user_id)s::uuid))
    SELECT d.status AS outcome, {columns}
      FROM decided AS d
      LEFT JOIN public.beta_invites AS i ON i.id = d.invite_id
    """
)
_WON = "d.status = 'redeemed'"
_COLUMNS: dict[str, sql.Composable] = {
    "id": sql.SQL("i.id"),
    "code": sql.SQL("i.code"),
    "email": sql.SQL("i.email"),
    "cohort": sql.SQL("i.cohort"),
    "created_at": sql.SQL("i.created_at"),
    "expires_at": sql.SQL("i.expires_at"),
    "sent_at": sql.SQL("i.sent_at"),
    "sent_by": sql.SQL("i.sent_by"),
    "revoked_at": sql.SQL("i.revoked_at"),
}


def _columns(overlay: dict[str, sql.Composable]) -> sql.Composable:
    columns: dict[str, sql.Composable] = {
        **_COLUMNS,
        "status": STATUS,
        "used_at": sql.SQL("i.used_at"),
    }
    columns["redeemed_by"] = sql.SQL("i.redeemed_by")
    columns.update(overlay)
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(columns[name], sql.Identifier(name))
        for name in Invite.__dataclass_fields__
    )


# Rendered to text once: composing them again for every call costs a tenth of a redemption.
CHECK = CHECK_TEMPLATE.format(columns=_columns({})).as_string()
REDEEM = REDEEM_TEMPLATE.format(
    columns=_columns(
        {
            "status": sql.SQL(f"CASE WHEN {_WON} THEN 'redeemed' ELSE {{}} END").format(STATUS),
            "used_at": sql.SQL(f"CASE WHEN {_WON} THEN now() ELSE i.used_at END"),
            "redeemed_by": sql.SQL(
                f"CASE WHEN {_WON} THEN %(user_id)s::uuid ELSE i.redeemed_by END"
            ),
        }
    )
).as_string()
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
    status, invite = _decide(conn, REDEEM, {"code": code, "user_id": user_id}, code)
    if status == "redeemed" and invite is not None:
        return invite
    # Refused: the row as it is now (the statement above read it as it was when it began).
    raise _refusal(status, _invites(conn).execute(FIND_TYPED, (code,)).fetchone(), code)


def check(conn: psycopg.Connection[Any], code: str) -> Invite:
    """The invite behind `code`, changing nothing; raises InvalidCode or UnknownCode."""
    status, invite = _decide(conn, CHECK, {"code": code}, code)
    if invite is None:
        raise _refusal(status, invite, code)
    return invite


def _decide(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], typed: str
) -> tuple[str, Invite | None]:
    if len(typed) > 4 * LENGTH:
        normalise(typed)  # raises InvalidCode, without sending a huge string to the server
    cursor = conn.cursor(row_factory=dict_row)
    load_infinity(cursor)  # the host's connection may not load 'infinity' by itself
    row = cursor.execute(query, params).fetchone()
    if row is None:
        return "unknown", None
    outcome = row.pop("outcome")
    return outcome, (Invite(**row) if row["id"] is not None else None)


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
