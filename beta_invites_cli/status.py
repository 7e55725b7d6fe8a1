"""The one definition of an invite's status, in SQL and in Python.

redeemed (used_at set), else expired (expires_at <= now), else pending: unsent or sent by sent_at.
"""

from __future__ import annotations

from datetime import datetime

STATUSES = ("redeemed", "expired", "pending", "unsent", "sent")

STATUS_SQL = """CASE
    WHEN used_at IS NOT NULL THEN 'redeemed'
    WHEN expires_at <= now() THEN 'expired'
    WHEN sent_at IS NULL THEN 'unsent'
    ELSE 'sent'
  END"""

# A WHERE condition for each status a person can filter on.
STATUS_CONDITION = {
    "redeemed": "used_at IS NOT NULL",
    "expired": "used_at IS NULL AND expires_at <= now()",
    "pending": "used_at IS NULL AND expires_at > now()",
    "unsent": "used_at IS NULL AND expires_at > now() AND sent_at IS NULL",
    "sent": "used_at IS NULL AND expires_at > now() AND sent_at IS NOT NULL",
}


def status_of(
    used_at: datetime | None, expires_at: datetime, sent_at: datetime | None, now: datetime
) -> str:
    if used_at is not None:
        return "redeemed"
    if expires_at <= now:
        return "expired"
    return "unsent" if sent_at is None else "sent"
