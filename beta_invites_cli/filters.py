"""Which invites `report` and `list` look at: cohort patterns, issue dates, status, address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import sql

from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.status import LIVE, Status, condition


def like_pattern(pattern: str) -> str:
    """A shell-style pattern (`press-*`, `creator-?`) as a LIKE pattern with `\\` as escape."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


COHORT_MATCHES = sql.SQL(r"cohort LIKE %(cohort_pattern)s ESCAPE '\'")


@dataclass(frozen=True)
class Filters:
    cohort: str | None = None  # a shell pattern
    since: date | None = None  # issued on or after
    until: date | None = None  # issued on or before (the whole day)
    status: Status | None = None
    email: str | None = None  # compared as every address is (emailkey)
    failed: bool = False  # live, and its last delivery attempt was refused for now

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        """The WHERE condition and its parameters."""
        conditions: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if self.status is not None:
            conditions.append(condition(self.status))
        if self.failed:
            conditions.append(sql.SQL("{} AND delivery_outcome = 'failed'").format(LIVE))
        if self.email is not None:
            conditions.append(sql.SQL("public.invites_email_key(email) = %(email_key)s"))
            params["email_key"] = email_key(self.email.strip())
        if self.cohort is not None:
            conditions.append(COHORT_MATCHES)
            params["cohort_pattern"] = like_pattern(self.cohort)
        if self.since is not None:
            conditions.append(sql.SQL("created_at >= %(since)s::date"))
            params["since"] = self.since
        if self.until is not None:
            conditions.append(sql.SQL("created_at < %(until)s::date + 1"))
            params["until"] = self.until
        if not conditions:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in conditions), params

    def describe(self) -> str:
        parts = []
        if self.cohort:
            parts.append(f"cohort {self.cohort}")
        if self.since:
            parts.append(f"issued from {self.since}")
        if self.until:
            parts.append(f"issued until {self.until}")
        return ", ".join(parts)
