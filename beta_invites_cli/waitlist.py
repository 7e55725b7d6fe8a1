"""The waitlist: people waiting for a seat in a cohort, in order of priority, then of joining.

`add` takes the same checked input as issuing (intake.prepare: spreadsheets, stdin, a million
rows in bounded memory) and loads it the same way, COPY into a temporary table where PostgreSQL
finds the duplicates, the people already waiting in that cohort, the ones who already hold a
live or redeemed invite and the suppressed ones; the rest join in input order. An entry keeps
its address only while it waits (migration 9991).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli import exporting, issuing
from beta_invites_cli.database import act
from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.filters import like_pattern
from beta_invites_cli.intake import KEPT, IssueRequest

if TYPE_CHECKING:
    import psycopg

STATUSES = ("waiting", "invited", "removed")

MARK_WAITING = """
    UPDATE pg_temp.invites_incoming AS i SET verdict = 'waiting'
     WHERE i.verdict IS NULL
       AND EXISTS (SELECT 1 FROM public.beta_invites_waitlist AS w
                    WHERE w.cohort = %(cohort)s AND w.email IS NOT NULL
                      AND public.invites_email_key(w.email) = i.key OFFSET 0)
"""

# Input order is join order: each row a microsecond after the one before it.
JOIN = """
    INSERT INTO public.beta_invites_waitlist (cohort, email, source, priority, joined_at)
    SELECT %(cohort)s, i.email, %(source)s, %(priority)s,
           now() + i.ord * interval '1 microsecond'
      FROM pg_temp.invites_incoming AS i
     WHERE i.verdict IS NULL
     ORDER BY i.ord
    ON CONFLICT (cohort, public.invites_email_key(email)) WHERE email IS NOT NULL DO NOTHING
"""

WHY = {
    "waiting": "is already waiting in this cohort",
    "live": "already holds a live invite",
    "redeemed": "already redeemed an invite",
}


@dataclass
class Joined:
    added: int = 0
    duplicates: list[str] = field(default_factory=list)
    duplicate_count: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why), the first KEPT
    skipped_count: int = 0


def add(
    conn: psycopg.Connection[Any],
    request: IssueRequest,
    *,
    source: str | None = None,
    priority: int = 0,
) -> Joined:
    """Put the request's people on its cohort's waitlist, in one transaction."""
    joined = Joined()
    with conn.transaction():
        act(conn)
        conn.execute("SET LOCAL jit = off")
        conn.execute("DROP TABLE IF EXISTS pg_temp.invites_incoming")
        conn.execute(issuing.CREATE_INCOMING)
        with conn.cursor().copy(
            "COPY pg_temp.invites_incoming (ord, source, line, email, key, code) FROM STDIN"
        ) as copy:
            for block in request.spill.blocks():
                copy.write(block)
        conn.execute(issuing.MARK_DUPLICATES)
        conn.execute(MARK_WAITING, {"cohort": request.cohort})
        conn.execute(issuing.MARK_HELD)
        conn.execute(issuing.MARK_SUPPRESSED)
        with conn.cursor() as cursor:
            for place, email, verdict, first in _verdicts(cursor, request):
                if verdict == "duplicate":
                    joined.duplicate_count += 1
                    if len(joined.duplicates) < KEPT:
                        joined.duplicates.append(f"{place}: {email} duplicates {first}; once")
                else:
                    joined.skipped_count += 1
                    if len(joined.skipped) < KEPT:
                        why = WHY.get(verdict) or issuing.why(verdict).partition(";")[0]
                        joined.skipped.append((email, why))
        cursor = conn.execute(
            JOIN, {"cohort": request.cohort, "source": source, "priority": priority}
        )
        joined.added = cursor.rowcount
        conn.execute("DROP TABLE pg_temp.invites_incoming")
    return joined


def _verdicts(cursor: Any, request: IssueRequest) -> Iterator[tuple[str, str, str, str]]:
    for source, line, email, verdict, first_source, first_line in cursor.stream(issuing.VERDICTS):
        first = request.place(first_source, first_line) if first_source is not None else ""
        yield request.place(source, line), email, verdict, first


def join(
    conn: psycopg.Connection[Any], email: str, cohort: str, source: str | None = None
) -> tuple[str, int | None]:
    """What the host's landing page calls (the SQL function, in the caller's transaction)."""
    row = conn.execute(
        "SELECT status, position FROM public.beta_invites_waitlist_join(%s, %s, %s)",
        (email, cohort, source),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def position(conn: psycopg.Connection[Any], email: str, cohort: str) -> int | None:
    row = conn.execute(
        "SELECT public.beta_invites_waitlist_position(%s, %s)", (email, cohort)
    ).fetchone()
    return row[0] if row else None


def remove(conn: psycopg.Connection[Any], addresses: list[str], cohort: str | None = None) -> int:
    """Take people off the waitlist (every cohort, or one): their address is deleted."""
    cursor = conn.execute(
        """
        UPDATE public.beta_invites_waitlist
           SET email = NULL, removed_at = now()
         WHERE email IS NOT NULL AND public.invites_email_key(email) = ANY(%s)
           AND (%s::text IS NULL OR cohort = %s)
        """,
        ([email_key(a) for a in addresses], cohort, cohort),
    )
    return cursor.rowcount


def remove_cohort(conn: psycopg.Connection[Any], cohort: str) -> int:
    cursor = conn.execute(
        "UPDATE public.beta_invites_waitlist SET email = NULL, removed_at = now()"
        " WHERE cohort = %s AND email IS NOT NULL",
        (cohort,),
    )
    return cursor.rowcount


def expire_waiting(conn: psycopg.Connection[Any], ttl: Any) -> int:
    """The sweep: entries waiting longer than `ttl` lose their address (they are removed)."""
    cursor = conn.execute(
        "UPDATE public.beta_invites_waitlist SET email = NULL, removed_at = now()"
        " WHERE email IS NOT NULL AND joined_at < now() - %s",
        (ttl,),
    )
    return cursor.rowcount


KEYS = ("cohort", "email", "status", "position", "priority", "source", "joined_at", "invited_at")
ENTRIES = sql.SQL(
    r"""
    SELECT cohort, {email} AS email,
           CASE WHEN email IS NOT NULL THEN 'waiting'
                WHEN invited_at IS NOT NULL THEN 'invited' ELSE 'removed' END AS status,
           CASE WHEN email IS NOT NULL THEN row_number() OVER (
             PARTITION BY cohort, email IS NOT NULL
             ORDER BY priority DESC, joined_at, id) END AS position,
           priority, {source} AS source, {joined_at} AS joined_at, {invited_at} AS invited_at
      FROM public.beta_invites_waitlist
     WHERE (%(pattern)s::text IS NULL OR cohort LIKE %(pattern)s ESCAPE '\')
       AND (%(status)s::text IS NULL
            OR (%(status)s = 'waiting' AND email IS NOT NULL)
            OR (%(status)s = 'invited' AND invited_at IS NOT NULL)
            OR (%(status)s = 'removed' AND removed_at IS NOT NULL))
     ORDER BY cohort, email IS NULL, priority DESC, joined_at, id
    """
)


def _query(export: str | None) -> sql.Composed:
    plain: dict[str, sql.Composable] = {
        k: sql.Identifier(k) for k in ("email", "source", "joined_at", "invited_at")
    }
    if export is not None:
        plain["joined_at"] = exporting.ISO.format(sql.Identifier("joined_at"))
        plain["invited_at"] = exporting.ISO.format(sql.Identifier("invited_at"))
    if export == "csv":
        plain["email"] = exporting.CSV_SAFE.format(sql.Identifier("email"))
        plain["source"] = exporting.CSV_SAFE.format(sql.Identifier("source"))
    return ENTRIES.format(**plain)


def params(pattern: str | None, status: str | None) -> dict[str, Any]:
    return {"pattern": like_pattern(pattern) if pattern else None, "status": status}


def entries(
    conn: psycopg.Connection[Any], pattern: str | None, status: str | None
) -> Iterator[dict[str, Any]]:
    """Matching entries a few thousand at a time; `conn` not in autocommit mode."""
    with conn.cursor(name="invites_waitlist", row_factory=dict_row) as cursor:
        cursor.itersize = 5_000
        cursor.execute(_query(None), params(pattern, status))
        yield from cursor


def export(
    conn: psycopg.Connection[Any],
    pattern: str | None,
    status: str | None,
    out: IO[bytes],
    fmt: str,
) -> int:
    if fmt == "csv":
        return exporting.copy_csv(conn, _query("csv"), params(pattern, status), out)
    return exporting.copy_json(
        conn, _query("json"), params(pattern, status), out, lines=fmt == "jsonl"
    )
