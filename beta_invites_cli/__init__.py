"""beta-invites: single-use invite codes for a soft-launch beta, kept in PostgreSQL.

The host application imports `redeem` and `check` from here to redeem codes inside its own
transaction; everything else is the `invites` command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.lifecycle import (
    AlreadyRedeemed,
    InvalidCode,
    Invite,
    InviteError,
    InviteExpired,
    InviteRevoked,
    UnknownCode,
    check,
    redeem,
)

__all__ = [
    "AlreadyRedeemed",
    "InvalidCode",
    "Invite",
    "InviteError",
    "InviteExpired",
    "InviteRevoked",
    "InvitesError",
    "UnknownCode",
    "__version__",
    "check",
    "redeem",
]
