"""The numbers of the HTML report (`invites report --format html`), in two scans: the report by
cohort (whose counts also make the funnel by segment, and whose week 1-4 retention makes the
curves when an activity query is given), and one light scan of the redeemed invites for
redemptions over time and the time-to-redeem distribution. In READ ONLY transactions under the
report's timeout."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli import report as reports
from beta_invites_cli.activity import DEFAULT_TIMEOUT, ActivityQuery, read_only
from beta_invites_cli.filters import Filters

if TYPE_CHECKING:
    import psycopg

# Hours from issue to redemption, bucketed: (upper bound, label).
BUCKETS = (
    (1, "< 1 h"),
    (6, "1-6 h"),
    (24, "6-24 h"),
    (72, "1-3 days"),
    (168, "3-7 days"),
    (336, "1-2 weeks"),
    (720, "2-4 weeks"),
)
OVER = "4 weeks +"

# Redemptions per cohort and day, and per time-to-redeem bucket, in one scan.
REDEEMED = sql.SQL(
    """
    SELECT cohort, used_at::date AS day,
           width_bucket(extract(epoch FROM used_at - created_at) / 3600, %(bounds)s::float8[])
             AS bucket,
           GROUPING(cohort, used_at::date) = 0 AS per_day, count(*) AS n
      FROM public.beta_invites
     WHERE {where} AND used_at IS NOT NULL
     GROUP BY GROUPING SETS ((cohort, used_at::date),
       (width_bucket(extract(epoch FROM used_at - created_at) / 3600, %(bounds)s::float8[])))
    """
)


@dataclass(frozen=True)
class PageData:
    by_cohort: reports.Report
    segment_of: dict[str, str]  # cohort -> segment
    redemptions: dict[str, list[tuple[date, int]]]  # segment -> (day, cumulative)
    time_to_redeem: list[tuple[str, int]]  # (bucket label, redemptions)
    retention: reports.Retention | None

    def funnel_by_segment(self) -> list[dict[str, Any]]:
        """Funnel counts summed from the cohorts (counts add up; medians would not)."""
        totals: dict[str, dict[str, int]] = {}
        steps = ["issued", "delivered", "redeemed", "reminded", "bounced"]
        if self.by_cohort.with_activity:
            steps.append("active")
        for row in self.by_cohort.rows:
            segment = self.segment_of.get(row["cohort"], row["cohort"])
            into = totals.setdefault(segment, dict.fromkeys(steps, 0))
            for step in steps:
                into[step] += int(row[step] or 0)
        return [
            {"segment": segment, **counts}
            for segment, counts in sorted(totals.items(), key=lambda kv: -kv[1]["issued"])
        ]


def gather(
    conn: psycopg.Connection[Any],
    *,
    filters: Filters,
    segments: list[str],
    activity: ActivityQuery | None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> PageData:
    by_cohort = reports.build(
        conn,
        by="cohort",
        filters=filters,
        segments=segments,
        with_totals=True,
        activity=activity,
        timeout=timeout,
    )
    where, params = filters.where()
    read_only(conn, timeout)
    try:
        segment_of = dict(
            conn.execute(
                reports.SEGMENT_OF_COHORT.format(where=where), {**params, "segments": segments}
            ).fetchall()
        )
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                REDEEMED.format(where=where),
                {**params, "bounds": [float(b) for b, _ in BUCKETS]},
            )
            .fetchall()
        )
    finally:
        conn.rollback()
    # The report with activity already has each cohort's week 1-4 retention: the curves come
    # from it rather than from a second pass over the activity.
    retention = None
    if by_cohort.with_activity:
        retention = reports.Retention(
            "cohort",
            len(reports.WEEKS),
            [
                {
                    "cohort": row["cohort"],
                    "redeemers": row["redeemed"],
                    **{f"week_{n}": row[f"week_{n}_retention"] for n in reports.WEEKS},
                }
                for row in by_cohort.rows
            ],
        )
    return PageData(
        by_cohort,
        segment_of,
        cumulative(rows, segment_of),
        histogram(rows),
        retention,
    )


def cumulative(
    rows: list[dict[str, Any]], segment_of: dict[str, str]
) -> dict[str, list[tuple[date, int]]]:
    per_day: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        if row["per_day"]:
            segment = segment_of.get(row["cohort"], row["cohort"])
            per_day[segment][row["day"]] += row["n"]
    result = {}
    for segment, days in per_day.items():
        total = 0
        series = []
        for day in sorted(days):
            total += days[day]
            series.append((day, total))
        result[segment] = series
    return result


def histogram(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    labels = [label for _, label in BUCKETS] + [OVER]
    counts = dict.fromkeys(labels, 0)
    for row in rows:
        if not row["per_day"]:
            counts[labels[row["bucket"]]] += row["n"]
    return list(counts.items())
