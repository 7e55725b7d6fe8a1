"""Commands that read: `report`, `list`, `show` (with the invite's history)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import IO, Any

import click

from beta_invites_cli import history, listing
from beta_invites_cli import report as reports
from beta_invites_cli.cli.common import App, pass_app, say
from beta_invites_cli.cli.options import filter_options, format_option
from beta_invites_cli.cli.render import Column, plain, render, table_text, write_fields
from beta_invites_cli.filters import Filters
from beta_invites_cli.status import STATUSES, Status

# Right-aligned in the table; the rate is drawn as a bar.
NUMERIC = {*reports.KEYS, *reports.REMINDER_KEYS, "redemptions"} - {"redemption_rate"}
HEADERS = {"median_hours_to_redeem": "Median h to redeem"}


def rate_bar(rate: float) -> str:
    width = 10
    filled = float(rate) * width
    full = int(filled)
    half = "▌" if filled - full >= 0.5 else ""
    return f"{'█' * full}{half}{' ' * (width - full - len(half))} {float(rate) * 100:5.1f}%"


def trend_bar(maximum: int) -> Callable[[Any], str]:
    def draw(value: Any) -> str:
        if not value or not maximum:
            return ""
        return "▇" * max(1, round(int(value) / maximum * 20))

    return draw


@click.command(epilog="Example: invites report --by segment --since 2026-11-01")
@click.option(
    "--by",
    type=click.Choice(reports.GROUPINGS),
    default="cohort",
    show_default=True,
    help="What a row is: a cohort, a segment (INVITES_SEGMENTS), a sender, an issue day or week.",
)
@filter_options
@format_option()
@pass_app
def report(
    app: App, by: str, cohort_pattern: str | None, since: date | None, until: date | None, fmt: str
) -> None:
    """Post-launch attribution: issued, sent, redeemed, pending, expired and rates per group."""
    filters = Filters(cohort=cohort_pattern, since=since, until=until)
    segments = reports.segments_setting(app.settings.get("INVITES_SEGMENTS"))
    with app.database.connect(autocommit=True) as conn:
        result = reports.build(
            conn, by=by, filters=filters, segments=segments, with_totals=fmt == "table"
        )
    if not result.rows:
        say("no invites match those filters" if filters.describe() else "no invites yet")
    if fmt != "table":
        render(result.rows, [Column(k, k) for k in result.keys], fmt)
    elif result.rows:
        draw_report(result, filters)


def draw_report(result: reports.Report, filters: Filters) -> None:
    by = result.by
    columns = [Column(by, by.capitalize())]
    if by in ("day", "week"):
        peak = max(int(r["issued"]) for r in result.rows)
        columns.append(Column("issued_trend", "Issued trend", render=trend_bar(peak)))
        for row in result.rows:
            row["issued_trend"] = row["issued"]
    columns += [
        Column(
            k,
            HEADERS.get(k, k.replace("_", " ").capitalize()),
            numeric=k in NUMERIC,
            render=rate_bar if k == "redemption_rate" else None,
        )
        for k in result.keys[1:]
    ]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = filters.describe()
    title = f"Invites by {by}{' (' + scope + ')' if scope else ''}, as of {when}"
    totals = {**(result.totals or {}), by: "Total"}
    render(result.rows, columns, "table", title=title, footer=totals)


LIST_COLUMNS = [
    Column("code", "Code"),
    Column("email", "Email"),
    Column("cohort", "Cohort"),
    Column("status", "Status"),
    Column("created_at", "Created"),
    Column("sent_at", "Sent"),
    Column("used_at", "Used"),
    Column("expires_at", "Expires"),
]


@click.command(
    "list",
    epilog="Example: invites list --cohort 'press-*' --status pending --format csv > pending.csv",
)
@filter_options
@click.option("--status", type=click.Choice(STATUSES), help="Only invites in this status.")
@click.option("--email", metavar="ADDRESS", help="Invites of this address (any case).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most this many (default: 50 in a table, all for csv/json/jsonl).",
)
@format_option()
@pass_app
def list_invites(
    app: App,
    cohort_pattern: str | None,
    since: date | None,
    until: date | None,
    status: str | None,
    email: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List invites, newest first."""
    filters = Filters(
        cohort=cohort_pattern,
        since=since,
        until=until,
        status=Status(status) if status else None,
        email=email,
    )
    if limit is None and fmt == "table":
        limit = 50
    with app.database.connect() as conn:
        if fmt in ("csv", "json", "jsonl"):
            # Formatted by PostgreSQL and streamed straight to stdout.
            sys.stdout.flush()
            if fmt == "csv":
                count = listing.export_csv(conn, filters, sys.stdout.buffer, limit=limit)
            else:
                lines = fmt == "jsonl"
                count = listing.export_json(
                    conn, filters, sys.stdout.buffer, limit=limit, lines=lines
                )
            sys.stdout.buffer.flush()
        else:
            rows = listing.invites(conn, filters, limit=limit)
            count = render(rows, LIST_COLUMNS, fmt, title="Invites")
        conn.rollback()
    if count == 0:
        say("no invites match")
    elif fmt == "table" and limit is not None and count == limit:
        say(f"showing the newest {count}; --limit N for more, --format csv for all")


@click.command(epilog="Example: invites show ABCD-EFGH-JKMN-PQRS")
@click.argument("code")
@format_option()
@pass_app
def show(app: App, code: str, fmt: str) -> None:
    """Everything about one invite, including who sent and who redeemed it."""
    with app.database.connect(autocommit=True) as conn:
        record = listing.show(conn, code)
        events = history.timeline(conn, record["id"])
    if fmt == "table":
        # One record reads best as `field  value` lines; no table library needed to draw it.
        write_fields(record, listing.SHOW_KEYS, sys.stdout, title=f"Invite {record['code']}")
        write_timeline(events, sys.stdout)
    elif fmt == "csv":  # one flat row: the history is `invites history --format csv`
        render([record], [Column(k, k) for k in listing.SHOW_KEYS], fmt)
    else:
        record["history"] = [{k: plain(v) for k, v in event.items()} for event in events]
        keys = [*listing.SHOW_KEYS, "history"]
        render([record], [Column(k, k) for k in keys], fmt)


def write_timeline(events: list[dict[str, Any]], out: IO[str]) -> None:
    """The invite's history under its fields: one line per event, oldest first."""
    out.write("\nHistory\n")
    for event in events:
        line = f"{table_text(event['at'])}  {event['kind']:<18}  by {event['actor']}"
        detail = history.describe(event["detail"])
        out.write(f"{line}  {detail}".rstrip() + "\n")
