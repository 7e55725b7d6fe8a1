"""Which invites a run emails, and what each message says: the candidates in issue order, a
page at a time; what a cohort's run leaves alone on purpose; the dry run's preview."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row

from beta_invites_cli import suppression
from beta_invites_cli.codes import new_code
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.message import Letter, build_letter
from beta_invites_cli.delivery.transport import DeliveryFailed
from beta_invites_cli.status import Status, condition
from beta_invites_cli.suppression import NOT_SUPPRESSED
from beta_invites_cli.template import signup_link

if TYPE_CHECKING:
    import psycopg

PAGE = 500


@dataclass(frozen=True)
class Pending:
    """An invite whose message is to be sent."""

    id: UUID
    code: str
    email: str
    cohort: str
    expires_at: datetime
    created_at: datetime | None = None  # for paging through a cohort in issue order


def compose(letterhead: Letterhead, invite: Pending) -> Letter:
    """The message for one invite; raises DeliveryFailed when its address cannot be written."""
    rendered = letterhead.template.render(
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
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            name=invite.code,
            unsubscribe=letterhead.unsubscribe,
            dkim=letterhead.dkim,
        )
    except (ValueError, UnicodeError) as exc:
        raise DeliveryFailed(f"the address cannot be put on the wire: {exc}") from None


def sendable(retry_uncertain: bool) -> sql.Composable:
    """Which invites `send` emails: unsent ones (uncertain ones only when asked), never a
    suppressed address."""
    return sql.SQL("{} AND {}").format(unsuppressed(retry_uncertain), NOT_SUPPRESSED)


def unsuppressed(retry_uncertain: bool) -> sql.Composable:
    """What `send` would email if no address were suppressed."""
    if retry_uncertain:
        return sql.SQL("({} OR {})").format(condition(Status.UNSENT), condition(Status.UNCERTAIN))
    return condition(Status.UNSENT)


@dataclass(frozen=True)
class HeldBack:
    """The invites of a cohort that `send` leaves alone on purpose."""

    bounced: int
    suppressed: dict[str, int]  # by reason

    @property
    def total(self) -> int:
        return self.bounced + sum(self.suppressed.values())

    def describe(self) -> str:
        parts = []
        if self.suppressed:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.suppressed.items()))
            parts.append(f"{sum(self.suppressed.values())} suppressed ({reasons})")
        if self.bounced:
            parts.append(f"{self.bounced} bounced earlier")
        return "; ".join(parts)


def held_back(conn: psycopg.Connection[Any], cohort: str, retry_uncertain: bool) -> HeldBack:
    return HeldBack(
        bounced=count(conn, cohort, condition(Status.BOUNCED)),
        suppressed=suppression.skipped_by_reason(conn, cohort, unsuppressed(retry_uncertain)),
    )


def held_back_from_resend(conn: psycopg.Connection[Any], cohort: str) -> HeldBack:
    """What `resend --cohort` leaves alone: sent, live invites whose address is suppressed, and
    those that bounced."""
    return HeldBack(
        bounced=count(conn, cohort, condition(Status.BOUNCED)),
        suppressed=suppression.skipped_by_reason(conn, cohort, condition(Status.SENT)),
    )


def count(conn: psycopg.Connection[Any], cohort: str, which: sql.Composable) -> int:
    query = sql.SQL("SELECT count(*) FROM public.beta_invites WHERE cohort = %s AND {}")
    row = conn.execute(query.format(which), (cohort,)).fetchone()
    return int(row[0]) if row else 0


PAGE_QUERY = sql.SQL(
    """
    SELECT id, code, email, cohort, expires_at, created_at
      FROM public.beta_invites
     WHERE {where}
       AND (%(after_created)s::timestamptz IS NULL
            OR (created_at, id) > (%(after_created)s, %(after_id)s::uuid))
     ORDER BY created_at, id
     LIMIT %(page)s
    """
)


def unsent(
    conn: psycopg.Connection[Any], cohort: str, *, retry_uncertain: bool = False
) -> Iterator[Pending]:
    """Sendable invites of the cohort in issue order, a page at a time (keyset paging)."""
    where = sql.SQL("cohort = %(cohort)s AND {}").format(sendable(retry_uncertain))
    return candidates(conn, where, {"cohort": cohort})


def candidates(
    conn: psycopg.Connection[Any], where: sql.Composable, params: dict[str, Any]
) -> Iterator[Pending]:
    """The invites matching `where`, in issue order, a page at a time (keyset paging)."""
    query = PAGE_QUERY.format(where=where)
    last: Pending | None = None
    cursor = conn.cursor(row_factory=class_row(Pending))
    while True:
        params = {
            **params,
            "after_created": last.created_at if last else None,
            "after_id": last.id if last else None,
            "page": PAGE,
        }
        page = cursor.execute(query, params).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1]


@dataclass(frozen=True)
class Preview:
    """What `send --dry-run` shows: the first message, and how many would go out."""

    first: Letter | None
    problem: str | None  # why the first message cannot be written
    would_issue: int
    would_skip: int
    would_send: int


def preview(
    conn: psycopg.Connection[Any],
    cohort: str,
    letterhead: Letterhead,
    first_new: Any,
    new: int,
    skipped: int,
    *,
    limit: int | None,
    retry_uncertain: bool,
) -> Preview:
    """`new` invites a real run would issue first (not issued: a dry run), the first of them
    `first_new`."""
    total = count(conn, cohort, sendable(retry_uncertain)) + new
    total = min(total, limit) if limit else total
    first = next(unsent(conn, cohort, retry_uncertain=retry_uncertain), None)
    if first is None and first_new is not None:
        # Not issued yet: preview with a code drawn just for the preview.
        first = Pending(UUID(int=0), new_code(), first_new.email, cohort, first_new.expires_at)
    letter = problem = None
    if first is not None:
        try:
            letter = compose(letterhead, first)
        except DeliveryFailed as exc:
            problem = str(exc)
    return Preview(letter, problem, new, skipped, total)
