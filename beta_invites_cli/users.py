"""The host application's users: `sent_by` and `redeemed_by` name rows of public.users."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    import psycopg


class UnknownUser(InvitesError):
    """A user id that public.users does not hold."""

    def __init__(self, user: UUID) -> None:
        self.user = user
        super().__init__(f"{user}: no such user in public.users")


def check_user(conn: psycopg.Connection[Any], user: UUID | None) -> None:
    if user is None:
        return
    row = conn.execute("SELECT 1 FROM public.users WHERE id = %s", (user,)).fetchone()
    if row is None:
        raise UnknownUser(user)
