"""Writing down how a delivery attempt ended, in the transaction that holds its invite.

A refusal is recorded by its class (refusals.py): only "recipient gone" suppresses at once; a
soft refusal does so after INVITES_SOFT_BOUNCE_LIMIT different days of them, an unclassified one
on its second day; a sender refusal never does. The days are kept by digest, never by address.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli import suppression
from beta_invites_cli.delivery.refusals import Kind, Refusal

if TYPE_CHECKING:
    import psycopg

DEFAULT_SOFT_BOUNCE_LIMIT = 3
DEFAULT_MAX_SENDER_REFUSALS = 5

# Writes what an accepted message changes, in the transaction that holds its invite.
Record = Callable[["psycopg.Connection[Any]", UUID, str], None]


@dataclass(frozen=True)
class RefusalPolicy:
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT  # days of soft refusals, then suppressed
    max_sender_refusals: int = DEFAULT_MAX_SENDER_REFUSALS  # per receiving domain and run


@dataclass(frozen=True)
class Recorded:
    """What a refusal did: the invite bounced (never sent again), the address suppressed."""

    bounced: bool
    suppressed: str | None = None  # the reason, when this refusal suppressed the address
    changed: bool = True  # False: the invite already recorded this very refusal

    def consequence(self) -> str:
        if self.suppressed == "soft-bounced":
            return "refused on too many days: address suppressed (soft-bounced)"
        if self.bounced:
            return "never sent again"
        return "tried again next run"


def record_sent(conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
    conn.execute(
        """
        UPDATE public.beta_invites
           SET sent_at = now(), message_id = %s, delivery_outcome = NULL,
               delivery_outcome_at = NULL, delivery_reply = NULL, delivery_class = NULL
         WHERE id = %s
        """,
        (message_id, invite_id),
    )


def record_failure(
    conn: psycopg.Connection[Any], invite_id: UUID, email: str, outcome: str, reply: str
) -> None:
    """An attempt that ended without a refusal to read (uncertain, or failed for a reason of
    ours, such as a relay without SMTPUTF8)."""
    conn.execute(
        """
        UPDATE public.beta_invites
           SET delivery_outcome = %s, delivery_outcome_at = now(), delivery_reply = %s,
               delivery_class = NULL
         WHERE id = %s
        """,
        (outcome, without_address(reply, email), invite_id),
    )


def record_refusal(
    conn: psycopg.Connection[Any],
    invite_id: UUID,
    email: str | None,
    reply: str,
    refusal: Refusal | None,
    *,
    policy: RefusalPolicy,
    source: str,
    sender_fault: bool = False,
    day: date | None = None,
    once: bool = False,
) -> Recorded:
    """Record a refused message by its class. `sender_fault`: refused whatever its class (at
    MAIL FROM); `refusal` None: refused for good without an SMTP code (an address that cannot
    be written). `day` the refusal counts for (a report's date; today by default); `once`:
    change nothing when the invite already records a refusal of this outcome and class (a
    re-imported report, or a second report about the same message)."""
    kept = without_address(reply, email) if email is not None else reply[:1000]
    kind = refusal.kind if refusal is not None else None
    bounced, reason = refusal is None, None
    if sender_fault:
        bounced = False
    elif kind is Kind.RECIPIENT_GONE:
        bounced, reason = True, "bounced"
    elif email is not None and kind in (Kind.SOFT, Kind.UNCLASSIFIED):
        days = _refused_on(conn, email, kind, day)
        if kind is Kind.SOFT and days >= policy.soft_bounce_limit:
            reason = "soft-bounced"
        elif kind is Kind.UNCLASSIFIED and days >= 2:
            bounced, reason = True, "bounced"
    cursor = conn.execute(
        """
        UPDATE public.beta_invites
           SET delivery_outcome = %(outcome)s, delivery_outcome_at = now(),
               delivery_reply = %(reply)s, delivery_class = %(kind)s
         WHERE id = %(id)s
           AND NOT (%(once)s AND delivery_outcome IS NOT DISTINCT FROM %(outcome)s
                    AND delivery_class IS NOT DISTINCT FROM %(kind)s)
        """,
        {
            "outcome": "bounced" if bounced else "failed",
            "reply": kept,
            "kind": kind.value if kind is not None else None,
            "id": invite_id,
            "once": once,
        },
    )
    changed = cursor.rowcount > 0
    if reason is not None and email is not None and changed:
        added = suppression.add(conn, [email], reason=reason, source=source, detail=kept)
        return Recorded(bounced, reason if added else None)
    return Recorded(bounced, changed=changed)


def _refused_on(conn: psycopg.Connection[Any], email: str, kind: Kind, day: date | None) -> int:
    """Record that the address was refused (of this kind) on `day`; on how many days it was."""
    digest = suppression.digest(email)
    conn.execute(
        """
        INSERT INTO public.beta_invites_refusal_days (digest, kind, day)
        VALUES (%s, %s, coalesce(%s, current_date))
        ON CONFLICT DO NOTHING
        """,
        (digest, kind.value, day),
    )
    row = conn.execute(
        "SELECT count(*) FROM public.beta_invites_refusal_days WHERE digest = %s AND kind = %s",
        (digest, kind.value),
    ).fetchone()
    return int(row[0]) if row else 0


def without_address(reply: str, email: str) -> str:
    """A server reply with the recipient's address taken out: it is kept after the sweep."""
    local = email.rpartition("@")[0]
    # With its angle brackets, when the server wrote them (<ada@example.com>), so that the
    # reply reads `<recipient>`, not `<<recipient>>`.
    pattern = r"<?" + re.escape(local) + r"@[^\s>\]\)\"',;]+>?"
    return re.sub(pattern, "<recipient>", reply, flags=re.IGNORECASE)[:1000]


DEFAULT_POLICY = RefusalPolicy()
