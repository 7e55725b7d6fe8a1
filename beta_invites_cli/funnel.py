"""`invites report --funnel`: issued -> sent -> redeemed -> active, per group, with the share
that reached each step from the one before (and so the drop).

`sent` here is every invite that reached its person: sent by email or marked sent, or redeemed
without a recorded send (a code handed out by other means), so that no step counts more than
the one before it.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

from beta_invites_cli.report import Report

STEPS = ("issued", "sent", "redeemed", "active")


def keys(report: Report) -> list[str]:
    steps = STEPS if report.with_activity else STEPS[:-1]
    shares = [f"{later}_of_{earlier}" for earlier, later in pairwise(steps)]
    return [report.by, *steps, *shares, "reminded", "bounced"]


def share(part: int, whole: int) -> Decimal | None:
    return round(Decimal(part) / whole, 4) if whole else None


def rows(report: Report) -> list[dict[str, Any]]:
    """One row per group of the report (its totals too, when it has them), with stable keys."""
    steps = STEPS if report.with_activity else STEPS[:-1]
    result = []
    for row in report.rows + ([report.totals] if report.totals else []):
        reached = {
            "issued": row["issued"],
            "sent": row["delivered"],
            "redeemed": row["redeemed"],
            "active": row.get("active"),
        }
        funnel: dict[str, Any] = {report.by: row[report.by]}
        funnel.update({step: reached[step] for step in steps})
        for earlier, later in pairwise(steps):
            funnel[f"{later}_of_{earlier}"] = share(reached[later], reached[earlier])
        funnel["reminded"] = row["reminded"]
        funnel["bounced"] = row["bounced"]
        result.append(funnel)
    return result
