"""Issuing invites: every recipient checked first, then one COPY into beta_invites.

`intake.prepare` reads and checks the whole input before anything is written, spilling the
valid addresses (with their codes) to an anonymous temporary file. `issue` loads that file into
a temporary table, where PostgreSQL finds the duplicates within the input and the
people who already hold an invite (or are suppressed); then the rest are COPYed into
beta_invites, and written to the output as they go, in one transaction.

Issuing holds a transaction-level advisory lock, so two commands issuing to the same people at
the same moment run one after the other and the second sees, and skips, what the first issued.
Nobody gets two live codes unless the request says to issue anyway (force).
"""

from __future__ import annotations

import array
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from psycopg import sql

from beta_invites_cli import exporting, seats
from beta_invites_cli.codes import new_codes
from beta_invites_cli.database import act
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.intake import KEPT, IssueRequest, Spill, copy_text, from_copy_text
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


@dataclass(frozen=True)
class Output:
    """Where `issue` writes the new invites, as it inserts them."""

    fmt: str  # csv, json or jsonl
    sink: IO[bytes]  # rewound and written again if a code collision makes the insert start over
    signup_url: str | None


@dataclass
class Issued:
    """What an issue did (or, in a dry run, would do)."""

    conn: psycopg.Connection[Any]
    request: IssueRequest
    created: int = 0
    first: IssuedInvite | None = None
    duplicates: list[str] = field(default_factory=list)  # the first KEPT
    duplicate_count: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why), the first KEPT
    skipped_count: int = 0

    def records(self, signup_url: str | None) -> Iterator[dict[str, Any]]:
        """The new invites in input order (email, code, cohort, expires_at, link), while the
        transaction that issued them is open."""
        from psycopg.rows import dict_row

        with self.conn.cursor(row_factory=dict_row) as cursor:
            yield from cursor.execute(RECORDS, {"url": signup_url})


# The recipients, loaded from the spill. `key` is how addresses compare (migration 995).
CREATE_INCOMING = """
    CREATE TEMP TABLE invites_incoming (
      ord bigint NOT NULL,
      source integer NOT NULL,
      line bigint NOT NULL,
      email text NOT NULL,
      code text NOT NULL,
      key text NOT NULL,
      verdict text,
      first_ord bigint
    ) ON COMMIT DROP
"""

# Each person once: later lines naming an address already named are duplicates.
MARK_DUPLICATES = """
    UPDATE pg_temp.invites_incoming AS i
       SET verdict = 'duplicate', first_ord = d.first_ord
      FROM (SELECT key, min(ord) AS first_ord
              FROM pg_temp.invites_incoming
             GROUP BY key
            HAVING count(*) > 1) AS d
     WHERE i.key = d.key AND i.ord > d.first_ord
"""

# People who hold a live or a redeemed invite are skipped. Each recipient is looked up in the
# email-key index, so the cost follows the input, not the table. OFFSET 0 keeps each EXISTS a
# per-row probe: as a join, the planner would hash the whole table, calling the key function
# for every invite (it cannot see that the function costs more than the probes).
MARK_HELD = sql.SQL(
    """
    UPDATE pg_temp.invites_incoming AS i
       SET verdict = CASE WHEN EXISTS (SELECT 1 FROM public.beta_invites AS b
                                        WHERE public.invites_email_key(b.email) = i.key
                                          AND {redeemed} OFFSET 0)
                          THEN 'redeemed' ELSE 'live' END
     WHERE i.verdict IS NULL
       AND EXISTS (SELECT 1 FROM public.beta_invites AS b
                    WHERE public.invites_email_key(b.email) = i.key
                      AND ({redeemed} OR {pending}) OFFSET 0)
    """
).format(redeemed=condition(Status.REDEEMED), pending=condition(Status.PENDING))

# Suppressed addresses get no code unless the operator says so (they are never emailed anyway).
# The digest is worked out only when the list has entries at all.
MARK_SUPPRESSED = """
    UPDATE pg_temp.invites_incoming AS i
       SET verdict = 'suppressed:' || s.reason
      FROM public.beta_invites_suppressions AS s
     WHERE i.verdict IS NULL
       AND EXISTS (SELECT 1 FROM public.beta_invites_suppressions)
       AND s.digest = sha256(convert_to(i.key, 'UTF8'))
"""

VERDICTS = """
    SELECT i.source, i.line, i.email, i.verdict, f.source, f.line
      FROM pg_temp.invites_incoming AS i
      LEFT JOIN pg_temp.invites_incoming AS f ON f.ord = i.first_ord
     WHERE i.verdict IS NOT NULL
     ORDER BY i.ord
"""

RECORDS = """
    SELECT i.email, i.code, b.cohort, b.expires_at,
           replace(%(url)s::text, '{code}', i.code) AS link
      FROM pg_temp.invites_incoming AS i
      JOIN public.beta_invites AS b USING (code)
     WHERE i.verdict IS NULL
     ORDER BY i.ord
"""

EXCLUDED = "SELECT ord FROM pg_temp.invites_incoming WHERE verdict IS NOT NULL ORDER BY ord"

# The table's own default expiry (the seed's 30 days), evaluated once for the whole batch.
DEFAULT_EXPIRY = """
    SELECT pg_get_expr(d.adbin, d.adrelid)
      FROM pg_attrdef AS d
      JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE d.adrelid = 'public.beta_invites'::regclass AND a.attname = 'expires_at'
"""

COPY_INVITES = (
    "COPY public.beta_invites (code, email, cohort, sent_by, sent_at, expires_at) FROM STDIN"
)

# The rows whose code is taken, by an existing invite or by another row of this input.
COLLIDING = """
    SELECT ord FROM pg_temp.invites_incoming AS i
     WHERE verdict IS NULL
       AND (EXISTS (SELECT 1 FROM public.beta_invites AS b WHERE b.code = i.code)
            OR EXISTS (SELECT 1 FROM pg_temp.invites_incoming AS o
                        WHERE o.code = i.code AND o.ord < i.ord AND o.verdict IS NULL))
"""

WHY = {"live": "already holds a live invite", "redeemed": "already redeemed an invite"}


def why(verdict: str) -> str:
    if verdict.startswith("suppressed:"):
        reason = verdict.partition(":")[2]
        return f"is suppressed ({reason}); --include-suppressed issues a code anyway"
    return WHY[verdict]


@contextmanager
def issue(
    conn: psycopg.Connection[Any],
    request: IssueRequest,
    *,
    force: bool = False,
    mark_sent: bool = False,
    dry_run: bool = False,
    output: Output | None = None,
    include_suppressed: bool = False,
    over_cap: bool = False,
) -> Iterator[Issued]:
    """Create the invites of a checked request in one transaction, committed when the block
    ends without an error (rolled back in a dry run), and write them to `output` on the way.

    The new rows go into beta_invites with COPY, as fast as PostgreSQL loads data. A code that
    collides with an existing one aborts the COPY: it is rolled back to a savepoint, the
    colliding rows draw new codes and the output is written again, so a collision never
    reaches the operator. Into a cohort with seats, the invites must fit (seats.check_cap).
    """
    import psycopg

    issued = Issued(conn, request)
    with conn.transaction(force_rollback=dry_run):
        act(conn)
        # The estimates of the probes below are huge and wrong: compiling them costs more than
        # running them.
        conn.execute("SET LOCAL jit = off")
        conn.execute("DROP TABLE IF EXISTS pg_temp.invites_incoming")
        conn.execute(CREATE_INCOMING)
        with conn.cursor().copy(
            "COPY pg_temp.invites_incoming (ord, source, line, email, key, code) FROM STDIN"
        ) as copy:
            for block in request.spill.blocks():
                copy.write(block)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ISSUE_LOCK_KEY,))
        conn.execute(MARK_DUPLICATES)
        if not force:
            conn.execute(MARK_HELD)
        if not include_suppressed:
            conn.execute(MARK_SUPPRESSED)
        _read_verdicts(issued)
        batch = _batch(conn, request, mark_sent)
        spill = request.spill
        try:
            for _ in range(MAX_CODE_ATTEMPTS):
                try:
                    with conn.transaction():
                        issued.created, issued.first = _copy(conn, spill, batch, output)
                except psycopg.errors.UniqueViolation as exc:
                    if "code" not in (exc.diag.constraint_name or ""):
                        raise
                    if spill is not request.spill:
                        spill.close()
                    spill = _redraw(conn)  # a code collided: those rows draw again
                    continue
                break
            else:
                raise InvitesError("could not draw unused invite codes; nothing was issued")
        finally:
            if spill is not request.spill:
                spill.close()
        seats.check_cap(conn, request.cohort, added=issued.created, over_cap=over_cap)
        yield issued
        conn.execute("DROP TABLE pg_temp.invites_incoming")


@dataclass(frozen=True)
class _Batch:
    """What every new invite of a request shares."""

    cohort: str
    expires_at: datetime
    copy_suffix: str  # the COPY text fields after code and email


def _batch(conn: psycopg.Connection[Any], request: IssueRequest, mark_sent: bool) -> _Batch:
    if request.expires_in is None:
        row = conn.execute(DEFAULT_EXPIRY).fetchone()
        if row is None or row[0] is None:
            raise InvitesError("beta_invites.expires_at has no default: pass --expires-in")
        expiry = sql.SQL("SELECT now(), {}").format(sql.SQL(row[0]))  # the table's own default
        clock = conn.execute(expiry).fetchone()
    else:
        clock = conn.execute("SELECT now(), now() + %s", (request.expires_in,)).fetchone()
    assert clock is not None
    now, expires_at = clock
    fields = [
        copy_text(request.cohort),
        r"\N" if request.sent_by is None else str(request.sent_by),
        now.isoformat() if mark_sent else r"\N",
        expires_at.isoformat(),
    ]
    return _Batch(request.cohort, expires_at, "\t" + "\t".join(fields) + "\n")


def _copy(
    conn: psycopg.Connection[Any], spill: Spill, batch: _Batch, output: Output | None
) -> tuple[int, IssuedInvite | None]:
    """COPY the rows not excluded by a verdict into beta_invites, writing the output as they
    go (while PostgreSQL works on one block, Python prepares the next). Returns how many, and
    the first."""
    # Read before the COPY starts (one connection runs one statement): 8 bytes a row.
    positions = array.array("q")
    for row in conn.cursor().stream(EXCLUDED):
        positions.append(row[0])
    excluded = map(str, positions)
    skip = next(excluded, None)
    writer = _Writer(output, batch) if output is not None else None
    created = 0
    first: IssuedInvite | None = None
    with conn.cursor().copy(COPY_INVITES) as copy:
        for rows in spill.rows():
            kept: list[tuple[str, str]] = []
            for position, _source, _line, email, _key, code in rows:
                if position == skip:
                    skip = next(excluded, None)
                    continue
                kept.append((email, code))
            suffix = batch.copy_suffix
            copy.write("".join(f"{code}\t{email}{suffix}" for email, code in kept))
            if writer is not None:
                writer.write(kept)
            if first is None and kept:
                email, code = kept[0]
                first = IssuedInvite(from_copy_text(email), code, batch.cohort, batch.expires_at)
            created += len(kept)
    if writer is not None:
        writer.finish()
    return created, first


class _Writer:
    """The new invites as csv, json or jsonl: email, code, cohort, expires_at, link."""

    def __init__(self, output: Output, batch: _Batch) -> None:
        self.output = output
        self.sink = output.sink
        self.sink.seek(0)
        self.sink.truncate()
        self.cohort = batch.cohort
        self.expires = batch.expires_at.isoformat(timespec="microseconds")
        self.rows = 0
        if output.fmt == "csv":
            self.sink.write(b"email,code,cohort,expires_at,link\n")

    def link(self, code: str) -> str | None:
        url = self.output.signup_url
        return url.replace("{code}", code) if url else None

    def write(self, kept: list[tuple[str, str]]) -> None:
        rows = [(from_copy_text(email), code) for email, code in kept]
        if self.output.fmt == "csv":
            text = io.StringIO()
            cohort = exporting.csv_safe(self.cohort)
            csv.writer(text, lineterminator="\n").writerows(
                (exporting.csv_safe(email), code, cohort, self.expires, self.link(code) or "")
                for email, code in rows
            )
            self.sink.write(text.getvalue().encode("utf-8"))
            self.rows += len(rows)
            return
        for email, code in rows:
            record = {
                "email": email,
                "code": code,
                "cohort": self.cohort,
                "expires_at": self.expires,
                "link": self.link(code),
            }
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            if self.output.fmt == "jsonl":
                self.sink.write(line.encode("utf-8") + b"\n")
            else:
                self.sink.write((b",\n  " if self.rows else b"[\n  ") + line.encode("utf-8"))
            self.rows += 1

    def finish(self) -> None:
        if self.output.fmt == "json":
            self.sink.write(b"\n]\n" if self.rows else b"[]\n")


def _read_verdicts(issued: Issued) -> None:
    request = issued.request
    with issued.conn.cursor() as cursor:
        for source, line, email, verdict, first_source, first_line in cursor.stream(VERDICTS):
            if verdict == "duplicate":
                issued.duplicate_count += 1
                if len(issued.duplicates) < KEPT:
                    issued.duplicates.append(
                        f"{request.place(source, line)}: {email} duplicates "
                        f"{request.place(first_source, first_line)}; issued once"
                    )
            else:
                issued.skipped_count += 1
                if len(issued.skipped) < KEPT:
                    issued.skipped.append((email, why(verdict)))


def _redraw(conn: psycopg.Connection[Any]) -> Spill:
    """New codes for the rows whose code is taken; the rows again, as a new spill."""
    taken = [row[0] for row in conn.execute(COLLIDING)]
    conn.execute(
        """
        UPDATE pg_temp.invites_incoming AS i SET code = n.code
          FROM unnest(%s::bigint[], %s::text[]) AS n (ord, code)
         WHERE i.ord = n.ord
        """,
        (taken, new_codes(len(taken))),
    )
    spill = Spill()
    with conn.cursor().copy(
        "COPY (SELECT ord, source, line, email, key, code FROM pg_temp.invites_incoming"
        " ORDER BY ord) TO STDOUT"
    ) as copy:
        for chunk in copy:
            data = bytes(chunk)
            spill.write(data, data.count(b"\n"))
    return spill
