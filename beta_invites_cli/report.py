"""`invites report`: which audiences came. One aggregate query per report, in PostgreSQL.

For each group: issued, sent, redeemed, pending, expired, revoked (by the one status definition,
so issued = redeemed + pending + expired + revoked), bounced (pending invites whose address
refused the message for good), reminded (at least one reminder) and redeemed_after_reminder
(redeemed after the last reminder), failed and sender_refused (live invites whose last
attempt failed, and of those the ones refused for the sender's fault), complained and the
complaint rate (over sent), the redemption rate and the median hours
from issue to redemption, plus a totals row computed by the same query (GROUPING SETS). By day
or week, rows are issue dates, and `redemptions` counts the redemptions on that date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.errors import QueryCanceled
from psycopg.rows import dict_row

from beta_invites_cli.activity import DEFAULT_TIMEOUT, ActivityQuery, read_only
from beta_invites_cli.errors import InvitesError
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
# Then how delivery went: live invites whose last attempt failed (and of those, refused for the
# sender's fault), and spam complaints over messages sent.
DELIVERY_KEYS = ("failed", "sender_refused", "complained", "complaint_rate")
# By cohort, then its seats and waitlist: seats (null: no cap), people waiting, people invited
# from the waitlist, the median days from joining to the invitation, and seats reclaimed.
SEAT_KEYS = ("seats", "waiting", "waitlist_invited", "median_days_to_invite", "reclaimed")
WAITLIST_BY_COHORT = """
    SELECT w.cohort, c.seats,
           count(*) FILTER (WHERE w.email IS NOT NULL) AS waiting,
           count(*) FILTER (WHERE w.invited_at IS NOT NULL) AS waitlist_invited,
           round((percentile_cont(0.5) WITHIN GROUP (
                    ORDER BY extract(epoch FROM w.invited_at - w.joined_at))
                  FILTER (WHERE w.invited_at IS NOT NULL) / 86400)::numeric, 1)
             AS median_days_to_invite
      FROM public.beta_invites_waitlist AS w
      LEFT JOIN public.beta_invites_cohorts AS c USING (cohort)
     GROUP BY w.cohort, c.seats
    UNION ALL
    SELECT c.cohort, c.seats, 0, 0, NULL FROM public.beta_invites_cohorts AS c
     WHERE NOT EXISTS (SELECT 1 FROM public.beta_invites_waitlist AS w WHERE w.cohort = c.cohort)
"""
WEEKS = (1, 2, 3, 4)
# With an activity query (--activity), after all the others.
ACTIVITY_KEYS = (
    "active",
    "activity",
    "activity_per_active",
    "median_hours_to_first_activity",
    *(f"week_{n}_retention" for n in WEEKS),
)

# Each redeemer's activity since redemption: how much, when first, and in which weeks after it.
PER_REDEEMER = sql.SQL(
    """
    SELECT i.id AS activity_invite_id, count(*) AS activity_count,
           min(a.at) AS first_activity_at, {weeks}
      FROM public.beta_invites AS i
      JOIN (SELECT q.{match}::{match_type} AS match, q.at::timestamptz AS at
              FROM {activity} AS q {kind_filter}) AS a
        ON {joined} AND a.at >= i.used_at
     WHERE i.used_at IS NOT NULL AND {where}
     GROUP BY i.id
    """
)
JOINED = {
    "user_id": sql.SQL("a.match = i.redeemed_by"),
    # Addresses compared as everywhere else (sql/995), whatever the host stored.
    "email": sql.SQL("public.invites_email_key(a.match) = public.invites_email_key(i.email)"),
}
ACTIVE_IN_WEEK = sql.SQL(
    "bool_or(a.at >= i.used_at + interval '{before} days'"
    " AND a.at < i.used_at + interval '{end} days') AS active_week_{n}"
)
# Retention in week N counts only redeemers for whom week N is over.
WEEK_RETENTION = sql.SQL(
    "round(count(*) FILTER (WHERE p.active_week_{n} AND {over})::numeric"
    " / NULLIF(count(*) FILTER (WHERE {over}), 0), 4) AS {name}"
)


def week_retention(n: int, name: str) -> sql.Composed:
    return WEEK_RETENTION.format(
        n=sql.SQL(str(n)),
        over=sql.SQL(f"used_at + interval '{7 * n} days' <= now()"),
        name=sql.Identifier(name),
    )


ACTIVITY_MEASURES = sql.SQL(
    """,
       count(p.activity_invite_id) AS active,
       coalesce(sum(p.activity_count), 0) AS activity,
       round(coalesce(sum(p.activity_count), 0)::numeric
             / NULLIF(count(p.activity_invite_id), 0), 2) AS activity_per_active,
       round((percentile_cont(0.5) WITHIN GROUP (
                ORDER BY extract(epoch FROM p.first_activity_at - used_at))
              FILTER (WHERE p.first_activity_at IS NOT NULL) / 3600)::numeric, 1)
         AS median_hours_to_first_activity,
       {weeks}"""
).format(weeks=sql.SQL(",\n       ").join(week_retention(n, f"week_{n}_retention") for n in WEEKS))


@dataclass(frozen=True)
class Activity:
    """The activity part of a report: the operator's query and how it matches invites."""

    query: sql.Composable  # the subquery
    match: str  # user_id or email
    kind: str | None


def per_redeemer(
    activity: Activity, where: sql.Composable, weeks_after: tuple[int, ...] = WEEKS
) -> sql.Composed:
    weeks = sql.SQL(", ").join(
        ACTIVE_IN_WEEK.format(
            before=sql.SQL(str(7 * (n - 1))), end=sql.SQL(str(7 * n)), n=sql.SQL(str(n))
        )
        for n in weeks_after
    )
    return PER_REDEEMER.format(
        weeks=weeks,
        match=sql.Identifier(activity.match),
        match_type=sql.SQL("uuid" if activity.match == "user_id" else "text"),
        activity=activity.query,
        kind_filter=sql.SQL(
            "WHERE q.kind::text = %(activity_kind)s" if activity.kind is not None else ""
        ),
        joined=JOINED[activity.match],
        where=where,
    )


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
       count(*) FILTER (WHERE sent_at IS NOT NULL OR used_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE used_at > reminded_at) AS redeemed_after_reminder,
       count(*) FILTER (WHERE {pending} AND delivery_outcome = 'failed') AS failed,
       count(*) FILTER (WHERE {pending} AND delivery_outcome = 'failed'
                          AND delivery_class = 'sender-refused') AS sender_refused,
       count(complained_at) AS complained,
       count(*) FILTER (WHERE revoked_reason = 'reclaimed') AS reclaimed,
       round(count(complained_at)::numeric / NULLIF(count(sent_at), 0), 4) AS complaint_rate,
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
           coalesce(i.delivered, 0) AS delivered,
           coalesce(i.failed, 0) AS failed, coalesce(i.sender_refused, 0) AS sender_refused,
           coalesce(i.complained, 0) AS complained, i.complaint_rate,
           coalesce(i.reclaimed, 0) AS reclaimed,
           i.redemption_rate, i.median_hours_to_redeem, coalesce(r.redemptions, 0) AS redemptions
           {activity}
      FROM issued i
      FULL JOIN redemptions r ON i.is_total = r.is_total AND i.key IS NOT DISTINCT FROM r.key
     ORDER BY is_total, key"""
)


@dataclass(frozen=True)
class Report:
    by: str
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None
    with_activity: bool = False

    @property
    def keys(self) -> list[str]:
        extra = ["redemptions"] if self.by in ("day", "week") else []
        activity = ACTIVITY_KEYS if self.with_activity else ()
        seats = SEAT_KEYS if self.by == "cohort" else ()
        return [self.by, *KEYS, *extra, *REMINDER_KEYS, *DELIVERY_KEYS, *seats, *activity]


def segments_setting(value: str | None) -> list[str]:
    raw = value if value else DEFAULT_SEGMENTS
    return [s.strip() for s in raw.split(",") if s.strip()]


def query_for(
    by: str, where: sql.Composable, *, totals: bool = True, activity: Activity | None = None
) -> sql.Composed:
    """The report's one statement; with `totals`, it also computes the totals row; with
    `activity`, the activity measures, the operator's query running inside it."""
    key = GROUP_EXPRESSIONS[by]
    source: sql.Composable = sql.SQL("public.beta_invites")
    if by == "segment":
        source = sql.SQL("public.beta_invites JOIN ({segments}) AS seg USING (cohort)").format(
            segments=SEGMENT_OF_COHORT.format(where=where)
        )
    measures: sql.Composable = MEASURES
    if activity is not None:
        source = sql.SQL(
            "{source} LEFT JOIN ({per_redeemer}) AS p ON p.activity_invite_id = beta_invites.id"
        ).format(source=source, per_redeemer=per_redeemer(activity, where))
        measures = sql.Composed([MEASURES, ACTIVITY_MEASURES])
    grouped = GROUPED.format(
        key=key, measures=measures, source=source, where=where, grouping=grouping(key, totals)
    )
    if by not in ("day", "week"):
        return sql.SQL("{} ORDER BY is_total, issued DESC, key").format(grouped)
    used = sql.SQL("date_trunc({unit}, used_at)::date").format(unit=sql.Literal(by))
    passed: sql.Composable = sql.SQL("")
    if activity is not None:
        # Counts are 0 on a date with redemptions but no invites issued; rates stay null.
        passed = sql.SQL("").join(
            sql.SQL(
                ", coalesce(i.{0}, 0) AS {0}" if name in ("active", "activity") else ", i.{0}"
            ).format(sql.Identifier(name))
            for name in ACTIVITY_KEYS
        )
    return BY_DATE.format(
        grouped=grouped,
        used=used,
        where=where,
        used_grouping=grouping(used, totals),
        activity=passed,
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
    activity: ActivityQuery | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Report:
    """The report, in one READ ONLY transaction under `timeout` (`conn` must not be in
    autocommit mode), with the activity measures when an activity query is given. Without
    totals (csv and json print none) the query skips that work."""
    where, params = filters.where()
    params = {**params, "segments": segments}
    measured: Activity | None = None
    read_only(conn, timeout)
    try:
        if activity is not None:
            measured = Activity(activity.subquery(), activity.check(conn), activity.kind)
            params["activity_kind"] = activity.kind
        query = query_for(by, where, totals=with_totals, activity=measured)
        cursor = conn.cursor(row_factory=dict_row)
        if activity is not None:
            records = activity.run(cursor, query, params).fetchall()
        else:
            records = cursor.execute(query, params).fetchall()
        waitlists = (
            {r.pop("cohort"): r for r in cursor.execute(WAITLIST_BY_COHORT).fetchall()}
            if by == "cohort"
            else {}
        )
    except QueryCanceled:
        raise InvitesError(
            f"the report ran past the timeout ({timeout.total_seconds():g} s, --timeout)"
        ) from None
    finally:
        conn.rollback()
    rows: list[dict[str, Any]] = []
    totals = None
    for record in records:
        is_total = record.pop("is_total")
        reclaimed = record.pop("reclaimed")
        record = {by: record.pop("key"), **record}
        if by == "cohort":
            waiting = waitlists.get(record["cohort"], {})
            record["seats"] = waiting.get("seats")
            for key in ("waiting", "waitlist_invited"):
                record[key] = (
                    waiting.get(key, 0) if not is_total else sum(w[key] for w in waitlists.values())
                )
            record["median_days_to_invite"] = waiting.get("median_days_to_invite")
            record["reclaimed"] = reclaimed
        if is_total:
            totals = record
        else:
            rows.append(record)
    return Report(
        by=by, rows=rows, totals=totals if rows else None, with_activity=measured is not None
    )


# The classic cohort-analysis matrix: a row per group, a column per week since redemption.
RETENTION = sql.SQL(
    """
    SELECT {key} AS key, count(*) FILTER (WHERE used_at IS NOT NULL) AS redeemers, {weeks}
      FROM {source}
      LEFT JOIN ({per_redeemer}) AS p ON p.activity_invite_id = beta_invites.id
     WHERE {where}
     GROUP BY {key}
     ORDER BY redeemers DESC, key
    """
)


@dataclass(frozen=True)
class Retention:
    by: str
    weeks: int
    rows: list[dict[str, Any]]

    @property
    def keys(self) -> list[str]:
        return [self.by, "redeemers", *(f"week_{n}" for n in range(1, self.weeks + 1))]


def retention(
    conn: psycopg.Connection[Any],
    *,
    by: str,
    filters: Filters,
    segments: list[str],
    activity: ActivityQuery,
    weeks: int,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Retention:
    """Share of each group's redeemers active in week 1..`weeks` after their redemption (only
    those for whom that week is over), in one READ ONLY query like the report."""
    where, params = filters.where()
    source: sql.Composable = sql.SQL("public.beta_invites")
    if by == "segment":
        source = sql.SQL("public.beta_invites JOIN ({segments}) AS seg USING (cohort)").format(
            segments=SEGMENT_OF_COHORT.format(where=where)
        )
    read_only(conn, timeout)
    try:
        measured = Activity(activity.subquery(), activity.check(conn), activity.kind)
        numbers = tuple(range(1, weeks + 1))
        query = RETENTION.format(
            key=GROUP_EXPRESSIONS[by],
            weeks=sql.SQL(", ").join(week_retention(n, f"week_{n}") for n in numbers),
            source=source,
            per_redeemer=per_redeemer(measured, where, numbers),
            where=where,
        )
        cursor = conn.cursor(row_factory=dict_row)
        found = activity.run(
            cursor, query, {**params, "segments": segments, "activity_kind": activity.kind}
        ).fetchall()
    finally:
        conn.rollback()
    return Retention(by, weeks, [{by: r.pop("key"), **r} for r in found])
