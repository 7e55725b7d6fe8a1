"""Emailing invites, crash-safe: each invite is locked while its message is in flight and its
sent_at is committed right after the server accepts the message.

A run killed at any moment leaves every undelivered invite with sent_at NULL, so the same
command delivers it next time, with the same code; at most the one message in flight when the
process died can arrive twice. Concurrent runs skip each other's locked rows (SKIP LOCKED), so
nobody is emailed twice by two operators either. A message whose fate is unknown (the server
never answered the end of DATA) is recorded as `uncertain` and not sent again unless the
operator asks for it; a refused one is recorded as `failed` and tried again by the next run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.mail import (
    DeliveryFailed,
    DeliveryUncertain,
    Letter,
    Transport,
    build_letter,
)
from beta_invites_cli.status import STATUS_CONDITION
from beta_invites_cli.template import Template, signup_link

if TYPE_CHECKING:
    import psycopg

PAGE = 500
# A server that leaves this many messages in a row without an answer is not answering at all.
MAX_UNCERTAIN_IN_A_ROW = 3


@dataclass(frozen=True)
class Letterhead:
    sender: str
    reply_to: str | None
    signup_url: str | None
    template: Template


@dataclass(frozen=True)
class Pending:
    id: UUID
    code: str
    email: str
    cohort: str
    expires_at: datetime


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    uncertain: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    interrupted: bool = False
    aborted: str | None = None


def compose(letterhead: Letterhead, invite: Pending) -> Letter:
    """The message for one invite; raises DeliveryFailed when its address cannot be written."""
    subject, body = letterhead.template.render(
        code=invite.code,
        link=signup_link(letterhead.signup_url, invite.code),
        cohort=invite.cohort,
        expires_at=invite.expires_at,
        email=invite.email,
    )
    try:
        return build_letter(
            sender=letterhead.sender,
            reply_to=letterhead.reply_to,
            to=invite.email,
            subject=subject,
            body=body,
            name=invite.code,
        )
    except (ValueError, UnicodeError) as exc:
        raise DeliveryFailed(f"the address cannot be put on the wire: {exc}") from None


def sendable(retry_uncertain: bool) -> str:
    """Which invites `send` emails: unsent ones, and uncertain ones only when asked."""
    if retry_uncertain:
        return f"({STATUS_CONDITION['unsent']} OR {STATUS_CONDITION['uncertain']})"
    return STATUS_CONDITION["unsent"]


def count_unsent(
    conn: psycopg.Connection[Any], cohort: str, *, retry_uncertain: bool = False
) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM public.beta_invites WHERE cohort = %s AND {sendable(retry_uncertain)}",
        (cohort,),
    ).fetchone()
    return int(row[0]) if row else 0


def count_uncertain(conn: psycopg.Connection[Any], cohort: str) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM public.beta_invites WHERE cohort = %s AND {STATUS_CONDITION['uncertain']}",
        (cohort,),
    ).fetchone()
    return int(row[0]) if row else 0


def first_unsent(
    conn: psycopg.Connection[Any], cohort: str, *, retry_uncertain: bool = False
) -> Pending | None:
    return next(_unsent_pages(conn, cohort, limit=1, retry_uncertain=retry_uncertain), None)


def _unsent_pages(
    conn: psycopg.Connection[Any],
    cohort: str,
    limit: int | None = None,
    *,
    retry_uncertain: bool = False,
) -> Iterator[Pending]:
    """Sendable invites of the cohort in issue order, a page at a time (keyset paging)."""
    after: tuple[datetime, UUID] | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        page = PAGE if remaining is None else min(PAGE, remaining)
        rows = conn.execute(
            f"""
            SELECT id, code, email, cohort, expires_at, created_at
              FROM public.beta_invites
             WHERE cohort = %(cohort)s AND {sendable(retry_uncertain)}
               AND (%(after_created)s::timestamptz IS NULL
                    OR (created_at, id) > (%(after_created)s, %(after_id)s::uuid))
             ORDER BY created_at, id
             LIMIT %(page)s
            """,
            {
                "cohort": cohort,
                "after_created": after[0] if after else None,
                "after_id": after[1] if after else None,
                "page": page,
            },
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield Pending(row[0], row[1], row[2], row[3], row[4])
        after = (rows[-1][5], rows[-1][0])
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < page:
            return


def deliver_cohort(
    conn: psycopg.Connection[Any],
    reader: psycopg.Connection[Any],
    cohort: str,
    letterhead: Letterhead,
    transport: Transport,
    *,
    limit: int | None = None,
    rate: float | None = None,
    retry_uncertain: bool = False,
    on_progress: Callable[[Pending, str | None], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """Email every sendable invite of `cohort` (at most `limit`), `rate` per second at most.

    Both connections are in autocommit mode: `reader` walks the candidates while each message
    gets its own transaction on `conn`: lock the row, send, record the outcome, commit.
    Committing one message and locking the next travel together in one round trip (a pipeline).
    """
    result = DeliveryResult()
    condition = sendable(retry_uncertain)
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    sent: Pending | None = None  # accepted by the server, sent_at not yet committed
    uncertain_in_a_row = 0
    try:
        for candidate in _unsent_pages(reader, cohort, retry_uncertain=retry_uncertain):
            attempted = result.sent + len(result.failed) + len(result.uncertain)
            if limit is not None and attempted + (sent is not None) >= limit:
                break
            if should_stop():
                result.interrupted = True
                break
            invite = _commit_and_lock(conn, sent, candidate.id, condition)
            if sent is not None:
                _progress(result, on_progress, sent, None)
                sent = None
            if invite is None:
                conn.execute("ROLLBACK")
                continue  # another sender has it, or it was redeemed, revoked or sent meanwhile
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at, time.monotonic()) + interval
            try:
                transport.deliver(compose(letterhead, invite))
            except DeliveryFailed as exc:
                _record_outcome(conn, invite, "failed", str(exc))
                _progress(result, on_progress, invite, str(exc))
                continue
            except DeliveryUncertain as exc:
                _record_outcome(conn, invite, "uncertain", str(exc))
                result.uncertain.append((invite.email, str(exc)))
                if on_progress is not None:
                    on_progress(invite, str(exc))
                uncertain_in_a_row += 1
                if uncertain_in_a_row >= MAX_UNCERTAIN_IN_A_ROW:
                    result.aborted = (
                        f"the mail server {transport.description} left {uncertain_in_a_row} "
                        "messages in a row without an answer: stopped"
                    )
                    break
                continue
            except InvitesError as exc:  # the mail server cannot be reached at all
                conn.execute("ROLLBACK")
                result.aborted = str(exc)
                break
            uncertain_in_a_row = 0
            sent = invite
        if sent is not None:
            _commit_and_lock(conn, sent, None, condition)
            _progress(result, on_progress, sent, None)
            sent = None
    finally:
        if not conn.closed and conn.info.transaction_status != conn.info.transaction_status.IDLE:
            conn.execute("ROLLBACK")
    return result


def _record_outcome(
    conn: psycopg.Connection[Any], invite: Pending, outcome: str, reply: str
) -> None:
    """Keep how the attempt ended (without the address), and release the row."""
    conn.execute(
        """
        UPDATE public.beta_invites
           SET delivery_outcome = %s, delivery_outcome_at = now(), delivery_reply = %s
         WHERE id = %s
        """,
        (outcome, without_address(reply, invite.email), invite.id),
    )
    conn.execute("COMMIT")


def without_address(reply: str, email: str) -> str:
    """A server reply with the recipient's address taken out: it is kept after the sweep."""
    local = email.rpartition("@")[0]
    pattern = re.escape(local) + r"@[^\s>\]\)\"',;]+"
    return re.sub(pattern, "<recipient>", reply, flags=re.IGNORECASE)[:1000]


def _progress(
    result: DeliveryResult,
    on_progress: Callable[[Pending, str | None], None] | None,
    invite: Pending,
    error: str | None,
) -> None:
    if error is None:
        result.sent += 1
    else:
        result.failed.append((invite.email, error))
    if on_progress is not None:
        on_progress(invite, error)


def _commit_and_lock(
    conn: psycopg.Connection[Any], sent: Pending | None, next_id: UUID | None, condition: str
) -> Pending | None:
    """Record `sent` as delivered and commit; then open a transaction locking `next_id`.

    The lock is held while that invite's message is in flight, so a concurrent sender skips it.
    The condition is checked again under the lock: an invite revoked, redeemed or anonymised
    since it was listed is not sent.
    """
    with conn.pipeline():
        if sent is not None:
            conn.execute(
                """
                UPDATE public.beta_invites
                   SET sent_at = now(), delivery_outcome = NULL, delivery_outcome_at = NULL,
                       delivery_reply = NULL
                 WHERE id = %s
                """,
                (sent.id,),
            )
            conn.execute("COMMIT")
        if next_id is None:
            return None
        conn.execute("BEGIN")
        row = conn.execute(
            f"""
            SELECT id, code, email, cohort, expires_at
              FROM public.beta_invites
             WHERE id = %s AND {condition}
               FOR UPDATE SKIP LOCKED
            """,
            (next_id,),
        ).fetchone()
    return None if row is None else Pending(*row)


def resend(
    conn: psycopg.Connection[Any],
    invites: list[Pending],
    letterhead: Letterhead,
    transport: Transport,
) -> DeliveryResult:
    """Email sent invites again. Each is locked and re-checked while its message is in flight,
    so an invite revoked, redeemed or anonymised meanwhile is not mailed."""
    result = DeliveryResult()
    for listed in invites:
        with conn.transaction():
            row = conn.execute(
                f"""
                SELECT id, code, email, cohort, expires_at FROM public.beta_invites
                 WHERE id = %s AND {STATUS_CONDITION["sent"]}
                   FOR UPDATE SKIP LOCKED
                """,
                (listed.id,),
            ).fetchone()
            if row is None:
                result.failed.append(
                    (
                        listed.email,
                        "changed meanwhile (redeemed, revoked, expired or being sent): not resent",
                    )
                )
                continue
            invite = Pending(*row)
            try:
                transport.deliver(compose(letterhead, invite))
                result.sent += 1
            except DeliveryFailed as exc:
                result.failed.append((invite.email, str(exc)))
            except DeliveryUncertain as exc:
                result.uncertain.append((invite.email, str(exc)))
            except InvitesError as exc:
                result.aborted = str(exc)
                break
    return result
