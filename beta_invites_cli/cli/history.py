"""`invites history`: what happened to invites, event by event, streamed."""

from __future__ import annotations

from datetime import date
from itertools import chain

import click

from beta_invites_cli import history
from beta_invites_cli.cli.common import App, pass_app, say
from beta_invites_cli.cli.options import DateType, check_dates, format_option
from beta_invites_cli.cli.render import Column, render, stream_to_stdout

EVENT_STYLES = {
    "redeemed": "green",
    "revoked": "red",
    "bounced": "yellow",
    "delivery_failed": "yellow",
    "delivery_uncertain": "yellow",
    "anonymised": "dim",
}
COLUMNS = [
    Column("at", "When"),
    Column("kind", "Event", style=lambda kind: EVENT_STYLES.get(kind, "")),
    Column("code", "Code"),
    Column("cohort", "Cohort", drop=1),
    Column("actor", "By", drop=2),
    Column("detail", "Detail", render=history.describe, drop=3),
]


@click.command(
    "history",
    epilog="Example: invites history --cohort 'press-*' --kind redeemed --since 2026-11-01",
)
@click.option(
    "--cohort", "cohort_pattern", metavar="PATTERN", help="Cohorts matching a shell pattern."
)
@click.option("--since", type=DateType(), metavar="DATE", help="Events on or after this date.")
@click.option("--until", type=DateType(), metavar="DATE", help="Events on or before this date.")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(history.KINDS),
    multiple=True,
    help="Only events of this kind (repeat for several).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="The newest N events (default: 50 in a table, all for csv/json/jsonl).",
)
@format_option()
@pass_app
def history_command(
    app: App,
    cohort_pattern: str | None,
    since: date | None,
    until: date | None,
    kinds: tuple[str, ...],
    limit: int | None,
    fmt: str,
) -> None:
    """Every change to invites, oldest first: issued, sent, reminded, redeemed, revoked..."""
    check_dates(since, until)
    filters = history.EventFilters(cohort=cohort_pattern, since=since, until=until, kinds=kinds)
    if limit is None and fmt == "table":
        limit = 50
    with app.database.connect() as conn:
        if fmt in ("csv", "json", "jsonl"):  # constant memory
            count = stream_to_stdout(
                fmt,
                lambda out: history.export_csv(conn, filters, out, limit=limit),
                lambda out, lines: history.export_json(
                    conn, filters, out, limit=limit, lines=lines
                ),
            )
        else:
            rows = history.events(conn, filters, limit=limit)
            first = next(rows, None)  # no events: no empty table
            count = 0
            if first is not None:
                count = render(chain([first], rows), COLUMNS, fmt, title="History")
        conn.rollback()
    if count == 0:
        say("no events match")
    elif fmt == "table" and limit is not None and count == limit:
        say(f"showing the newest {count}; --limit N for more, --format csv for all")
