"""Issuing invites: every recipient checked first, then one set-based insert into beta_invites.

`prepare` reads and checks the whole input before anything is written, spilling the valid
addresses (with their codes) to an anonymous temporary file, so a million people cost a few
megabytes of memory and the file vanishes even if the process is killed. `issue` loads that
file into a temporary table with COPY and lets PostgreSQL do the rest in one transaction:
duplicates within the input, people who already hold an invite, the insert, the output.

Issuing holds a transaction-level advisory lock, so two commands issuing to the same people at
the same moment run one after the other and the second sees, and skips, what the first issued.
Nobody gets two live codes unless the request says to issue anyway (force).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from uuid import UUID

from psycopg import sql

from beta_invites_cli import exporting
from beta_invites_cli.codes import new_codes
from beta_invites_cli.errors import InvitesError, ValidationFailed, excerpt
from beta_invites_cli.recipients import BadAddress, check_cohort, normalise_email, rows_of
from beta_invites_cli.status import Status, condition

if TYPE_CHECKING:
    import psycopg

ISSUE_LOCK_KEY = 7_140_990_002
MAX_CODE_ATTEMPTS = 5
KEPT = 1_000  # problems, duplicates and skips kept to show; the rest are counted
BATCH = 4_096  # recipients written to the spill file at once
EMAIL_OPTION = "--email"


@dataclass(frozen=True)
class IssuedInvite:
    email: str
    code: str
    cohort: str
    expires_at: datetime


class InvalidRecipients(ValidationFailed):
    """Some addresses are not addresses; nothing was issued."""

    def __init__(self, problems: list[str], count: int) -> None:
        super().__init__(problems)
        self.count = count


class Spill:
    """The checked recipients, as COPY text rows `ord, source, line, email, code` in an
    anonymous temporary file (nothing to clean up, whatever happens to the process)."""

    def __init__(self) -> None:
        # Closed by close(): the request that owns it outlives this constructor.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="invites-recipients-")  # noqa: SIM115
        self.size = 0
        self.count = 0

    def append(self, rows: list[tuple[int, int, str]]) -> None:
        """(source, line, email) rows; each gets the next position and a fresh code."""
        start = self.count
        codes = new_codes(len(rows))
        text = "".join(
            f"{start + i}\t{source}\t{line}\t{email}\t{code}\n"
            for i, ((source, line, email), code) in enumerate(zip(rows, codes, strict=True))
        )
        data = text.encode("utf-8")
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            raise InvitesError(
                f"cannot keep the recipients in a temporary file ({exc.strerror}): "
                f"set TMPDIR to a directory with room for about {self.size * 2 // 1024 + 1} KiB"
            ) from None
        self.size += len(data)
        self.count += len(rows)

    def blocks(self, size: int = 1 << 18) -> Iterator[bytes]:
        """The rows, read with pread: several transactions may load one spill at once."""
        descriptor = self._file.fileno()
        for offset in range(0, self.size, size):
            yield os.pread(descriptor, size, offset)

    def close(self) -> None:
        self._file.close()


@dataclass
class IssueRequest:
    """Checked input for issuing: the recipients, and the options that apply to all of them."""

    cohort: str
    spill: Spill
    labels: list[str]  # how each source is named in messages, by its number
    expires_in: timedelta | None
    sent_by: UUID | None
    problems: list[str] = field(default_factory=list)  # the first KEPT
    invalid: int = 0

    @property
    def given(self) -> int:
        """How many addresses the request named, valid or not (duplicates included)."""
        return self.spill.count + self.invalid

    def place(self, source: int, line: int) -> str:
        label = self.labels[source]
        return label if label == EMAIL_OPTION else f"{label}line {line}"

    def close(self) -> None:
        self.spill.close()

    def __enter__(self) -> IssueRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare(
    cohort: str,
    sources: Sequence[tuple[str, BinaryIO]],
    addresses: Sequence[tuple[str, str]],
    *,
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
) -> IssueRequest:
    """Read and check every recipient before anything is written: one line per problem.

    `sources` are (name, file) pairs; `addresses` are (where, address) pairs given one by one
    (`where` is the option that named them)."""
    labels = ["" if name == "-" else f"{name} " for name, _ in sources]
    labels.append(EMAIL_OPTION)
    request = IssueRequest(check_cohort(cohort), Spill(), labels, expires_in, sent_by)
    try:
        _check_all(request, sources, addresses)
    except BaseException:
        request.close()
        raise
    if request.invalid and not skip_invalid:
        request.close()
        raise InvalidRecipients(request.problems, request.invalid)
    return request


def _check_all(
    request: IssueRequest,
    sources: Sequence[tuple[str, BinaryIO]],
    addresses: Sequence[tuple[str, str]],
) -> None:
    batch: list[tuple[int, int, str]] = []

    def entries() -> Iterator[tuple[int, int, str]]:
        for source, (name, stream) in enumerate(sources):
            for line, value in rows_of(stream, name):
                yield source, line, value
        for position, (_, value) in enumerate(addresses, 1):
            yield len(sources), position, value

    for source, line, value in entries():
        try:
            batch.append((source, line, normalise_email(value)))
        except BadAddress as exc:
            request.invalid += 1
            if len(request.problems) < KEPT:
                request.problems.append(f"{request.place(source, line)}: {excerpt(value)}: {exc}")
            continue
        if len(batch) == BATCH:
            request.spill.append(batch)
            batch = []
    if batch:
        request.spill.append(batch)


COHORT = sql.SQL("%(cohort)s::text")
EXPIRES_AT = sql.SQL("%(expires_at)s::timestamptz")


@dataclass
class Issued:
    """What an issue did (or, in a dry run, would do), and the new invites while its
    transaction is open."""

    conn: psycopg.Connection[Any]
    request: IssueRequest
    created: int = 0
    expires_at: datetime | None = None
    first: IssuedInvite | None = None
    duplicates: list[str] = field(default_factory=list)  # the first KEPT
    duplicate_count: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why), the first KEPT
    skipped_count: int = 0

    def records(self, signup_url: str | None) -> Iterator[dict[str, Any]]:
        """The new invites, in input order: email, code, cohort, expires_at, link."""
        from psycopg.rows import dict_row

        query, params = self._select(signup_url, {})
        with self.conn.cursor(row_factory=dict_row) as cursor:
            yield from cursor.execute(query, params)

    def export(self, fmt: str, out: IO[bytes], signup_url: str | None) -> int:
        """The new invites as csv, json or jsonl, formatted by PostgreSQL and streamed."""
        if fmt == "csv":
            columns: dict[str, sql.Composable] = {
                "email": exporting.CSV_SAFE.format(sql.Identifier("email")),
                "cohort": exporting.CSV_SAFE.format(COHORT),
                "expires_at": exporting.ISO.format(EXPIRES_AT),
            }
            query, params = self._select(signup_url, columns)
            return exporting.copy_csv(self.conn, query, params, out)
        query, params = self._select(signup_url, {})
        return exporting.copy_json(self.conn, query, params, out, lines=fmt == "jsonl")

    def _select(
        self, signup_url: str | None, columns: dict[str, sql.Composable]
    ) -> tuple[sql.Composed, dict[str, Any]]:
        defaults = {"email": sql.Identifier("email"), "cohort": COHORT, "expires_at": EXPIRES_AT}
        query = sql.SQL(
            """
            SELECT {email} AS email, code, {cohort} AS cohort, {expires_at} AS expires_at,
                   replace(%(url)s::text, '{{code}}', code) AS link
              FROM pg_temp.invites_incoming
             WHERE verdict IS NULL
             ORDER BY ord
            """
        ).format(**{**defaults, **columns})
        params = {
            "cohort": self.request.cohort,
            "expires_at": self.expires_at,
            "url": signup_url,
        }
        return query, params


# The recipients, loaded from the spill. `key` is how addresses compare (migration 995).
CREATE_INCOMING = """
    CREATE TEMP TABLE invites_incoming (
      ord bigint NOT NULL,
      source integer NOT NULL,
      line bigint NOT NULL,
      email text NOT NULL,
      code text NOT NULL,
      key text GENERATED ALWAYS AS (public.invites_email_key(email)) STORED,
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
# email-key index, so the cost follows the input, not the table.
MARK_HELD = sql.SQL(
    """
    UPDATE pg_temp.invites_incoming AS i
       SET verdict = held.verdict
      FROM pg_temp.invites_incoming AS r
      CROSS JOIN LATERAL (
        SELECT CASE WHEN bool_or({redeemed}) THEN 'redeemed' ELSE 'live' END AS verdict
          FROM public.beta_invites AS b
         WHERE public.invites_email_key(b.email) = r.key AND ({redeemed} OR {pending})
        HAVING count(*) > 0
      ) AS held
     WHERE r.verdict IS NULL AND i.ord = r.ord
    """
).format(redeemed=condition(Status.REDEEMED), pending=condition(Status.PENDING))

VERDICTS = """
    SELECT i.source, i.line, i.email, i.verdict, f.source, f.line
      FROM pg_temp.invites_incoming AS i
      LEFT JOIN pg_temp.invites_incoming AS f ON f.ord = i.first_ord
     WHERE i.verdict IS NOT NULL
     ORDER BY i.ord
"""

# Without an expiry the column is left out, so the table's own default applies.
INSERT = """
    INSERT INTO public.beta_invites (code, email, cohort, sent_by, sent_at)
    SELECT code, email, %(cohort)s, %(sent_by)s, %(sent_at)s
      FROM pg_temp.invites_incoming
     WHERE verdict IS NULL
     ORDER BY ord
"""
INSERT_EXPIRING = """
    INSERT INTO public.beta_invites (code, email, cohort, sent_by, sent_at, expires_at)
    SELECT code, email, %(cohort)s, %(sent_by)s, %(sent_at)s, %(expires_at)s
      FROM pg_temp.invites_incoming
     WHERE verdict IS NULL
     ORDER BY ord
"""

# The rows whose code is taken, by an existing invite or by another row of this input.
COLLIDING = """
    SELECT ord FROM pg_temp.invites_incoming AS i
     WHERE verdict IS NULL
       AND (EXISTS (SELECT 1 FROM public.beta_invites AS b WHERE b.code = i.code)
            OR EXISTS (SELECT 1 FROM pg_temp.invites_incoming AS o
                        WHERE o.code = i.code AND o.ord < i.ord AND o.verdict IS NULL))
"""

WHY = {"live": "already holds a live invite", "redeemed": "already redeemed an invite"}


@contextmanager
def issue(
    conn: psycopg.Connection[Any],
    request: IssueRequest,
    *,
    force: bool = False,
    mark_sent: bool = False,
    dry_run: bool = False,
) -> Iterator[Issued]:
    """Create the invites of a checked request in one transaction, committed when the block
    ends without an error (rolled back in a dry run). Inside the block, `Issued` exports them.

    A code that collides with an existing one aborts the insert: it is rolled back to a
    savepoint and the colliding rows draw new codes, so a collision never reaches the operator.
    """
    import psycopg

    issued = Issued(conn, request)
    with conn.transaction(force_rollback=dry_run):
        conn.execute("DROP TABLE IF EXISTS pg_temp.invites_incoming")
        conn.execute(CREATE_INCOMING)
        with conn.cursor().copy(
            "COPY pg_temp.invites_incoming (ord, source, line, email, code) FROM STDIN"
        ) as copy:
            for block in request.spill.blocks():
                copy.write(block)
        conn.execute("ANALYZE pg_temp.invites_incoming")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ISSUE_LOCK_KEY,))
        conn.execute(MARK_DUPLICATES)
        if not force:
            conn.execute(MARK_HELD)
        _read_verdicts(issued)
        clock = conn.execute("SELECT now(), now() + %s::interval", (request.expires_in,)).fetchone()
        assert clock is not None
        params = {
            "cohort": request.cohort,
            "sent_by": request.sent_by,
            "sent_at": clock[0] if mark_sent else None,
            "expires_at": clock[1],
        }
        for _ in range(MAX_CODE_ATTEMPTS):
            try:
                with conn.transaction():
                    cursor = conn.execute(
                        INSERT if request.expires_in is None else INSERT_EXPIRING, params
                    )
            except psycopg.errors.UniqueViolation as exc:
                if "code" not in (exc.diag.constraint_name or ""):
                    raise
                _redraw(conn)  # a code collided: those rows draw again
                continue
            issued.created = cursor.rowcount
            break
        else:
            raise InvitesError("could not draw unused invite codes; nothing was issued")
        if issued.created:
            _read_first(issued)
        yield issued
        conn.execute("DROP TABLE pg_temp.invites_incoming")


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
                    issued.skipped.append((email, WHY[verdict]))


def _read_first(issued: Issued) -> None:
    row = issued.conn.execute(
        """
        SELECT b.email, b.code, b.expires_at
          FROM public.beta_invites AS b
          JOIN (SELECT code FROM pg_temp.invites_incoming
                 WHERE verdict IS NULL ORDER BY ord LIMIT 1) AS i USING (code)
        """
    ).fetchone()
    assert row is not None
    issued.expires_at = row[2]  # the table's default expiry, when none was asked for
    issued.first = IssuedInvite(row[0], row[1], issued.request.cohort, row[2])


def _redraw(conn: psycopg.Connection[Any]) -> None:
    taken = [row[0] for row in conn.execute(COLLIDING)]
    conn.execute(
        """
        UPDATE pg_temp.invites_incoming AS i SET code = n.code
          FROM unnest(%s::bigint[], %s::text[]) AS n (ord, code)
         WHERE i.ord = n.ord
        """,
        (taken, new_codes(len(taken))),
    )
