"""Commands that read: `list`, and `show` (with the invite's history)."""

from __future__ import annotations

import sys
from datetime import date
from itertools import chain
from typing import IO, Any

import click

from beta_invites_cli import history, listing
from beta_invites_cli.cli.common import App, pass_app, say
from beta_invites_cli.cli.options import check_dates, filter_options, format_option
from beta_invites_cli.cli.render import (
    Column,
    plain,
    render,
    status_style,
    stream_to_stdout,
    table_text,
    write_fields,
)
from beta_invites_cli.filters import Filters
from beta_invites_cli.status import STATUSES, Status

LIST_COLUMNS = [
    Column("code", "Code"),
    Column("email", "Email"),
    Column("cohort", "Cohort", drop=1),
    Column("status", "Status", style=status_style),
    Column("created_at", "Created", drop=3),
    Column("sent_at", "Sent", drop=4),
    Column("used_at", "Used", drop=5),
    Column("expires_at", "Expires", drop=2),
    Column("refusal", "Refusal", drop=6),
]


@click.command(
    "list",
    epilog="Example: invites list --cohort 'press-*' --status pending --format csv > pending.csv",
)
@filter_options
@click.option(
    "--status",
    type=click.Choice([*STATUSES, "failed"]),
    help="Only invites in this status (failed: live, and the last attempt was refused for now).",
)
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
    check_dates(since, until)
    filters = Filters(
        cohort=cohort_pattern,
        since=since,
        until=until,
        status=Status(status) if status and status != "failed" else None,
        email=email,
        failed=status == "failed",
    )
    if limit is None and fmt == "table":
        limit = 50
    with app.database.connect() as conn:
        if fmt in ("csv", "json", "jsonl"):
            count = stream_to_stdout(
                fmt,
                lambda out: listing.export_csv(conn, filters, out, limit=limit),
                lambda out, lines: listing.export_json(
                    conn, filters, out, limit=limit, lines=lines
                ),
            )
        else:
            rows = iter(listing.invites(conn, filters, limit=limit))
            first = next(rows, None)  # no invites: no empty table
            count = 0
            if first is not None:
                count = render(chain([first], rows), LIST_COLUMNS, fmt, title="Invites")
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
