"""Errors the library raises for people to read; the CLI turns them into one line each."""

from __future__ import annotations

from datetime import datetime


class InvitesError(Exception):
    """A problem the operator can act on: the message is the whole story, no traceback."""


class ValidationFailed(InvitesError):
    """Input was rejected before anything was written; one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class DatabaseUnavailable(InvitesError):
    """The database could not be reached, or refused us."""


class InviteError(InvitesError):
    """Why a code cannot be redeemed; the host application catches this family."""

    status = "invalid"


class InvalidCode(InviteError):
    """The text cannot be an invite code (a character outside the alphabet, or the wrong length)."""

    status = "invalid"


class UnknownCode(InviteError):
    status = "unknown"

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"{code} is not an invite code we issued")


class AlreadyRedeemed(InviteError):
    status = "already_redeemed"

    def __init__(self, code: str, used_at: datetime) -> None:
        self.code = code
        self.used_at = used_at
        super().__init__(f"{code} was already redeemed at {used_at.isoformat(timespec='seconds')}")


class InviteExpired(InviteError):
    status = "expired"

    def __init__(self, code: str, expires_at: datetime) -> None:
        self.code = code
        self.expires_at = expires_at
        super().__init__(f"{code} expired at {expires_at.isoformat(timespec='seconds')}")


class InviteRevoked(InviteError):
    status = "revoked"

    def __init__(self, code: str, revoked_at: datetime) -> None:
        self.code = code
        self.revoked_at = revoked_at
        super().__init__(f"{code} was revoked at {revoked_at.isoformat(timespec='seconds')}")


def excerpt(value: str, limit: int = 60) -> str:
    """`value` quoted for an error message, cut to a short excerpt: a bad value may be huge."""
    if len(value) > limit:
        return repr(value[: limit - 1]) + f"… ({len(value):,} characters)"
    return repr(value)
