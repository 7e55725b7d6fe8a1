"""`invites expire`: anonymise the email of invites that expired unredeemed, for cron.

Cheap to run every minute: bounded batches, each its own short transaction; rows locked with
SKIP LOCKED so a redemption never waits on the sweep; a transaction-level try-lock in each batch
so overlapping runs step aside (a session lock would outlive its transaction behind a pooler such
as PgBouncer in transaction mode); and a partial index that holds only unfinished rows, so
finished ones are never scanned again. Revoked invites expire when they are revoked, so they
are anonymised too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from beta_invites_cli.database import act
from beta_invites_cli.status import Status, condition

if TYPE_CHECKING:
    import psycopg

SWEEP_LOCK_KEY = 7_140_990_003
DEFAULT_BATCH = 5_000


@dataclass(frozen=True)
class SweepResult:
    ran: bool  # False: another sweep held the lock
    anonymized: int
    awaiting_grace: int


# The invites whose email is anonymised: ended (expired or revoked) and never redeemed, by the
# one status definition, not anonymised yet, and past the grace period. Their rows are found
# through the partial index idx_beta_invites_sweep (expires_at WHERE used_at IS NULL AND
# anonymized_at IS NULL, which both conditions imply) and updated by their physical address
# (ctid, stable while we hold their locks), which spares one primary-key lookup per row.
DUE = sql.SQL(
    "({expired} OR {revoked}) AND anonymized_at IS NULL AND expires_at <= now() - %(grace)s"
).format(expired=condition(Status.EXPIRED), revoked=condition(Status.REVOKED))

# The replacement is random, so it carries no trace of the address (a hash could be reversed
# by hashing candidate addresses); it is unique per row and far shorter than 320 characters.
ANONYMISE_BATCH = sql.SQL(
    """
    UPDATE public.beta_invites
       SET email = 'anonymized+' || replace(gen_random_uuid()::text, '-', '') || '@invalid',
           anonymized_at = now(), delivery_reply = NULL
     WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM public.beta_invites
        WHERE {due}
        ORDER BY expires_at
        LIMIT %(batch)s
          FOR UPDATE SKIP LOCKED))
    """
).format(due=DUE)

COUNT_DUE = sql.SQL("SELECT count(*) FROM public.beta_invites WHERE {due}").format(due=DUE)

COUNT_AWAITING = sql.SQL(
    """
    SELECT count(*) FROM public.beta_invites
     WHERE ({expired} OR {revoked}) AND anonymized_at IS NULL
       AND expires_at <= now() AND expires_at > now() - %(grace)s
    """
).format(expired=condition(Status.EXPIRED), revoked=condition(Status.REVOKED))


def sweep(
    conn: psycopg.Connection[Any],
    *,
    grace: timedelta = timedelta(0),
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
) -> SweepResult:
    """Anonymise every expired, unredeemed invite past its grace period. `conn` is autocommit."""
    params = {"grace": grace, "batch": batch_size}
    if dry_run:
        due = conn.execute(COUNT_DUE, params).fetchone()
        return SweepResult(
            ran=True, anonymized=int(due[0]) if due else 0, awaiting_grace=_awaiting(conn, params)
        )
    anonymized = 0
    first = True
    while True:
        with conn.transaction():
            act(conn)
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))
            row = locked.fetchone()
            if not row or not row[0]:
                if first:
                    return SweepResult(ran=False, anonymized=0, awaiting_grace=0)
                break  # another sweep took over between two batches: it finishes the work
            done = conn.execute(ANONYMISE_BATCH, params).rowcount
        first = False
        anonymized += done
        if done < batch_size:
            break
    return SweepResult(ran=True, anonymized=anonymized, awaiting_grace=_awaiting(conn, params))


def _awaiting(conn: psycopg.Connection[Any], params: dict[str, Any]) -> int:
    if not params["grace"]:
        return 0
    row = conn.execute(COUNT_AWAITING, params).fetchone()
    return int(row[0]) if row else 0
