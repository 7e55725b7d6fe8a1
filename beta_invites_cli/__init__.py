"""beta-invites: single-use invite codes for a soft-launch beta, kept in PostgreSQL.

The host application imports `redeem` and `check` from here to redeem codes inside its own
transaction, and `unsubscribe` for its unsubscribe endpoint; everything else is the `invites`
command line. The names below are loaded on
first use, so that starting the command line imports nothing it does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from beta_invites_cli.errors import InvitesError
    from beta_invites_cli.host import (
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
    from beta_invites_cli.suppression import unsubscribe

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
    "unsubscribe",
]


def __getattr__(name: str) -> Any:
    if name == "unsubscribe":
        from beta_invites_cli.suppression import unsubscribe

        return unsubscribe
    if name == "InvitesError":
        from beta_invites_cli.errors import InvitesError

        return InvitesError
    if name in __all__:
        from beta_invites_cli import host

        return getattr(host, name)
    raise AttributeError(f"module 'beta_invites_cli' has no attribute {name!r}")
