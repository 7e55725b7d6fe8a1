"""`invites waitlist add|list|remove|position` and `invites cohort set|list`: the queue and
the seats."""

from __future__ import annotations

from typing import Any, BinaryIO

import click

from beta_invites_cli import seats
from beta_invites_cli import waitlist as queue
from beta_invites_cli.cli.common import App, pass_app, report_lines, say
from beta_invites_cli.cli.issue import prepare
from beta_invites_cli.cli.options import check_cohort_option, format_option
from beta_invites_cli.cli.render import Column, render, stream_to_stdout
from beta_invites_cli.suppression import checked_addresses

ENTRY_COLUMNS = [
    Column("cohort", "Cohort"),
    Column("email", "Email"),
    Column("status", "Status"),
    Column("position", "Position"),
    Column("priority", "Priority", drop=3),
    Column("source", "Source", drop=4),
    Column("joined_at", "Joined", drop=2),
    Column("invited_at", "Invited", drop=1),
]
COHORT_COLUMNS = [
    Column("cohort", "Cohort"),
    Column("seats", "Seats"),
    Column("taken", "Taken"),
    Column("free", "Free"),
    Column("waiting", "Waiting"),
    Column("invited_today", "Invited today"),
    Column("per_day", "Per day"),
]


class CountType(click.ParamType[Any]):
    """A whole number, at least 0, or `none`: a cohort's seats, or its pace."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value is None or value is seats.UNCHANGED:
            return value
        if value.strip().lower() == "none":
            return None
        if value.strip().isdigit():
            return int(value)
        self.fail(f"{value!r} is not a number of {self.what} (a whole number, at least 0, or none)")


@click.group(epilog="Example: invites waitlist add --cohort creator-beta --recipients signups.csv")
def waitlist() -> None:
    """People waiting for a seat, in order of priority, then of joining."""


@waitlist.command(
    "add", epilog="Example: invites waitlist add --cohort creator-beta --email ada@example.com"
)
@click.option(
    "--cohort", required=True, callback=check_cohort_option, help="The cohort they wait for."
)
@click.option(
    "--recipients",
    "recipient_files",
    type=click.File("rb"),
    multiple=True,
    help="CSV with an email column, or one address per line; - reads stdin.",
)
@click.option("--email", "emails", multiple=True, help="An address (repeatable).")
@click.option("--skip-invalid", is_flag=True, help="Add the valid addresses and report the rest.")
@click.option("--source", help="Where they came from, a free label (landing-page, conference).")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher goes first.")
@pass_app
def add(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    skip_invalid: bool,
    source: str | None,
    priority: int,
) -> None:
    """Put people on a cohort's waitlist (the input rules of generate; nobody twice)."""
    with prepare(
        app,
        cohort,
        recipient_files,
        emails,
        None,
        None,
        skip_invalid,
        outcome="nobody was added (--skip-invalid adds the rest)",
    ) as request:
        if not request.given:
            raise click.UsageError("no people: give --recipients FILE or --email ADDRESS")
        with app.database.connect(autocommit=True) as conn:
            joined = queue.add(conn, request, source=source, priority=priority)
        report_lines("duplicate:", joined.duplicates, joined.duplicate_count)
        report_lines("invalid:", request.problems, request.invalid)
        report_lines(
            "skipped:", [f"{email}: {why}" for email, why in joined.skipped], joined.skipped_count
        )
        say(
            f"waiting {joined.added}, skipped {joined.skipped_count}, "
            f"invalid {request.invalid}, duplicates {joined.duplicate_count}"
        )


@waitlist.command("list", epilog="Example: invites waitlist list --cohort 'creator-*' --format csv")
@click.option("--cohort", "cohort_pattern", help="Cohorts matching this pattern (creator-*).")
@click.option("--status", type=click.Choice(queue.STATUSES), help="Only entries in this status.")
@format_option()
@pass_app
def list_entries(app: App, cohort_pattern: str | None, status: str | None, fmt: str) -> None:
    """The waitlist, queue order: waiting entries with their position, then the others."""
    with app.database.connect() as conn:
        if fmt in ("csv", "json", "jsonl"):
            count = stream_to_stdout(
                fmt,
                lambda out: queue.export(conn, cohort_pattern, status, out, "csv"),
                lambda out, lines: queue.export(
                    conn, cohort_pattern, status, out, "jsonl" if lines else "json"
                ),
            )
        else:
            count = render(
                queue.entries(conn, cohort_pattern, status), ENTRY_COLUMNS, fmt, title="Waitlist"
            )
        conn.rollback()
    if count == 0:
        say("nobody matches")


@waitlist.command(
    "remove",
    epilog="Examples: invites waitlist remove ada@example.com\n\n"
    "invites waitlist remove --cohort creator-beta --yes",
)
@click.argument("addresses", nargs=-1)
@click.option(
    "--cohort", help="Only this cohort's waitlist (with --yes and no address: all of it)."
)
@click.option("--yes", is_flag=True, help="With --cohort and no address: remove everyone waiting.")
@pass_app
def remove(app: App, addresses: tuple[str, ...], cohort: str | None, yes: bool) -> None:
    """Take people off the waitlist: their address is deleted."""
    if not addresses and not (cohort and yes):
        raise click.UsageError("give addresses, or --cohort COHORT --yes to empty its waitlist")
    found = checked_addresses(addresses) if addresses else []
    with app.database.connect(autocommit=True) as conn, conn.transaction():
        removed = (
            queue.remove(conn, found, cohort) if found else queue.remove_cohort(conn, cohort or "")
        )
    say(f"removed {removed} waiting entr{'y' if removed == 1 else 'ies'}")


@waitlist.command(
    "position", epilog="Example: invites waitlist position ada@example.com --cohort creator-beta"
)
@click.argument("address")
@click.option("--cohort", required=True, help="The cohort's waitlist.")
@pass_app
def position(app: App, address: str, cohort: str) -> None:
    """Where an address stands in a cohort's waitlist (1 is next)."""
    (email,) = checked_addresses([address])
    with app.database.connect(autocommit=True) as conn:
        found = queue.position(conn, email, cohort)
    if found is None:
        raise click.ClickException(f"{email} is not waiting in {cohort}")
    click.echo(found)


@click.group(epilog="Example: invites cohort set creator-beta --seats 500 --per-day 50")
def cohort() -> None:
    """Cohorts' seats and pace."""


@cohort.command("set", epilog="Example: invites cohort set creator-beta --seats 500")
@click.argument("name", callback=check_cohort_option)
@click.option(
    "--seats",
    "seats_value",
    type=CountType("seats", "seats"),
    default=seats.UNCHANGED,
    help="Seats (pending + redeemed invites may not pass them), or none.",
)
@click.option(
    "--per-day",
    type=CountType("count", "invites a day"),
    default=seats.UNCHANGED,
    help="How many `invites fill` invites a day when not told otherwise, or none.",
)
@pass_app
def set_cohort(app: App, name: str, seats_value: Any, per_day: Any) -> None:
    """Set a cohort's seats and pace (what is not given stays as it is)."""
    if seats_value is seats.UNCHANGED and per_day is seats.UNCHANGED:
        raise click.UsageError("give --seats N|none and/or --per-day N|none")
    if per_day == 0:
        raise click.UsageError("--per-day must be at least 1 (or none)")
    with app.database.connect(autocommit=True) as conn, conn.transaction():
        result = seats.configure(conn, name, seats=seats_value, per_day=per_day)
        taken = seats.taken(conn, name)
    cap = "no cap" if result.seats is None else f"{result.seats} seats ({taken} taken)"
    pace = "" if result.per_day is None else f", {result.per_day} a day"
    say(f"{name}: {cap}{pace}")


@cohort.command("list", epilog="Example: invites cohort list --format csv")
@click.option("--cohort", "cohort_pattern", help="Cohorts matching this pattern (creator-*).")
@format_option()
@pass_app
def list_cohorts(app: App, cohort_pattern: str | None, fmt: str) -> None:
    """Per cohort: seats, taken (pending + redeemed), free, waiting, invited today, pace."""
    timezone = app.settings.get("INVITES_TIMEZONE") or "UTC"
    with app.database.connect(autocommit=True) as conn:
        seats.check_timezone(conn, timezone)
        rows = seats.cohorts(conn, cohort_pattern, timezone)
    if not rows:
        say("no cohort has seats or people waiting (invites cohort set, invites waitlist add)")
        return
    render(rows, COHORT_COLUMNS, fmt, title=f"Cohorts (days in {timezone})")
