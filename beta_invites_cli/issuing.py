"""Issuing invites: a checked request, then one COPY straight into beta_invites.

Issuing holds a transaction-level advisory lock, so two commands issuing to the same people at
the same moment run one after the other and the second sees, and skips, what the first issued.
Nobody gets two live codes unless the request says to issue anyway (force).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO
from uuid import UUID

from psycopg import sql

from beta_invites_cli.codes import new_codes
from beta_invites_cli.errors import InvitesError, ValidationFailed
from beta_invites_cli.recipients import Recipient, RecipientList, check_cohort, collect
from beta_invites_cli.status import Status, condition

if TYPE_CHECKING:
    import psycopg

ISSUE_LOCK_KEY = 7_140_990_002
MAX_CODE_ATTEMPTS = 5


@dataclass(frozen=True)
class IssuedInvite:
    email: str
    code: str
    cohort: str
    expires_at: datetime


@dataclass
class IssueResult:
    created: list[IssuedInvite] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why)


@dataclass(frozen=True)
class IssueRequest:
    """Checked input for issuing: the recipients, and the options that apply to all of them."""

    cohort: str
    found: RecipientList
    expires_in: timedelta | None
    sent_by: UUID | None


class InvalidRecipients(ValidationFailed):
    """Some addresses are not addresses; nothing was issued."""


def prepare(
    cohort: str,
    sources: list[tuple[str, BinaryIO]],
    addresses: list[tuple[str, str]],
    *,
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
) -> IssueRequest:
    """Read and check every recipient before anything is written: one line per problem.

    `sources` are (name, file) pairs; `addresses` (where, address) pairs given one by one."""
    found = collect(sources, addresses)
    if found.problems and not skip_invalid:
        raise InvalidRecipients(found.problems)
    return IssueRequest(check_cohort(cohort), found, expires_in, sent_by)


def issue(
    conn: psycopg.Connection[Any],
    request: IssueRequest,
    *,
    force: bool = False,
    mark_sent: bool = False,
    dry_run: bool = False,
) -> IssueResult:
    """Create the invites of a checked request in one transaction (committed unless dry_run).

    The rows are COPYed straight into beta_invites, as fast as PostgreSQL loads data. A code
    that collides with an existing one aborts the COPY: it is rolled back to a savepoint and
    retried with new codes, so a collision never reaches the operator.
    """
    import psycopg

    recipients = request.found.recipients
    cohort, expires_in, sent_by = request.cohort, request.expires_in, request.sent_by
    result = IssueResult()
    if not recipients:
        return result
    with conn.transaction(force_rollback=dry_run):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ISSUE_LOCK_KEY,))
        if not force:
            recipients, result.skipped = _without_invited(conn, recipients)
        if not recipients:
            return result
        clock = conn.execute("SELECT now(), now() + %s::interval", (expires_in,)).fetchone()
        assert clock is not None
        sent_at = clock[0] if mark_sent else None
        for _ in range(MAX_CODE_ATTEMPTS):
            codes = new_codes(len(recipients))
            try:
                with conn.transaction():
                    _copy(conn, recipients, codes, cohort, sent_by, sent_at, clock[1])
            except psycopg.errors.UniqueViolation as exc:
                if "code" not in (exc.diag.constraint_name or ""):
                    raise
                continue  # a code collided with an existing one: draw them all again
            break
        else:
            raise InvitesError("could not draw unused invite codes; nothing was issued")
        if expires_in is None:
            # The table's default expiry, the same for every row of this transaction.
            row = conn.execute(
                "SELECT expires_at FROM public.beta_invites WHERE code = %s", (codes[0],)
            ).fetchone()
            assert row is not None
            expires_at = row[0]
        else:
            expires_at = clock[1]
        result.created = [
            IssuedInvite(recipient.email, code, cohort, expires_at)
            for recipient, code in zip(recipients, codes, strict=True)
        ]
    return result


def _without_invited(
    conn: psycopg.Connection[Any], recipients: list[Recipient]
) -> tuple[list[Recipient], list[tuple[str, str]]]:
    """Drop people who already hold a live or a redeemed invite, saying which."""
    query = sql.SQL(
        """
        SELECT public.invites_email_key(email), bool_or({redeemed})
          FROM public.beta_invites
         WHERE public.invites_email_key(email) = ANY(%s) AND ({redeemed} OR {pending})
         GROUP BY 1
        """
    ).format(redeemed=condition(Status.REDEEMED), pending=condition(Status.PENDING))
    held = dict(conn.execute(query, ([r.key for r in recipients],)).fetchall())
    if not held:
        return recipients, []
    skipped = [
        (r.email, "already redeemed an invite" if held[r.key] else "already holds a live invite")
        for r in recipients
        if r.key in held
    ]
    return [r for r in recipients if r.key not in held], skipped


def _copy(
    conn: psycopg.Connection[Any],
    recipients: list[Recipient],
    codes: list[str],
    cohort: str,
    sent_by: UUID | None,
    sent_at: datetime | None,
    expires_at: datetime | None,
) -> None:
    # Without --expires-in the column is left out, so the table's own default applies.
    if expires_at is None:
        with conn.cursor().copy(
            "COPY public.beta_invites (code, email, cohort, sent_by, sent_at) FROM STDIN"
        ) as copy:
            for recipient, code in zip(recipients, codes, strict=True):
                copy.write_row((code, recipient.email, cohort, sent_by, sent_at))
    else:
        with conn.cursor().copy(
            "COPY public.beta_invites (code, email, cohort, sent_by, sent_at, expires_at) FROM STDIN"
        ) as copy:
            for recipient, code in zip(recipients, codes, strict=True):
                copy.write_row((code, recipient.email, cohort, sent_by, sent_at, expires_at))
