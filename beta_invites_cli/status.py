"""The one definition of an invite's status, in SQL and in Python.

An invite is, in this order of precedence:
  redeemed   used_at is set;
  revoked    revoked_at is set (an operator ended it; it never comes back);
  expired    its expiry has passed, or the sweep anonymised its email;
  pending    anything else: it can still be redeemed. A pending invite is
               bounced    its address was refused for good (at send time, or by a bounce
                          report later): it is not emailed again;
               sent       its message was accepted (sent_at), or marked delivered;
               uncertain  its message was handed over but the server's answer never came;
               unsent     nobody has been told the code yet.

Every query that selects or changes invites by status composes these conditions into the
statement that writes, so an invite the sweep anonymised or an operator revoked can never be
made live again by a concurrent command: PostgreSQL re-checks them on the newest row version.
"""

from __future__ import annotations

from enum import Enum

from psycopg import sql


class Status(str, Enum):
    REDEEMED = "redeemed"
    REVOKED = "revoked"
    EXPIRED = "expired"
    PENDING = "pending"
    UNSENT = "unsent"
    UNCERTAIN = "uncertain"
    SENT = "sent"
    BOUNCED = "bounced"


STATUSES = tuple(status.value for status in Status)

_NOT_REDEEMED = "used_at IS NULL"
_NOT_REVOKED = "revoked_at IS NULL"
_ENDED = "(expires_at <= now() OR anonymized_at IS NOT NULL)"
_LIVE = f"{_NOT_REDEEMED} AND {_NOT_REVOKED} AND anonymized_at IS NULL AND expires_at > now()"
_UNCERTAIN = "delivery_outcome = 'uncertain'"
_BOUNCED = "delivery_outcome = 'bounced'"
_HELD_BACK = "coalesce(delivery_outcome IN ('uncertain', 'bounced'), false)"

# Everything that makes an invite redeemable, extendable, sendable.
LIVE = sql.SQL(_LIVE)

CONDITION: dict[Status, sql.SQL] = {
    Status.REDEEMED: sql.SQL("used_at IS NOT NULL"),
    Status.REVOKED: sql.SQL(f"{_NOT_REDEEMED} AND revoked_at IS NOT NULL"),
    Status.EXPIRED: sql.SQL(f"{_NOT_REDEEMED} AND {_NOT_REVOKED} AND {_ENDED}"),
    Status.PENDING: LIVE,
    Status.UNSENT: sql.SQL(f"{_LIVE} AND sent_at IS NULL AND NOT {_HELD_BACK}"),
    Status.UNCERTAIN: sql.SQL(f"{_LIVE} AND sent_at IS NULL AND {_UNCERTAIN}"),
    Status.SENT: sql.SQL(f"{_LIVE} AND sent_at IS NOT NULL AND NOT coalesce({_BOUNCED}, false)"),
    Status.BOUNCED: sql.SQL(f"{_LIVE} AND {_BOUNCED}"),
}

# The status of a row as a column expression.
STATUS = sql.SQL(
    "CASE"
    " WHEN used_at IS NOT NULL THEN 'redeemed'"
    " WHEN revoked_at IS NOT NULL THEN 'revoked'"
    f" WHEN {_ENDED} THEN 'expired'"
    f" WHEN {_BOUNCED} THEN 'bounced'"
    " WHEN sent_at IS NOT NULL THEN 'sent'"
    f" WHEN {_UNCERTAIN} THEN 'uncertain'"
    " ELSE 'unsent'"
    " END"
)


def condition(status: Status | str) -> sql.SQL:
    return CONDITION[Status(status)]
