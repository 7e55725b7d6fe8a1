"""`invites fill` (the waitlist into free seats, emailed) and `invites reclaim` (seats back)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

from beta_invites_cli import filling, reclaiming, seats
from beta_invites_cli.activity import ActivityQuery
from beta_invites_cli.cli.common import App, pass_app, progress_bar, say, stop_on_interrupt
from beta_invites_cli.cli.deliver import (
    check_complaints,
    connections_option,
    finish_delivery,
    ignore_complaints_option,
    open_channel,
    open_senders,
    refusal_policy,
    report_delivery,
)
from beta_invites_cli.cli.options import DurationType, delivery_options, format_option, pace_options
from beta_invites_cli.cli.render import Column, render
from beta_invites_cli.delivery import engine
from beta_invites_cli.delivery.selection import sendable

NEXT_COLUMNS = [
    Column("cohort", "Cohort"),
    Column("position", "Position"),
    Column("email", "Email"),
    Column("priority", "Priority", drop=2),
    Column("source", "Source", drop=3),
    Column("joined_at", "Joined", drop=1),
]
QUIET_COLUMNS = [
    Column("code", "Code"),
    Column("cohort", "Cohort"),
    Column("redeemed_by", "User"),
    Column("used_at", "Redeemed"),
    Column("last_activity", "Last active"),
]


@click.command(epilog="Example: invites fill --cohort 'creator-*' --per-day 200")
@click.option("--cohort", "cohort_pattern", required=True, help="Cohorts matching this pattern.")
@click.option(
    "--per-day",
    type=click.IntRange(min=1),
    help="At most this many new invites per cohort and day (INVITES_TIMEZONE; default: the "
    "cohort's pace, invites cohort set --per-day).",
)
@click.option(
    "--expires-in", type=DurationType(), help="How long the new invites live (default 30d)."
)
@click.option(
    "--dry-run", is_flag=True, help="Show who is next and what holds the rest; change nothing."
)
@delivery_options
@pace_options
@connections_option
@ignore_complaints_option
@pass_app
def fill(
    app: App,
    cohort_pattern: str,
    per_day: int | None,
    expires_in: timedelta | None,
    dry_run: bool,
    template_path: Path | None,
    outbox: Path | None,
    timeout: float | None,
    max_errors: int,
    max_sender_refusals: int,
    limit: int | None,
    rate: float | None,
    connections: int,
    ignore_complaints: bool,
) -> None:
    """Invite and email the next people waiting, until each matching cohort is at its cap or
    the day's quota is used; safe from cron and with any number of runs at once."""
    timezone = app.settings.get("INVITES_TIMEZONE") or "UTC"
    policy = refusal_policy(app, max_sender_refusals)
    chosen, head = open_channel(app, outbox, template_path, timeout)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(app.database.connect(autocommit=True))
        reader = stack.enter_context(app.database.connect(autocommit=True))
        seats.check_timezone(conn, timezone)
        rooms = filling.rooms(conn, cohort_pattern, per_day=per_day, limit=limit, timezone=timezone)
        if not rooms and not filling.known(conn, cohort_pattern):
            raise click.UsageError(
                f"no cohort matches {cohort_pattern}: none has seats or a waitlist"
                " (invites cohort set, invites waitlist add)"
            )
        check_complaints(conn, cohort_pattern, ignore=ignore_complaints or dry_run)
        if dry_run:
            show_plan(conn, rooms)
            return
        senders = open_senders(app, chosen, stack, connections, first=conn)
        invited = 0
        for room in rooms:
            count = filling.invite_next(
                conn, room.cohort, per_day=per_day, limit=limit, timezone=timezone,
                expires_in=expires_in,
            )  # fmt: skip
            invited += count
            if room.held and count < room.waiting:
                say(f"{room.cohort}: invited {count}; the rest wait ({room.held})")
        with progress_bar(invited, "filling") as advance, stop_on_interrupt() as stopped:
            outcome = engine.deliver(
                senders,
                filling.waiting_to_send(reader, cohort_pattern),
                sendable(False),
                {},
                head,
                rate=rate,
                max_errors=max_errors,
                policy=policy,
                on_progress=advance,
                should_stop=stopped,
            )
    say(f"invited {invited} from the waitlist")
    report_delivery(outcome, 0, chosen.outbox)
    finish_delivery(outcome)


def show_plan(conn: psycopg.Connection[Any], rooms: list[filling.Room]) -> None:
    people: list[dict[str, Any]] = []
    for room in rooms:
        people += filling.next_people(conn, room.cohort, room.now)
        held = f"; the rest wait ({room.held})" if room.held else ""
        say(f"dry run: {room.cohort}: would invite {room.now} of {room.waiting} waiting{held}")
    if people:
        render(people, NEXT_COLUMNS, "table", title="Next")
    say("nothing was issued or sent")


@click.command(
    epilog="Example: invites reclaim --cohort creator-beta --unredeemed-after 7d --dry-run"
)
@click.option("--cohort", "cohort_pattern", required=True, help="Cohorts matching this pattern.")
@click.option(
    "--unredeemed-after",
    type=DurationType(),
    help="Revoke invites delivered longer ago than this and never redeemed (reason reclaimed).",
)
@click.option(
    "--activity",
    "activity_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instead: list redeemers without activity (the report's activity query, a .sql file).",
)
@click.option(
    "--inactive-for",
    type=DurationType(),
    default="14d",
    show_default=True,
    help="With --activity: no activity for this long.",
)
@click.option("--dry-run", is_flag=True, help="List what would be revoked; change nothing.")
@click.option("--yes", is_flag=True, help="Revoke without asking.")
@format_option()
@pass_app
def reclaim(
    app: App,
    cohort_pattern: str,
    unredeemed_after: timedelta | None,
    activity_path: Path | None,
    inactive_for: timedelta,
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Seats back from people who never came: revoke invites delivered long ago and never
    redeemed, so `fill` gives their seats to the next people; or list quiet redeemers."""
    if (unredeemed_after is None) == (activity_path is None):
        raise click.UsageError("give --unredeemed-after DURATION, or --activity FILE.sql")
    if activity_path is not None:
        query = ActivityQuery.load(activity_path)
        with app.database.connect(autocommit=True) as conn:
            quiet = reclaiming.quiet_redeemers(conn, cohort_pattern, query, inactive_for)
        if quiet:
            render(quiet, QUIET_COLUMNS, fmt, title="Quiet redeemers")
        say(
            f"{len(quiet)} redeemer(s) without activity for {inactive_for.days} days; nothing was changed"
        )
        return
    assert unredeemed_after is not None
    if dry_run == yes:
        raise click.UsageError("give --dry-run (list) or --yes (revoke)")
    with app.database.connect(autocommit=True) as conn:
        changes = reclaiming.reclaim(conn, cohort_pattern, unredeemed_after, dry_run=dry_run)
    if changes:
        render(
            [{"code": c.code, "cohort": c.cohort} for c in changes],
            [Column("code", "Code"), Column("cohort", "Cohort")],
            fmt,
            title="Reclaimed" if not dry_run else "Would reclaim",
        )
    verb = "would reclaim" if dry_run else "reclaimed"
    say(f"{verb} {len(changes)} seat(s)" + ("; nothing was changed" if dry_run else ""))
