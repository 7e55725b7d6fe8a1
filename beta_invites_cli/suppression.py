"""The suppression list: addresses never to email again, whatever their cohort.

An address is kept as the SHA-256 digest of its comparison form (emailkey.key), the same digest
`public.invites_email_digest(text)` (migration 996) computes, never as the address: the list
outlives the anonymising sweep without being a list of addresses. What that protects: nobody
can read addresses off the table or a dump of it. What it does not: anyone who can read it and
guesses an address can confirm the guess by computing its digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.codes import normalise as normalise_code
from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.errors import InvitesError, UnknownCode, ValidationFailed, excerpt
from beta_invites_cli.recipients import BadAddress, normalise_email
from beta_invites_cli.status import LIVE

if TYPE_CHECKING:
    import psycopg

REASONS = ("bounced", "soft-bounced", "unsubscribed", "complained", "manual")

# Composed into every query that picks invites to email.
NOT_SUPPRESSED = sql.SQL(
    "NOT EXISTS (SELECT 1 FROM public.beta_invites_suppressions AS suppressed"
    " WHERE suppressed.digest = public.invites_email_digest(email))"
)
SUPPRESSED_REASON = sql.SQL(
    "(SELECT suppressed.reason FROM public.beta_invites_suppressions AS suppressed"
    " WHERE suppressed.digest = public.invites_email_digest(email))"
)


def digest(address: str) -> bytes:
    """The digest of an address as stored (`Ada@Example.com` and `ada@example.com` alike)."""
    return hashlib.sha256(email_key(address).encode("utf-8")).digest()


@dataclass(frozen=True)
class Entry:
    digest: bytes
    reason: str
    source: str
    detail: str | None
    created_at: datetime


def checked_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses, normalised; one problem line per address that is not one."""
    found, problems = [], []
    for address in addresses:
        try:
            found.append(normalise_email(address.strip()))
        except BadAddress as exc:
            problems.append(f"{excerpt(address)}: {exc}")
    if problems:
        raise ValidationFailed(problems)
    return found


def add(
    conn: psycopg.Connection[Any],
    addresses: Iterable[str],
    *,
    reason: str,
    source: str,
    detail: str | None = None,
) -> int:
    """Suppress the addresses; returns how many were not suppressed before. An address that is
    already on the list keeps its first entry (re-importing the same bounces changes nothing)."""
    if reason not in REASONS:
        raise InvitesError(f"unknown reason {reason!r}; use one of {', '.join(REASONS)}")
    digests = sorted({digest(address) for address in addresses})
    return _insert(conn, digests, reason, source, detail)


def add_digests(
    conn: psycopg.Connection[Any],
    digests: Iterable[bytes],
    *,
    reason: str,
    source: str,
    detail: str | None = None,
) -> int:
    return _insert(conn, sorted(set(digests)), reason, source, detail)


def _insert(
    conn: psycopg.Connection[Any],
    digests: list[bytes],
    reason: str,
    source: str,
    detail: str | None,
) -> int:
    if not digests:
        return 0
    cursor = conn.execute(
        """
        INSERT INTO public.beta_invites_suppressions (digest, reason, source, detail)
        SELECT d, %s, %s, %s FROM unnest(%s::bytea[]) AS d
        ON CONFLICT (digest) DO NOTHING
        """,
        (reason, source, detail, digests),
    )
    return cursor.rowcount


def remove(conn: psycopg.Connection[Any], addresses: Iterable[str]) -> int:
    """Take the addresses off the list; returns how many were on it."""
    digests = sorted({digest(address) for address in addresses})
    cursor = conn.execute(
        "DELETE FROM public.beta_invites_suppressions WHERE digest = ANY(%s::bytea[])", (digests,)
    )
    return cursor.rowcount


@dataclass(frozen=True)
class Removed:
    entries: int
    invites: int  # bounced invites of those addresses, set back to failed


def remove_since(conn: psycopg.Connection[Any], reason: str, since: date) -> Removed:
    """Take every entry of `reason` made on or after `since` off the list, and set the live
    invites those addresses bounced since then back to failed (sent again by the next run;
    the history records each as `reclassified`). In the caller's transaction: a dry run
    rolls it back, so it counts exactly what the removal would change."""
    entries = conn.execute(
        """
        DELETE FROM public.beta_invites_suppressions
         WHERE reason = %s AND created_at >= %s::date
        RETURNING digest
        """,
        (reason, since),
    ).fetchall()
    invites = conn.execute(
        sql.SQL(
            """
            UPDATE public.beta_invites
               SET delivery_outcome = 'failed'
             WHERE delivery_outcome = 'bounced' AND delivery_outcome_at >= %s::date AND {live}
               AND public.invites_email_digest(email) = ANY(%s::bytea[])
            """
        ).format(live=LIVE),
        (since, [bytes(row[0]) for row in entries]),
    )
    return Removed(len(entries), invites.rowcount)


def check(
    conn: psycopg.Connection[Any], addresses: Iterable[str]
) -> list[tuple[str, Entry | None]]:
    """Each address with its entry, or None when it may be emailed."""
    wanted = list(dict.fromkeys(addresses))
    rows = conn.execute(
        """
        SELECT digest, reason, source, detail, created_at
          FROM public.beta_invites_suppressions WHERE digest = ANY(%s::bytea[])
        """,
        ([digest(address) for address in wanted],),
    ).fetchall()
    found = {bytes(row[0]): Entry(bytes(row[0]), *row[1:]) for row in rows}
    return [(address, found.get(digest(address))) for address in wanted]


def entries(
    conn: psycopg.Connection[Any], *, reason: str | None = None
) -> Iterator[dict[str, Any]]:
    """The list, newest first: digest (hex), reason, source, detail, created_at."""
    query = sql.SQL(
        """
        SELECT encode(digest, 'hex') AS digest, reason, source, detail, created_at
          FROM public.beta_invites_suppressions
         WHERE {where}
         ORDER BY created_at DESC, digest
        """
    ).format(where=sql.SQL("reason = %(reason)s") if reason else sql.SQL("TRUE"))
    with conn.cursor(row_factory=dict_row) as cursor:
        yield from cursor.execute(query, {"reason": reason})


def unsubscribe(
    conn: psycopg.Connection[Any],
    *,
    code: str | None = None,
    email: str | None = None,
    reason: str = "unsubscribed",
    source: str = "unsubscribe",
) -> bool:
    """For the host application's unsubscribe endpoint (the List-Unsubscribe link carries the
    invite code): suppress the invite's address, in the caller's transaction. Returns False
    when there was nothing new to suppress: the address was on the list already, or the sweep
    has removed it. Raises InvalidCode for what cannot be a code, UnknownCode for a code we
    never issued."""
    if (code is None) == (email is None):
        raise InvitesError("give a code or an email, not both")
    if code is not None:
        row = conn.execute(
            "SELECT email, anonymized_at FROM public.beta_invites WHERE code = %s",
            (normalise_code(code),),
        ).fetchone()
        if row is None:
            raise UnknownCode(normalise_code(code))
        if row[1] is not None or row[0] is None:
            return False  # the sweep removed the address: nobody left to email
        email = row[0]
    assert email is not None
    return add(conn, [email], reason=reason, source=source) == 1


def skipped_by_reason(
    conn: psycopg.Connection[Any], cohort: str, which: sql.Composable
) -> dict[str, int]:
    """How many invites of the cohort that `which` would email are suppressed, by reason."""
    query = sql.SQL(
        """
        SELECT s.reason, count(*)
          FROM public.beta_invites AS b
          JOIN public.beta_invites_suppressions AS s
            ON s.digest = public.invites_email_digest(b.email)
         WHERE b.cohort = %s AND {which}
         GROUP BY s.reason ORDER BY s.reason
        """
    ).format(which=which)
    return dict(conn.execute(query, (cohort,)).fetchall())
