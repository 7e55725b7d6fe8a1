"""Emailing invites, crash-safe: each invite is locked while its message is in flight and its
sent_at is committed right after the server accepts the message.

A run killed at any moment leaves every undelivered invite with sent_at NULL, so the same
command delivers it next time, with the same code; at most the one message in flight when the
process died can arrive twice. Concurrent runs skip each other's locked rows (SKIP LOCKED), so
nobody is emailed twice by two operators either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.mail import DeliveryFailed, Letter, Transport, build_letter
from beta_invites_cli.template import Template, signup_link

if TYPE_CHECKING:
    import psycopg

PAGE = 500


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
    interrupted: bool = False
    aborted: str | None = None


def compose(letterhead: Letterhead, invite: Pending) -> Letter:
    subject, body = letterhead.template.render(
        code=invite.code,
        link=signup_link(letterhead.signup_url, invite.code),
        cohort=invite.cohort,
        expires_at=invite.expires_at,
        email=invite.email,
    )
    return build_letter(
        sender=letterhead.sender,
        reply_to=letterhead.reply_to,
        to=invite.email,
        subject=subject,
        body=body,
        name=invite.code,
    )


def count_unsent(conn: psycopg.Connection[Any], cohort: str) -> int:
    row = conn.execute(
        """
        SELECT count(*) FROM public.beta_invites
         WHERE cohort = %s AND sent_at IS NULL AND used_at IS NULL AND expires_at > now()
        """,
        (cohort,),
    ).fetchone()
    return int(row[0]) if row else 0


def first_unsent(conn: psycopg.Connection[Any], cohort: str) -> Pending | None:
    return next(_unsent_pages(conn, cohort, limit=1), None)


def _unsent_pages(
    conn: psycopg.Connection[Any], cohort: str, limit: int | None = None
) -> Iterator[Pending]:
    """Unsent, live invites of the cohort in issue order, a page at a time (keyset paging)."""
    after: tuple[datetime, UUID] | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        page = PAGE if remaining is None else min(PAGE, remaining)
        rows = conn.execute(
            """
            SELECT id, code, email, cohort, expires_at, created_at
              FROM public.beta_invites
             WHERE cohort = %(cohort)s AND sent_at IS NULL AND used_at IS NULL AND expires_at > now()
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
    on_progress: Callable[[Pending, str | None], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryResult:
    """Email every unsent, live invite of `cohort` (at most `limit`), `rate` per second at most.

    Both connections are in autocommit mode: `reader` walks the candidates while each message
    gets its own transaction on `conn`: lock the row, send, record sent_at, commit. Committing
    one message and locking the next travel together in one round trip (a pipeline).
    """
    result = DeliveryResult()
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    sent: Pending | None = None  # accepted by the server, sent_at not yet committed
    try:
        for candidate in _unsent_pages(reader, cohort):
            if limit is not None and result.sent + len(result.failed) + (sent is not None) >= limit:
                break
            if should_stop():
                result.interrupted = True
                break
            invite = _commit_and_lock(conn, sent, candidate.id)
            if sent is not None:
                _progress(result, on_progress, sent, None)
                sent = None
            if invite is None:
                conn.execute("ROLLBACK")
                continue  # another sender has it, or it was redeemed or sent meanwhile
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at, time.monotonic()) + interval
            try:
                transport.deliver(compose(letterhead, invite))
            except DeliveryFailed as exc:
                conn.execute("ROLLBACK")
                _progress(result, on_progress, invite, str(exc))
                continue
            except InvitesError as exc:  # the mail server cannot be reached at all
                conn.execute("ROLLBACK")
                result.aborted = str(exc)
                break
            sent = invite
        if sent is not None:
            _commit_and_lock(conn, sent, None)
            _progress(result, on_progress, sent, None)
            sent = None
    finally:
        if not conn.closed and conn.info.transaction_status != conn.info.transaction_status.IDLE:
            conn.execute("ROLLBACK")
    return result


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
    conn: psycopg.Connection[Any], sent: Pending | None, next_id: UUID | None
) -> Pending | None:
    """Record `sent` as delivered and commit; then open a transaction locking `next_id`.

    The lock is held while that invite's message is in flight, so a concurrent sender skips it.
    """
    with conn.pipeline():
        if sent is not None:
            conn.execute("UPDATE public.beta_invites SET sent_at = now() WHERE id = %s", (sent.id,))
            conn.execute("COMMIT")
        if next_id is None:
            return None
        conn.execute("BEGIN")
        row = conn.execute(
            """
            SELECT id, code, email, cohort, expires_at
              FROM public.beta_invites
             WHERE id = %s AND sent_at IS NULL AND used_at IS NULL AND expires_at > now()
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
    result = DeliveryResult()
    for invite in invites:
        try:
            transport.deliver(compose(letterhead, invite))
            result.sent += 1
        except DeliveryFailed as exc:
            result.failed.append((invite.email, str(exc)))
    return result
