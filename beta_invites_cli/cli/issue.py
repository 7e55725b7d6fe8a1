"""Commands that issue codes and email them: `generate`, `send`, `resend`."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO
from uuid import UUID

import click
import psycopg

from beta_invites_cli import issuing
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
from beta_invites_cli.cli.options import (
    UuidType,
    delivery_options,
    format_option,
    issue_options,
)
from beta_invites_cli.cli.render import Column, OutputFile, format_for, render
from beta_invites_cli.delivery import channel, engine
from beta_invites_cli.delivery.transport import Transport
from beta_invites_cli.exits import ExitCode
from beta_invites_cli.status import Status, condition
from beta_invites_cli.template import check_signup_url

Connection = psycopg.Connection[Any]

INVITE_COLUMNS = [
    Column("email", "Email"),
    Column("code", "Code"),
    Column("cohort", "Cohort"),
    Column("expires_at", "Expires"),
    Column("link", "Link"),
]
TABLE_LIMIT = 1000  # beyond this, a summary instead of a table
UNCERTAIN = condition(Status.UNCERTAIN)


def prepare(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
) -> issuing.IssueRequest:
    """The domain checks the request; this adds the flags to what it says."""
    if sent_by is None and app.settings.get("INVITES_SENT_BY"):
        try:
            sent_by = UuidType().convert(app.settings.get("INVITES_SENT_BY"), None, None)
        except click.BadParameter as exc:
            raise Problems([f"INVITES_SENT_BY: {exc.message}"]) from None
    sources = [
        ("-" if getattr(f, "name", "-") in ("-", "<stdin>") else str(f.name), f)
        for f in recipient_files
    ]
    try:
        return issuing.prepare(
            cohort,
            sources,
            [("--email", email) for email in emails],
            expires_in=expires_in,
            sent_by=sent_by,
            skip_invalid=skip_invalid,
        )
    except issuing.InvalidRecipients as exc:
        raise Problems(
            [
                *exc.problems,
                *more_lines(exc.count - len(exc.problems), "invalid address(es)"),
                f"{exc.count} invalid address(es): nothing was issued "
                "(--skip-invalid issues the rest)",
            ]
        ) from None


def more_lines(count: int, kind: str) -> list[str]:
    return [f"... and {count:,} more {kind}"] if count > 0 else []


def report_issue(request: issuing.IssueRequest, issued: issuing.Issued) -> None:
    report_lines("duplicate:", issued.duplicates, issued.duplicate_count)
    report_lines("invalid:", request.problems, request.invalid)
    report_lines(
        "skipped:", [f"{email}: {why}" for email, why in issued.skipped], issued.skipped_count
    )
    say(
        f"created {issued.created}, skipped {issued.skipped_count}, "
        f"invalid {request.invalid}, duplicates {issued.duplicate_count}"
    )


@click.command(
    epilog="Example: invites generate --cohort press-pitchfork --recipients press.csv --output codes.csv"
)
@issue_options
@click.option(
    "--mark-sent",
    is_flag=True,
    help="Record the invites as delivered now (you send the codes yourself).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the invites to this file (its extension .csv, .json or .jsonl sets the format).",
)
@format_option(default=None)
@pass_app
def generate(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    force: bool,
    skip_invalid: bool,
    mark_sent: bool,
    output: Path | None,
    fmt: str | None,
) -> None:
    """Create invite codes for a list of people, without emailing them."""
    fmt = format_for(output, fmt)
    signup_url = app.settings.get("INVITES_SIGNUP_URL")
    check_signup_url(signup_url)
    with prepare(
        app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid
    ) as request:
        if not request.given:
            raise click.UsageError("no recipients: give --recipients FILE or --email ADDRESS")
        # The output file is opened before anything is issued, and written before the invites
        # are committed: a path that cannot be written leaves nobody with a code nobody has.
        with OutputFile(output) as target, app.database.connect(autocommit=True) as conn:
            check_user(conn, request.sent_by, "--sent-by")
            try:
                with issuing.issue(conn, request, force=force, mark_sent=mark_sent) as issued:
                    if target is not None:
                        write_invites(issued, signup_url, fmt, target.handle)
                    elif fmt != "table" or 0 < issued.created <= TABLE_LIMIT:
                        write_invites(issued, signup_url, fmt, sys.stdout)
            except OSError as exc:
                where = output if target is not None else "the output"
                fail(f"{where} could not be written ({exc.strerror}): nothing was issued")
            if target is not None:
                target.commit()
            report_issue(request, issued)
            if target is not None:
                say(f"wrote {issued.created} invite(s) to {output}")
            elif fmt == "table" and issued.created > TABLE_LIMIT:
                say(
                    f"{issued.created} invites are too many to draw as a table: add --output "
                    f"codes.csv, or run `invites list --cohort {cohort} --format csv`"
                )


def write_invites(issued: issuing.Issued, signup_url: str | None, fmt: str, out: IO[str]) -> None:
    """The new invites in `fmt`: csv, json and jsonl formatted by PostgreSQL and streamed (a
    batch may hold a million), a table drawn from the rows."""
    if fmt == "table":
        title = f"Invites for {issued.request.cohort}"
        render(issued.records(signup_url), INVITE_COLUMNS, fmt, out, title=title)
        return
    out.flush()
    binary = out.buffer  # type: ignore[attr-defined]
    issued.export(fmt, binary, signup_url)
    binary.flush()


def open_channel(
    app: App, outbox: Path | None, template_path: Path | None
) -> tuple[channel.Channel, channel.Letterhead]:
    """Where messages go and what they say, checked before anything is issued or sent."""
    try:
        chosen = channel.choose_channel(app.settings, outbox, embedded=app.embedded)
    except channel.NoMailServer:
        fail(
            "SMTP_URL is not set: set it to email the invitations, or pass --outbox DIR to "
            "write them as .eml files"
        )
    return chosen, channel.letterhead(app.settings, template_path, chosen)


@click.command(epilog="Example: invites send --cohort press-pitchfork --recipients press.csv")
@issue_options
@delivery_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the first message and count what would be sent; change nothing.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many (waves).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001, max=100_000),
    metavar="PER_SECOND",
    help="Send at most this many per second (0.001 to 100000).",
)
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
    template_path: Path | None,
    outbox: Path | None,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    retry_uncertain: bool,
) -> None:
    """Issue invites to any new recipients, then email every unsent invite of the cohort."""
    with prepare(
        app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid
    ) as request:
        chosen, head = open_channel(app, outbox, template_path)
        with (
            app.database.connect(autocommit=True) as conn,
            app.database.connect(autocommit=True) as reader,
        ):
            check_user(conn, request.sent_by, "--sent-by")
            if dry_run:
                show_preview(conn, request, head, force, limit, retry_uncertain)
                return
            transport = chosen.open()
            try:
                # The mail server is reached before anything is issued or locked: one that cannot
                # be reached (or never answers) changes nothing.
                transport.connect()
                with issuing.issue(conn, request, force=force) as issued:
                    pass
                if request.given:
                    report_issue(request, issued)
                outcome = deliver(
                    conn, reader, cohort, head, transport, limit, rate, retry_uncertain
                )
                earlier = 0 if retry_uncertain else engine.count(reader, cohort, UNCERTAIN)
            finally:
                transport.close()
        earlier -= len(outcome.uncertain)
        if earlier > 0:
            warn(
                f"warning: {earlier} invite(s) of {cohort} have an uncertain delivery from an earlier "
                "run and were not sent again: `invites list --status uncertain` shows them, "
                "--retry-uncertain sends them again (they may arrive twice)"
            )
        report_delivery(outcome, issued.skipped_count, chosen.outbox)
        finish_delivery(outcome)


def deliver(
    conn: Connection,
    reader: Connection,
    cohort: str,
    head: channel.Letterhead,
    transport: Transport,
    limit: int | None,
    rate: float | None,
    retry_uncertain: bool,
) -> engine.DeliveryResult:
    total = engine.count(reader, cohort, engine.sendable(retry_uncertain))
    total = min(total, limit) if limit else total
    with progress_bar(total, f"sending {cohort}") as advance, stop_on_interrupt() as stopped:
        return engine.deliver_cohort(
            conn,
            reader,
            cohort,
            head,
            transport,
            limit=limit,
            rate=rate,
            retry_uncertain=retry_uncertain,
            on_progress=advance,
            should_stop=stopped,
        )


def finish_delivery(outcome: engine.DeliveryResult) -> None:
    """Exit 1 when this run failed or left messages uncertain, 130 when interrupted."""
    if outcome.aborted:
        fail(outcome.aborted)
    if outcome.interrupted:
        warn("interrupted: run the same command again to send the rest")
        sys.exit(ExitCode.INTERRUPTED)
    if outcome.failed or outcome.uncertain:
        sys.exit(ExitCode.ERROR)


def show_preview(
    conn: Connection,
    request: issuing.IssueRequest,
    head: channel.Letterhead,
    force: bool,
    limit: int | None,
    retry_uncertain: bool,
) -> None:
    with issuing.issue(conn, request, force=force, dry_run=True) as would_issue:
        pass
    preview = engine.preview(
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


def report_delivery(outcome: engine.DeliveryResult, skipped: int, outbox: Path | None) -> None:
    report_lines("failed:", [f"{email}: {why}" for email, why in outcome.failed])
    for email, why in outcome.uncertain:
        warn(f"uncertain: {email}: {why}; not sent again (--retry-uncertain decides)")
    uncertain = f", uncertain {len(outcome.uncertain)}" if outcome.uncertain else ""
    say(f"sent {outcome.sent}, failed {len(outcome.failed)}{uncertain}, skipped {skipped}")
    if outbox is not None:
        say(
            f"Nothing was emailed: {outcome.sent} message(s) were written to {outbox}/ as .eml files "
            "(and marked as sent); set SMTP_URL to email invitations."
        )


def refusal_line(refusal: engine.Refusal) -> str:
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
@pass_app
def resend(
    app: App,
    codes: tuple[str, ...],
    cohort: str | None,
    template_path: Path | None,
    outbox: Path | None,
) -> None:
    """Email sent, still-live invites again, with the same code (reminders, bounces)."""
    if bool(codes) == bool(cohort):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    chosen, head = open_channel(app, outbox, template_path)
    with app.database.connect(autocommit=True) as conn:
        try:
            invites = engine.resendable(conn, codes=codes, cohort=cohort)
        except engine.NotResendable as exc:
            raise Problems([*map(refusal_line, exc.refusals), "nothing was resent"]) from None
        if not invites:
            say(f"nothing to resend in {cohort}: no sent, live invites")
            return
        transport = chosen.open()
        try:
            transport.connect()
            outcome = engine.resend(conn, invites, head, transport)
        finally:
            transport.close()
    report_delivery(outcome, 0, chosen.outbox)
    finish_delivery(outcome)
