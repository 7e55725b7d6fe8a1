"""What counts as activity in the host application: the operator's own SELECT, checked and run
inside the report's query, in a READ ONLY transaction under a statement timeout.

The query returns `user_id` (matched to an invite's redeemed_by) or `email` (matched to a
redeemed invite's address as every address is compared), an `at` timestamp, and optionally a
`kind`. It is the operator's SQL, trusted as such, but it can neither change data (READ ONLY)
nor hang the terminal (the timeout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import sql

from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    import psycopg

Row = TypeVar("Row")

DEFAULT_TIMEOUT = timedelta(seconds=60)
MATCHES = ("user_id", "email")


@dataclass(frozen=True)
class ActivityQuery:
    text: str  # the SELECT, without a trailing semicolon
    source: str  # where it came from, for messages
    kind: str | None = None  # only activity of this kind

    @classmethod
    def load(cls, path: Path, kind: str | None = None) -> ActivityQuery:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise InvitesError(f"the activity query {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvitesError(f"the activity query {path}: not UTF-8 text") from None
        # A trailing semicolon (and comments after it) end a file, not the subquery it becomes.
        text = re.sub(r";\s*(--[^\n]*\s*)*$", "", text.strip()).strip()
        if not text:
            raise InvitesError(f"the activity query {path} is empty")
        return cls(text, str(path), kind)

    def subquery(self) -> sql.Composable:
        """The query as a subquery: `%` doubled (it would read as a parameter), and a line
        break before the closing parenthesis (a last `-- comment` would swallow it)."""
        return sql.SQL("(\n" + self.text.replace("%", "%%") + "\n)")

    def check(self, conn: psycopg.Connection[Any]) -> str:
        """Which column matches activity to invites (user_id or email); one clear error when the
        query fails or lacks a required column. In the caller's READ ONLY transaction."""
        probe = sql.SQL("SELECT * FROM {} AS activity LIMIT 0").format(self.subquery())
        columns = {column.name for column in self.run(conn.cursor(), probe).description or []}
        missing = []
        if not columns & set(MATCHES):
            missing.append("user_id or email")
        if "at" not in columns:
            missing.append("at")
        if self.kind is not None and "kind" not in columns:
            missing.append("kind (for --kind)")
        if missing:
            raise InvitesError(
                f"the activity query {self.source} must return the column(s) "
                f"{' and '.join(missing)}; it returns {', '.join(sorted(columns)) or 'nothing'}"
            )
        return "user_id" if "user_id" in columns else "email"

    def run(
        self, cursor: psycopg.Cursor[Row], query: sql.Composed, params: Any = None
    ) -> psycopg.Cursor[Row]:
        """Run a statement that embeds the query; its errors name the activity query."""
        import psycopg

        try:
            return cursor.execute(query, params)
        except psycopg.errors.QueryCanceled:
            raise InvitesError(
                f"the activity query {self.source} ran past the timeout (--timeout)"
            ) from None
        except psycopg.errors.ReadOnlySqlTransaction:
            raise InvitesError(
                f"the activity query {self.source} tries to change data: it must only read"
            ) from None
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or str(exc).strip()
            raise InvitesError(f"the activity query {self.source} failed: {reason}") from None


def read_only(conn: psycopg.Connection[Any], timeout: timedelta) -> None:
    """Make the transaction about to start READ ONLY, with a statement timeout."""
    conn.read_only = True
    milliseconds = max(1, int(timeout.total_seconds() * 1000))
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(milliseconds),))
