"""Commands that email invites: `send` (issuing to new people first) and `resend`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

import click
import psycopg

from beta_invites_cli import complaints, intake, issuing
from beta_invites_cli.cli.common import (
    App,
    Problems,
    check_user,
    fail,
    pass_app,
    progress_bar,
    report_lines,
    say,
    stop_on_interrupt,
    warn,
)
from beta_invites_cli.cli.issue import prepare, report_issue
from beta_invites_cli.cli.options import delivery_options, issue_options, pace_options
from beta_invites_cli.delivery import channel, engine, resending, selection
from beta_invites_cli.delivery.recording import DEFAULT_SOFT_BOUNCE_LIMIT, RefusalPolicy
from beta_invites_cli.delivery.transport import Transport
from beta_invites_cli.errors import excerpt
from beta_invites_cli.exits import ExitCode
from beta_invites_cli.status import Status, condition

Connection = psycopg.Connection[Any]

UNCERTAIN = condition(Status.UNCERTAIN)
DEFAULT_CONNECTIONS = 4  # measured: see README, `invites send`

ignore_complaints_option = click.option(
    "--ignore-complaint-rate",
    "ignore_complaints",
    is_flag=True,
    help="Send even when 0.3 % or more of the cohort's recent messages were reported as spam.",
)

connections_option = click.option(
    "--connections",
    type=click.IntRange(1, 32),
    default=DEFAULT_CONNECTIONS,
    show_default=True,
    help="SMTP connections sending at once (each with at most one message in flight).",
)


def open_channel(
    app: App,
    outbox: Path | None,
    template_path: Path | None,
    timeout: float | None = None,
    kind: str = "invitation",
) -> tuple[channel.Channel, channel.Letterhead]:
    """Where messages go and what they say, checked before anything is issued or sent."""
    try:
        chosen = channel.choose_channel(
            app.settings, outbox, embedded=app.embedded, timeout=timeout
        )
    except channel.NoMailServer:
        fail(
            "SMTP_URL is not set: set it to email the invitations, or pass --outbox DIR to "
            "write them as .eml files"
        )
    return chosen, channel.letterhead(app.settings, template_path, chosen, kind)


@click.command(epilog="Example: invites send --cohort press-pitchfork --recipients press.csv")
@issue_options
@delivery_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the first message and count what would be sent; change nothing.",
)
@pace_options
@connections_option
@ignore_complaints_option
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Also send again the messages whose delivery is uncertain (they may arrive twice).",
)
@pass_app
def send(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    force: bool,
    skip_invalid: bool,
    include_suppressed: bool,
    over_cap: bool,
    template_path: Path | None,
    outbox: Path | None,
    timeout: float | None,
    max_errors: int,
    max_sender_refusals: int,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    retry_uncertain: bool,
    connections: int,
    ignore_complaints: bool,
) -> None:
    """Issue invites to any new recipients, then email every unsent invite of the cohort."""
    policy = refusal_policy(app, max_sender_refusals)
    with prepare(
        app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid
    ) as request:
        chosen, head = open_channel(app, outbox, template_path, timeout)
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(app.database.connect(autocommit=True))
            reader = stack.enter_context(app.database.connect(autocommit=True))
            check_user(conn, request.sent_by, "--sent-by")
            check_complaints(conn, cohort, ignore=ignore_complaints or dry_run)
            if dry_run:
                show_preview(conn, request, head, force, include_suppressed, limit, retry_uncertain)
                return
            # The mail server is reached (on every connection) before anything is issued or
            # locked: one that cannot be reached, or never answers, changes nothing.
            senders = open_senders(app, chosen, stack, connections, first=conn)
            with issuing.issue(
                conn,
                request,
                force=force,
                include_suppressed=include_suppressed,
                over_cap=over_cap,
            ) as issued:
                pass
            if request.given:
                report_issue(request, issued)
            held_back = selection.held_back(reader, cohort, retry_uncertain)
            outcome = deliver(
                senders, reader, cohort, head, limit, rate, retry_uncertain, max_errors, policy
            )
            earlier = 0 if retry_uncertain else selection.count(reader, cohort, UNCERTAIN)
        earlier -= len(outcome.uncertain)
        if earlier > 0:
            warn(
                f"warning: {earlier} invite(s) of {cohort} have an uncertain delivery from an earlier "
                "run and were not sent again: `invites list --status uncertain` shows them, "
                "--retry-uncertain sends them again (they may arrive twice)"
            )
        report_delivery(outcome, issued.skipped_count, chosen.outbox, held_back)
        finish_delivery(outcome)


def open_senders(
    app: App,
    chosen: channel.Channel,
    stack: contextlib.ExitStack,
    connections: int,
    *,
    first: Connection,
) -> list[tuple[engine.Connections, Transport]]:
    """Each sender: its own SMTP connection, connected now, and two database connections (one
    commits the message just accepted while the other holds the next one)."""
    if chosen.outbox is not None:
        connections = 1  # files on a local disk: more connections only add contention
    senders: list[tuple[engine.Connections, Transport]] = []
    for number in range(connections):
        own = first if number == 0 else stack.enter_context(app.database.connect(autocommit=True))
        second = stack.enter_context(app.database.connect(autocommit=True))
        senders.append(((own, second), stack.enter_context(opened(chosen))))
    for _, transport in senders:
        transport.connect()
    return senders


@contextlib.contextmanager
def opened(chosen: channel.Channel) -> Iterator[Transport]:
    transport = chosen.open()
    try:
        yield transport
    finally:
        transport.close()


def deliver(
    senders: list[tuple[engine.Connections, Transport]],
    reader: Connection,
    cohort: str,
    head: channel.Letterhead,
    limit: int | None,
    rate: float | None,
    retry_uncertain: bool,
    max_errors: int,
    policy: RefusalPolicy,
) -> engine.DeliveryResult:
    total = selection.count(reader, cohort, selection.sendable(retry_uncertain))
    total = min(total, limit) if limit else total
    with progress_bar(total, f"sending {cohort}") as advance, stop_on_interrupt() as stopped:
        return engine.deliver_cohort(
            senders,
            reader,
            cohort,
            head,
            limit=limit,
            rate=rate,
            retry_uncertain=retry_uncertain,
            max_errors=max_errors,
            policy=policy,
            on_progress=advance,
            should_stop=stopped,
        )


def check_complaints(conn: Connection, cohort_pattern: str, *, ignore: bool) -> None:
    """Warn at a complaint rate of 0.1 %; refuse at 0.3 % (Gmail's and Yahoo's thresholds)."""
    found = complaints.rate(conn, cohort_pattern)
    if found.share >= complaints.REFUSE_AT and not ignore:
        fail(
            f"{found.describe(cohort_pattern)}: at 0.3 % Gmail and Yahoo refuse a sender's mail;"
            " nothing was sent (find out why people report it; --ignore-complaint-rate sends"
            " anyway)"
        )
    if found.share >= complaints.WARN_AT:
        warn(f"warning: {found.describe(cohort_pattern)}: keep it under 0.1 %")


def refusal_policy(app: App, max_sender_refusals: int) -> RefusalPolicy:
    """How refusals are counted: --max-sender-refusals and INVITES_SOFT_BOUNCE_LIMIT."""
    raw = app.settings.get("INVITES_SOFT_BOUNCE_LIMIT")
    limit = DEFAULT_SOFT_BOUNCE_LIMIT
    if raw is not None and raw.strip():
        if not raw.strip().isdigit() or int(raw) < 1:
            fail(
                "INVITES_SOFT_BOUNCE_LIMIT must be a whole number of days, at least 1, "
                f"not {excerpt(raw)}"
            )
        limit = int(raw)
    return RefusalPolicy(soft_bounce_limit=limit, max_sender_refusals=max_sender_refusals)


def finish_delivery(outcome: engine.DeliveryResult) -> None:
    """Exit 1 only when something is left that running the command again would still try (a
    refusal for now, an aborted run); 130 when interrupted. Bounced and uncertain messages
    are not tried again on their own: they are reported, and the run has done its job."""
    for line in outcome.paused:
        warn(f"Error: {line}")
    if outcome.held:
        say(f"left unsent for the next run: {outcome.held} (their receiving domain was paused)")
    if outcome.aborted:
        fail(outcome.aborted)
    if outcome.paused:
        sys.exit(ExitCode.ERROR)
    if outcome.interrupted:
        warn("interrupted: run the same command again to send the rest")
        sys.exit(ExitCode.INTERRUPTED)
    if outcome.failed:
        sys.exit(ExitCode.ERROR)


def show_preview(
    conn: Connection,
    request: intake.IssueRequest,
    head: channel.Letterhead,
    force: bool,
    include_suppressed: bool,
    limit: int | None,
    retry_uncertain: bool,
) -> None:
    with issuing.issue(
        conn, request, force=force, dry_run=True, include_suppressed=include_suppressed
    ) as would_issue:
        pass
    preview = selection.preview(
        conn,
        request.cohort,
        head,
        would_issue.first,
        would_issue.created,
        would_issue.skipped_count,
        limit=limit,
        retry_uncertain=retry_uncertain,
    )
    if preview.first is not None:
        click.echo(preview.first.data.decode("utf-8", "replace").replace("\r\n", "\n"))
    if preview.problem is not None:
        warn(f"the first message cannot be written: {preview.problem}")
    say(
        f"dry run: would issue {preview.would_issue} new invite(s) "
        f"(skip {preview.would_skip}) and send {preview.would_send} message(s); "
        "nothing was written or sent"
    )


def report_delivery(
    outcome: engine.DeliveryResult,
    skipped: int,
    outbox: Path | None,
    held_back: selection.HeldBack | None = None,
    *,
    noun: str = "sent",
) -> None:
    report_lines(
        "failed:", [f"{email}: {why}; tried again next run" for email, why in outcome.failed]
    )
    report_lines(
        "bounced:", [f"{email}: {why}; never sent again" for email, why in outcome.bounced]
    )
    for email, why in outcome.uncertain:
        warn(f"uncertain: {email}: {why}; not sent again (--retry-uncertain decides)")
    if held_back is not None and held_back.total:
        say(f"not sent: {held_back.describe()}")
    uncertain = f", uncertain {len(outcome.uncertain)}" if outcome.uncertain else ""
    say(
        f"{noun} {outcome.sent}, failed {len(outcome.failed)}, bounced {len(outcome.bounced)}"
        f"{uncertain}, skipped {skipped}"
    )
    if outbox is not None:
        say(
            f"Nothing was emailed: {outcome.sent} message(s) were written to {outbox}/ as .eml files "
            "(and marked as sent); set SMTP_URL to email invitations."
        )


def refusal_line(refusal: resending.Refusal) -> str:
    """The domain's reason, and the command that sends a first message still owed."""
    line = f"{refusal.code} {refusal.why}"
    if refusal.status == Status.UNSENT:
        return f"{line}: use `invites send --cohort {refusal.cohort}`"
    if refusal.status == Status.UNCERTAIN:
        return f"{line}: use `invites send --cohort {refusal.cohort} --retry-uncertain`"
    return line


@click.command(epilog="Example: invites resend --cohort press-pitchfork")
@click.argument("codes", nargs=-1)
@click.option("--cohort", help="Resend every sent, live invite of this cohort.")
@delivery_options
@connections_option
@pass_app
def resend(
    app: App,
    codes: tuple[str, ...],
    cohort: str | None,
    template_path: Path | None,
    outbox: Path | None,
    timeout: float | None,
    max_errors: int,
    max_sender_refusals: int,
    connections: int,
) -> None:
    """Email sent, still-live invites again, with the same code (reminders, bounces)."""
    policy = refusal_policy(app, max_sender_refusals)
    if bool(codes) == bool(cohort):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    chosen, head = open_channel(app, outbox, template_path, timeout)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(app.database.connect(autocommit=True))
        try:
            invites = resending.resendable(conn, codes=codes, cohort=cohort)
        except resending.NotResendable as exc:
            raise Problems([*map(refusal_line, exc.refusals), "nothing was resent"]) from None
        held = selection.held_back_from_resend(conn, cohort) if cohort is not None else None
        if not invites:
            left_out = f" (not resent: {held.describe()})" if held and held.total else ""
            say(f"nothing to resend in {cohort}: no sent, live invites{left_out}")
            return
        senders = open_senders(app, chosen, stack, min(connections, len(invites)), first=conn)
        with progress_bar(len(invites), "resending") as advance, stop_on_interrupt() as stopped:
            outcome = resending.resend(
                senders,
                invites,
                head,
                max_errors=max_errors,
                policy=policy,
                on_progress=advance,
                should_stop=stopped,
            )
    report_delivery(outcome, held.total if held else 0, chosen.outbox, held)
    finish_delivery(outcome)
