"""Issuing invites: one COPY into a temporary table and one INSERT ... SELECT per batch.

Issuing holds a transaction-level advisory lock, so two commands issuing to the same people at
the same moment run one after the other and the second sees, and skips, what the first issued.
Nobody gets two live codes unless --force asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from beta_invites_cli.codes import new_code
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.recipients import Recipient, RecipientList

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


def check_sender(conn: psycopg.Connection[Any], sent_by: UUID | None) -> None:
    if sent_by is None:
        return
    row = conn.execute("SELECT 1 FROM public.users WHERE id = %s", (sent_by,)).fetchone()
    if row is None:
        raise InvitesError(f"--sent-by {sent_by}: no such user in public.users")


def issue(
    conn: psycopg.Connection[Any],
    recipients: list[Recipient],
    *,
    cohort: str,
    expires_in: timedelta | None = None,
    sent_by: UUID | None = None,
    force: bool = False,
    mark_sent: bool = False,
    dry_run: bool = False,
) -> IssueResult:
    """Create invites for `recipients` in one transaction (committed unless dry_run)."""
    result = IssueResult()
    if not recipients:
        return result
    with conn.transaction(force_rollback=dry_run):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ISSUE_LOCK_KEY,))
        conn.execute(
            "CREATE TEMPORARY TABLE invites_incoming ("
            " email text NOT NULL, email_key text PRIMARY KEY, code text NOT NULL, position int NOT NULL"
            ") ON COMMIT DROP"
        )
        with conn.cursor().copy(
            "COPY invites_incoming (email, email_key, code, position) FROM STDIN"
        ) as copy:
            for position, recipient in enumerate(recipients):
                copy.write_row((recipient.email, recipient.key, new_code(), position))
        if not force:
            skipped = conn.execute(
                """
                WITH blocked AS (
                  SELECT i.email_key, bool_or(b.used_at IS NOT NULL) AS redeemed
                    FROM invites_incoming i
                    JOIN public.beta_invites b ON lower(b.email) = i.email_key
                   WHERE b.used_at IS NOT NULL OR b.expires_at > now()
                   GROUP BY i.email_key
                )
                DELETE FROM invites_incoming i
                 USING blocked
                 WHERE i.email_key = blocked.email_key
                RETURNING i.email, i.position, blocked.redeemed
                """
            ).fetchall()
            result.skipped = [
                (email, "already redeemed an invite" if redeemed else "already holds a live invite")
                for email, _, redeemed in sorted(skipped, key=lambda row: row[1])
            ]
        waiting = len(recipients) - len(result.skipped)
        params = {
            "cohort": cohort,
            "expires_in": expires_in,
            "sent_by": sent_by,
            "mark_sent": mark_sent,
        }
        for _ in range(MAX_CODE_ATTEMPTS):
            rows = conn.execute(
                _INSERT_WITH_EXPIRY if expires_in is not None else _INSERT_DEFAULT_EXPIRY, params
            ).fetchall()
            result.created += [IssuedInvite(r[0], r[1], r[2], r[3]) for r in rows]
            waiting -= len(rows)
            if waiting == 0:
                break
            # Some rows lost a code collision: keep only those, with new codes, and go again.
            conn.execute(
                "DELETE FROM invites_incoming i USING public.beta_invites b"
                " WHERE b.code = i.code AND b.email = i.email"
            )
            left = conn.execute("SELECT email_key FROM invites_incoming").fetchall()
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE invites_incoming SET code = %s WHERE email_key = %s",
                    [(new_code(), key) for (key,) in left],
                )
        else:
            raise InvitesError("could not draw unused invite codes; nothing was issued")
    order = {r.key: i for i, r in enumerate(recipients)}
    result.created.sort(key=lambda invite: order[invite.email.lower()])
    return result


_INSERT_COLUMNS = """
    RETURNING email, code, cohort, expires_at
"""

_INSERT_DEFAULT_EXPIRY = (
    """
    INSERT INTO public.beta_invites (code, email, cohort, sent_by, sent_at)
    SELECT code, email, %(cohort)s, %(sent_by)s, CASE WHEN %(mark_sent)s THEN now() END
      FROM invites_incoming
     ORDER BY position
    ON CONFLICT (code) DO NOTHING
    """
    + _INSERT_COLUMNS
)

_INSERT_WITH_EXPIRY = (
    """
    INSERT INTO public.beta_invites (code, email, cohort, sent_by, sent_at, expires_at)
    SELECT code, email, %(cohort)s, %(sent_by)s, CASE WHEN %(mark_sent)s THEN now() END,
           now() + %(expires_in)s
      FROM invites_incoming
     ORDER BY position
    ON CONFLICT (code) DO NOTHING
    """
    + _INSERT_COLUMNS
)


@dataclass(frozen=True)
class IssueRequest:
    """Checked input for issuing: the recipients, and the options that apply to all of them."""

    found: RecipientList
    cohort: str
    expires_in: timedelta | None
    sent_by: UUID | None
