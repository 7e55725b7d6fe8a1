"""Filters shared by `report` and `list`: cohort patterns and issue-date ranges, as SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from beta_invites_cli.errors import InvitesError


def like_pattern(pattern: str) -> str:
    """A shell-style pattern (`press-*`, `creator-?`) as a LIKE pattern with `\\` as escape."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvitesError(f"{option}: {text!r} is not a date like 2026-11-26") from None


@dataclass
class Filters:
    cohort: str | None = None
    since: date | None = None
    until: date | None = None
    extra: list[str] = field(default_factory=list)  # fixed SQL conditions (status)
    params: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        conditions = list(self.extra)
        if self.cohort is not None:
            conditions.append(r"cohort LIKE %(cohort_pattern)s ESCAPE '\'")
            self.params["cohort_pattern"] = like_pattern(self.cohort)
        if self.since is not None:
            conditions.append("created_at >= %(since)s::date")
            self.params["since"] = self.since
        if self.until is not None:
            conditions.append("created_at < %(until)s::date + 1")
            self.params["until"] = self.until
        return " AND ".join(conditions) if conditions else "TRUE"

    def describe(self) -> str:
        parts = []
        if self.cohort:
            parts.append(f"cohort {self.cohort}")
        if self.since:
            parts.append(f"issued from {self.since}")
        if self.until:
            parts.append(f"issued until {self.until}")
        return ", ".join(parts)
