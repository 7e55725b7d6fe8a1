"""The one definition of an invite's status, in SQL.

An invite is, in this order of precedence:
  redeemed   used_at is set;
  revoked    revoked_at is set (an operator ended it; it never comes back);
  expired    its expiry has passed, or the sweep anonymised its email;
  pending    anything else: it can still be redeemed. A pending invite is
               sent       its message was accepted (sent_at), or marked delivered;
               uncertain  its message was handed over but the server's answer never came;
               unsent     nobody has been told the code yet.

Every query that selects or changes invites by status uses these conditions, in the same
statement that writes: an invite the sweep anonymised or an operator revoked can never be made
live again by a concurrent command.
"""

from __future__ import annotations

STATUSES = ("redeemed", "revoked", "expired", "pending", "unsent", "uncertain", "sent")

# Everything that makes an invite redeemable, extendable, sendable.
LIVE = "used_at IS NULL AND revoked_at IS NULL AND anonymized_at IS NULL AND expires_at > now()"

STATUS_CONDITION = {
    "redeemed": "used_at IS NOT NULL",
    "revoked": "used_at IS NULL AND revoked_at IS NOT NULL",
    "expired": (
        "used_at IS NULL AND revoked_at IS NULL"
        " AND (expires_at <= now() OR anonymized_at IS NOT NULL)"
    ),
    "pending": LIVE,
    "unsent": f"{LIVE} AND sent_at IS NULL AND delivery_outcome IS DISTINCT FROM 'uncertain'",
    "uncertain": f"{LIVE} AND sent_at IS NULL AND delivery_outcome = 'uncertain'",
    "sent": f"{LIVE} AND sent_at IS NOT NULL",
}

STATUS_SQL = """CASE
    WHEN used_at IS NOT NULL THEN 'redeemed'
    WHEN revoked_at IS NOT NULL THEN 'revoked'
    WHEN expires_at <= now() OR anonymized_at IS NOT NULL THEN 'expired'
    WHEN sent_at IS NOT NULL THEN 'sent'
    WHEN delivery_outcome = 'uncertain' THEN 'uncertain'
    ELSE 'unsent'
  END"""
