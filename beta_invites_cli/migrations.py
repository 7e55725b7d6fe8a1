"""`invites migrate`: apply sql/*.sql in name order, once each, Flyway-style.

Each file and its tracking row commit in one transaction, which first takes a transaction-level
advisory lock and then checks again that the file is still pending: concurrent runs apply each
file exactly once, and no lock outlives its transaction (a session lock would stay held by a
pooled server connection behind PgBouncer in transaction mode). The sha256 of every applied
file is checked against the file on disk.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.rows import class_row

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.sqlsplit import split_statements

if TYPE_CHECKING:
    import psycopg

# Arbitrary but fixed: every `invites migrate` against one database takes this lock.
MIGRATE_LOCK_KEY = 7_140_990_001


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    name: str
    status: str  # applied | pending | changed | missing
    checksum: str
    applied_at: datetime | None
    duration_ms: int | None


class ChecksumMismatch(InvitesError):
    pass


class MissingUsersTable(InvitesError):
    pass


class MigrationFailed(InvitesError):
    pass


def sql_directory() -> Path:
    """sql/ inside an installed package, else the repository's top-level sql/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    raise InvitesError(f"no migrations found (looked in {here / 'sql'} and {here.parent / 'sql'})")


def available(directory: Path | None = None) -> list[Migration]:
    directory = sql_directory() if directory is None else directory
    return [
        Migration(path.name, path.read_bytes().decode("utf-8"))
        for path in sorted(directory.glob("*.sql"))
    ]


@dataclass(frozen=True)
class Applied:
    filename: str
    checksum: str
    applied_at: datetime
    duration_ms: int


def _applied(conn: psycopg.Connection[Any]) -> dict[str, Applied]:
    exists = conn.execute("SELECT to_regclass('public.invites_schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.cursor(row_factory=class_row(Applied)).execute(
        "SELECT filename, checksum, applied_at, duration_ms FROM public.invites_schema_migrations"
    )
    return {row.filename: row for row in rows}


def states(
    conn: psycopg.Connection[Any], migrations: list[Migration] | None = None
) -> list[MigrationState]:
    migrations = available() if migrations is None else migrations
    applied = _applied(conn)
    result = []
    for migration in migrations:
        if migration.name not in applied:
            result.append(MigrationState(migration.name, "pending", migration.checksum, None, None))
            continue
        done = applied.pop(migration.name)
        status = "applied" if done.checksum == migration.checksum else "changed"
        result.append(
            MigrationState(migration.name, status, done.checksum, done.applied_at, done.duration_ms)
        )
    # Applied files that no longer exist on disk: reported, never undone.
    for name, done in sorted(applied.items()):
        result.append(
            MigrationState(name, "missing", done.checksum, done.applied_at, done.duration_ms)
        )
    return result


def _check_checksums(current: list[MigrationState], migrations: list[Migration]) -> None:
    on_disk = {m.name: m.checksum for m in migrations}
    for state in current:
        if state.status == "changed":
            raise ChecksumMismatch(
                f"checksum mismatch for {state.name}: applied {state.checksum}, "
                f"file now {on_disk[state.name]}; a migration must not change after it is applied "
                "(add a new file instead)"
            )


def _users_table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.users') IS NOT NULL").fetchone()
    return bool(row and row[0])


@dataclass
class MigrateResult:
    applied: list[tuple[str, int]]
    created_users_table: bool


def pending(conn: psycopg.Connection[Any]) -> list[Migration]:
    """What `migrate` would apply; raises on a checksum mismatch. Changes nothing."""
    migrations = available()
    current = states(conn, migrations)
    _check_checksums(current, migrations)
    waiting = {s.name for s in current if s.status == "pending"}
    return [m for m in migrations if m.name in waiting]


def migrate(
    conn: psycopg.Connection[Any],
    *,
    create_users_table: bool = False,
    on_applied: Callable[[str, int], None] | None = None,
    until: str | None = None,
) -> MigrateResult:
    """Apply every pending migration (up to and including the file named `until`, as Flyway's
    target does). `conn` must be in autocommit mode."""
    todo = [m for m in pending(conn) if until is None or m.name <= until]
    result = MigrateResult(applied=[], created_users_table=False)
    if not todo:
        return result
    with conn.transaction():
        _lock(conn)
        if not _users_table_exists(conn):
            if not create_users_table:
                raise MissingUsersTable(
                    "public.users does not exist: beta_invites.sent_by references the host "
                    "application's users table. Run the application's own migrations first"
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.users ("
                " id uuid PRIMARY KEY DEFAULT gen_random_uuid())"
            )
            result.created_users_table = True
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS public.invites_schema_migrations (
              filename    text PRIMARY KEY,
              checksum    text NOT NULL,
              applied_at  timestamptz NOT NULL DEFAULT now(),
              duration_ms integer NOT NULL
            )
            """
        )
    for migration in todo:
        duration = _apply(conn, migration)
        if duration is None:
            continue  # a concurrent run applied it first
        result.applied.append((migration.name, duration))
        if on_applied is not None:
            on_applied(migration.name, duration)
    return result


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))


def _apply(conn: psycopg.Connection[Any], migration: Migration) -> int | None:
    """Apply one file in its own transaction; None when another run already had."""
    import psycopg

    started = time.perf_counter()
    with conn.transaction():
        _lock(conn)
        done = conn.execute(
            "SELECT checksum FROM public.invites_schema_migrations WHERE filename = %s",
            (migration.name,),
        ).fetchone()
        if done is not None:
            if done[0] != migration.checksum:
                raise ChecksumMismatch(
                    f"checksum mismatch for {migration.name}: applied {done[0]}, "
                    f"file now {migration.checksum}"
                )
            return None
        for statement in _statements(migration):
            try:
                # A migration's statements are our own SQL text, never built from values.
                conn.execute(statement)
            except psycopg.Error as exc:
                first = " ".join(re.sub(r"--[^\n]*", "", statement).split())
                if len(first) > 120:
                    first = first[:117] + "..."
                reason = (exc.diag.message_primary or str(exc)).strip()
                raise MigrationFailed(
                    f"{migration.name} failed, nothing of it was applied: {reason} (in: {first})"
                ) from None
        duration = round((time.perf_counter() - started) * 1000)
        conn.execute(
            "INSERT INTO public.invites_schema_migrations (filename, checksum, duration_ms)"
            " VALUES (%s, %s, %s)",
            (migration.name, migration.checksum, duration),
        )
    return duration


def _statements(migration: Migration) -> Iterator[str]:
    yield from split_statements(migration.sql)
