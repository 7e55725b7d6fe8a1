"""`invites remind`: a reminder to each sent invite nobody has redeemed, before it expires."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import click

from beta_invites_cli import reminding
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
from beta_invites_cli.cli.options import DurationType, delivery_options, pace_options
from beta_invites_cli.delivery import selection


@click.command(
    epilog="Example (crontab): */10 * * * * cd /srv/beta && /srv/beta/.venv/bin/invites remind --cohort '*' --before-expiry 3d"
)
@click.option(
    "--cohort",
    "cohort_pattern",
    required=True,
    metavar="PATTERN",
    help="Cohorts matching a shell pattern, like press-* ('*' for all).",
)
@click.option(
    "--before-expiry",
    type=DurationType(),
    metavar="DURATION",
    help="Remind this long before the invite expires, like 3d (again after an extension).",
)
@click.option(
    "--after-sent",
    type=DurationType(),
    metavar="DURATION",
    help="Remind this long after the invitation was sent, like 7d (once).",
)
@delivery_options
@click.option(
    "--dry-run", is_flag=True, help="Show the first reminder and count them; send nothing."
)
@pace_options
@connections_option
@ignore_complaints_option
@pass_app
def remind(
    app: App,
    cohort_pattern: str,
    before_expiry: timedelta | None,
    after_sent: timedelta | None,
    template_path: Path | None,
    outbox: Path | None,
    timeout: float | None,
    max_errors: int,
    max_sender_refusals: int,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    connections: int,
    ignore_complaints: bool,
) -> None:
    """Email one reminder per step to each sent, pending, unsuppressed invite that is due.

    Safe from cron: each step reaches an invite once (a before-expiry step once per expiry
    date), never within a day of the invitation or another reminder, and crash-safe as send."""
    steps = [
        reminding.Step(kind, offset)
        for kind, offset in (
            (reminding.BEFORE_EXPIRY, before_expiry),
            (reminding.AFTER_SENT, after_sent),
        )
        if offset is not None
    ]
    if not steps:
        raise click.UsageError("give --before-expiry DURATION and/or --after-sent DURATION")
    policy = refusal_policy(app, max_sender_refusals)
    chosen, head = open_channel(app, outbox, template_path, timeout, kind="reminder")
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(app.database.connect(autocommit=True))
        check_complaints(reader, cohort_pattern, ignore=ignore_complaints or dry_run)
        due = reminding.due(reader, cohort_pattern, steps)
        total = due.now
        # Due but held back by the day of quiet: said, or an operator wonders why not.
        held = (
            f"; {due.held} more not yet: invited or reminded less than a day ago"
            if due.held
            else ""
        )
        if dry_run:
            first = next(reminding.listed(reader, cohort_pattern, steps), None)
            if first is not None:
                letter = selection.compose(head, first)
                click.echo(letter.data.decode("utf-8", "replace").replace("\r\n", "\n"))
            count = min(total, limit or total)
            say(f"dry run: would send {count} reminder(s){held}; nothing was sent")
            return
        if total == 0:
            say(f"no reminders due{held}")
            return
        conn = stack.enter_context(app.database.connect(autocommit=True))
        count = min(connections, total)
        senders = open_senders(app, chosen, stack, count, first=conn)
        with (
            progress_bar(min(total, limit or total), "reminding") as advance,
            stop_on_interrupt() as stopped,
        ):
            outcome = reminding.remind(
                senders,
                reader,
                cohort_pattern,
                steps,
                head,
                limit=limit,
                rate=rate,
                max_errors=max_errors,
                policy=policy,
                on_progress=advance,
                should_stop=stopped,
            )
    report_delivery(outcome, 0, chosen.outbox, noun="reminded")
    finish_delivery(outcome)
