"""`invites report`: which audiences came. One aggregate query per report, in PostgreSQL.

For each group: issued, sent, redeemed, pending, expired, revoked (by the one status definition,
so issued = redeemed + pending + expired + revoked), bounced (pending invites whose address
refused the message for good), reminded (at least one reminder) and redeemed_after_reminder
(redeemed after the last reminder), the redemption rate and the median hours
from issue to redemption, plus a totals row computed by the same query (GROUPING SETS). By day
or week, rows are issue dates, and `redemptions` counts the redemptions on that date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import dict_row

from beta_invites_cli.filters import Filters
from beta_invites_cli.status import Status, condition

if TYPE_CHECKING:
    import psycopg

DEFAULT_SEGMENTS = "creator,listener,community-member,press"
KEYS = (
    "issued",
    "sent",
    "redeemed",
    "pending",
    "expired",
    "revoked",
    "bounced",
    "redemption_rate",
    "median_hours_to_redeem",
)
# Added after the keys above (and after `redemptions` by day or week): CSV columns keep their
# places.
REMINDER_KEYS = ("reminded", "redeemed_after_reminder")

# A cohort's segment: the longest configured prefix it starts with (followed by '-' or the end),
# else the text before its first '-'. Worked out once per distinct cohort, then joined.
SEGMENT_OF_COHORT = sql.SQL(
    """
    SELECT c.cohort,
           coalesce(
             (SELECT s FROM unnest(%(segments)s::text[]) AS s
               WHERE c.cohort = s OR left(c.cohort, length(s) + 1) = s || '-'
               ORDER BY length(s) DESC LIMIT 1),
             split_part(c.cohort, '-', 1)) AS segment
      FROM (SELECT DISTINCT cohort FROM public.beta_invites WHERE {where}) AS c
    """
)

MEASURES = sql.SQL(
    """
       count(*) AS issued,
       count(sent_at) AS sent,
       count(*) FILTER (WHERE {redeemed}) AS redeemed,
       count(*) FILTER (WHERE {pending}) AS pending,
       count(*) FILTER (WHERE {expired}) AS expired,
       count(*) FILTER (WHERE {revoked}) AS revoked,
       count(*) FILTER (WHERE {bounced}) AS bounced,
       count(reminded_at) AS reminded,
       count(*) FILTER (WHERE used_at > reminded_at) AS redeemed_after_reminder,
       round(count(*) FILTER (WHERE {redeemed})::numeric / NULLIF(count(*), 0), 4)
         AS redemption_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM used_at - created_at))
         FILTER (WHERE used_at IS NOT NULL) / 3600)::numeric, 1) AS median_hours_to_redeem"""
).format(
    redeemed=condition(Status.REDEEMED),
    pending=condition(Status.PENDING),
    expired=condition(Status.EXPIRED),
    revoked=condition(Status.REVOKED),
    bounced=condition(Status.BOUNCED),
)

GROUP_EXPRESSIONS = {
    "cohort": sql.SQL("cohort"),
    "segment": sql.SQL("segment"),
    "sender": sql.SQL("coalesce(sent_by::text, '(none)')"),
    "day": sql.SQL("date_trunc('day', created_at)::date"),
    "week": sql.SQL("date_trunc('week', created_at)::date"),
}
GROUPINGS = tuple(GROUP_EXPRESSIONS)

GROUPED = sql.SQL(
    """
    SELECT {key} AS key, GROUPING({key}) = 1 AS is_total, {measures}
      FROM {source}
     WHERE {where}
     GROUP BY {grouping}"""
)

BY_DATE = sql.SQL(
    """
    WITH issued AS ({grouped}),
    redemptions AS (
      SELECT {used} AS key, GROUPING({used}) = 1 AS is_total, count(*) AS redemptions
        FROM public.beta_invites
       WHERE {where} AND used_at IS NOT NULL
       GROUP BY {used_grouping})
    SELECT coalesce(i.key, r.key) AS key, coalesce(i.is_total, r.is_total) AS is_total,
           coalesce(i.issued, 0) AS issued, coalesce(i.sent, 0) AS sent,
           coalesce(i.redeemed, 0) AS redeemed, coalesce(i.pending, 0) AS pending,
           coalesce(i.expired, 0) AS expired, coalesce(i.revoked, 0) AS revoked,
           coalesce(i.bounced, 0) AS bounced, coalesce(i.reminded, 0) AS reminded,
           coalesce(i.redeemed_after_reminder, 0) AS redeemed_after_reminder,
           i.redemption_rate, i.median_hours_to_redeem, coalesce(r.redemptions, 0) AS redemptions
      FROM issued i
      FULL JOIN redemptions r ON i.is_total = r.is_total AND i.key IS NOT DISTINCT FROM r.key
     ORDER BY is_total, key"""
)


@dataclass(frozen=True)
class Report:
    by: str
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None

    @property
    def keys(self) -> list[str]:
        extra = ["redemptions"] if self.by in ("day", "week") else []
        return [self.by, *KEYS, *extra, *REMINDER_KEYS]


def segments_setting(value: str | None) -> list[str]:
    raw = value if value else DEFAULT_SEGMENTS
    return [s.strip() for s in raw.split(",") if s.strip()]


def query_for(by: str, where: sql.Composable, *, totals: bool = True) -> sql.Composed:
    """The report's one statement; with `totals`, it also computes the totals row."""
    key = GROUP_EXPRESSIONS[by]
    source: sql.Composable = sql.SQL("public.beta_invites")
    if by == "segment":
        source = sql.SQL("public.beta_invites JOIN ({segments}) AS seg USING (cohort)").format(
            segments=SEGMENT_OF_COHORT.format(where=where)
        )
    grouped = GROUPED.format(
        key=key, measures=MEASURES, source=source, where=where, grouping=grouping(key, totals)
    )
    if by not in ("day", "week"):
        return sql.SQL("{} ORDER BY is_total, issued DESC, key").format(grouped)
    used = sql.SQL("date_trunc({unit}, used_at)::date").format(unit=sql.Literal(by))
    return BY_DATE.format(
        grouped=grouped, used=used, where=where, used_grouping=grouping(used, totals)
    )


def grouping(key: sql.Composable, totals: bool) -> sql.Composable:
    if totals:
        return sql.SQL("GROUPING SETS (({key}), ())").format(key=key)
    return key


def build(
    conn: psycopg.Connection[Any],
    *,
    by: str,
    filters: Filters,
    segments: list[str],
    with_totals: bool = True,
) -> Report:
    """The report; without totals (csv and json print none) the query skips that work."""
    where, params = filters.where()
    cursor = conn.cursor(row_factory=dict_row)
    query = query_for(by, where, totals=with_totals)
    records = cursor.execute(query, {**params, "segments": segments}).fetchall()
    rows: list[dict[str, Any]] = []
    totals = None
    for record in records:
        is_total = record.pop("is_total")
        record = {by: record.pop("key"), **record}
        if is_total:
            totals = record
        else:
            rows.append(record)
    return Report(by=by, rows=rows, totals=totals if rows else None)
