"""Spam complaints in numbers: the share of a cohort's recent messages reported as spam.

Gmail and Yahoo publish the thresholds: keep it under 0.1 %; at 0.3 % they start refusing a
sender's mail. `send` and `remind` warn at the first and refuse at the second (unless told).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beta_invites_cli.filters import like_pattern

if TYPE_CHECKING:
    import psycopg

WARN_AT = 0.001
REFUSE_AT = 0.003
DAYS = 30


@dataclass(frozen=True)
class Rate:
    complained: int
    sent: int

    @property
    def share(self) -> float:
        return self.complained / self.sent if self.sent else 0.0

    def describe(self, what: str) -> str:
        return (
            f"{what}: {self.complained} spam complaint(s) of {self.sent} message(s) sent in the"
            f" last {DAYS} days ({self.share:.2%})"
        )


def rate(conn: psycopg.Connection[Any], cohort_pattern: str | None = None) -> Rate:
    """Complaints about messages sent in the last 30 days, of the cohorts matching the shell
    pattern (all of them: None)."""
    row = conn.execute(
        r"""
        SELECT count(complained_at), count(*)
          FROM public.beta_invites
         WHERE sent_at >= now() - make_interval(days => %(days)s)
           AND (%(pattern)s::text IS NULL OR cohort LIKE %(pattern)s ESCAPE '\')
        """,
        {"days": DAYS, "pattern": like_pattern(cohort_pattern) if cohort_pattern else None},
    ).fetchone()
    return Rate(int(row[0]), int(row[1])) if row else Rate(0, 0)
