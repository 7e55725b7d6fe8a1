"""Why `resend` refuses a named code, and resending: the same code, a new Message-ID."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli import suppression
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.engine import (
    DEFAULT_MAX_ERRORS,
    Connections,
    DeliveryResult,
    deliver,
)
from beta_invites_cli.delivery.recording import DEFAULT_POLICY, RefusalPolicy
from beta_invites_cli.delivery.selection import Pending
from beta_invites_cli.delivery.transport import Transport
from beta_invites_cli.errors import ValidationFailed
from beta_invites_cli.host import find_many
from beta_invites_cli.lifecycle import normalised_codes, when
from beta_invites_cli.status import Status, condition
from beta_invites_cli.suppression import NOT_SUPPRESSED

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Refusal:
    """Why resend refused a named code."""

    code: str
    why: str
    status: Status | None  # None: not a code we issued
    cohort: str | None


class NotResendable(ValidationFailed):
    """Named codes resend refused; nothing was sent."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = refusals
        super().__init__([f"{r.code} {r.why}" for r in refusals] + ["nothing was resent"])


def resendable(
    conn: psycopg.Connection[Any], *, codes: tuple[str, ...] = (), cohort: str | None = None
) -> list[Pending]:
    """The sent, live invites to email again; named codes that cannot be resent are refused."""
    if cohort is not None:
        query = sql.SQL(
            """
            SELECT id, code, email, cohort, expires_at FROM public.beta_invites
             WHERE cohort = %s AND {sent} AND {not_suppressed}
             ORDER BY created_at, id
            """
        ).format(sent=condition(Status.SENT), not_suppressed=NOT_SUPPRESSED)
        return conn.cursor(row_factory=class_row(Pending)).execute(query, (cohort,)).fetchall()
    wanted = normalised_codes(codes, outcome="nothing was resent")
    found = find_many(conn, wanted)
    refusals: list[Refusal] = []
    result = []
    for code in wanted:
        invite = found.get(code)
        if invite is None:
            refusals.append(Refusal(code, "is not an invite code we issued", None, None))
            continue
        status = Status(invite.status)
        why = {
            Status.REDEEMED: f"was redeemed at {when(invite.used_at)}: not resent",
            Status.REVOKED: f"was revoked at {when(invite.revoked_at)}: not resent",
            Status.EXPIRED: f"expired at {when(invite.expires_at)}: not resent",
            Status.UNCERTAIN: "may not have received its first message yet",
            Status.UNSENT: "has not been sent yet",
            Status.BOUNCED: "bounced: its address refused the message for good; not resent",
        }.get(status)
        if why is None and invite.email is not None:
            ((_, entry),) = suppression.check(conn, [invite.email])
            if entry is not None:
                why = f"its address is suppressed ({entry.reason}): not resent"
        if why is not None:
            refusals.append(Refusal(code, why, status, invite.cohort))
        else:
            result.append(
                Pending(invite.id, invite.code, invite.email, invite.cohort, invite.expires_at)
            )
    if refusals:
        raise NotResendable(refusals)
    return result


def resend(
    senders: list[tuple[Connections, Transport]],
    invites: list[Pending],
    letterhead: Letterhead,
    *,
    max_errors: int = DEFAULT_MAX_ERRORS,
    policy: RefusalPolicy = DEFAULT_POLICY,
    on_progress: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """Email sent invites again, over every sender at once. Each is locked and re-checked while
    its message is in flight, so an invite revoked, redeemed, anonymised or suppressed
    meanwhile is not mailed; the new Message-ID is kept for bounce reports."""
    which = sql.SQL("{} AND {}").format(condition(Status.SENT), NOT_SUPPRESSED)
    return deliver(
        senders,
        iter(invites),
        which,
        {},
        letterhead,
        record=_record_resent,
        on_changed=_changed_meanwhile,
        max_errors=max_errors,
        policy=policy,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def _record_resent(conn: psycopg.Connection[Any], invite_id: UUID, message_id: str) -> None:
    conn.execute(
        "UPDATE public.beta_invites SET message_id = %s WHERE id = %s", (message_id, invite_id)
    )


def _changed_meanwhile(listed: Pending, result: DeliveryResult) -> None:
    why = "changed meanwhile (redeemed, revoked, expired, suppressed or being sent): not resent"
    result.failed.append((listed.email, why))
